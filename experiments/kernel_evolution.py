"""Kernel evolution: from random weights to the matched filter, one snapshot at a time.

    python experiments/kernel_evolution.py                   # about 10 s on a 2-core CPU
    python experiments/kernel_evolution.py --steps 200 --every 10 --snapshots 0 10 50 200 --out runs/evo

Fits the default task (the seed pattern on binary images) with ``steps_per_dispatch = --every`` and a callback
that records ``state.params`` after every dispatch. Reports the kernel's cosine to the pattern
(:func:`jaxconv.lab.kernel_cosine`, 1.0 = the matched filter up to scale and offset) after every dispatch, and at the
chosen ``--snapshots`` steps also the detector's F1 on held-out images. ``steps_per_dispatch`` does not change the
trajectory (step ``s`` always uses batch ``fold_in(key, s)``), so the snapshots are those of a plain ``fit``.

Writes ``results.json`` (the cosine curve and the snapshots), ``kernel_evolution.png`` (the kernel at each chosen
step) and ``cosine_curve.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

import jaxconv
from jaxconv import evidence


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="seed", choices=list(jaxconv.lab.PATTERNS))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=1, help="steps per dispatch: a cosine is recorded this often")
    parser.add_argument("--snapshots", type=int, nargs="+", default=[0, 1, 2, 3, 5, 10, 20, 400],
                        help="steps whose kernel is drawn (multiples of --every, at most --steps)")  # fmt: skip
    parser.add_argument("--eval-images", type=int, default=200, help="held-out images for each snapshot's F1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output directory (default runs/kernel_evolution-<timestamp>)")
    args = parser.parse_args(argv)
    bad = [s for s in args.snapshots if s < 0 or s > args.steps or s % args.every]
    if bad:
        parser.error(f"--snapshots must be multiples of --every ({args.every}) in [0, --steps]; got {bad}")
    try:
        out = evidence.prepare_out(args.out or evidence.default_out("kernel_evolution"))
    except ValueError as err:
        parser.error(str(err))

    task = jaxconv.PlantedPatternTask(args.pattern, image_shape=(args.image_size, args.image_size))
    pattern = task.pattern_array
    initial = jaxconv.lab.init_state(jaxconv.TrainConfig(task, seed=args.seed)).params
    params_at: dict[int, Any] = {0: initial}
    start = {"step": 0, "kernel_cosine": jaxconv.lab.kernel_cosine(initial["kernel"], pattern), "mean_loss": None}
    curve: list[dict[str, Any]] = [start]

    def record(state: jaxconv.lab.TrainState, losses: np.ndarray) -> None:
        step = int(state.step)
        if step in args.snapshots:
            params_at[step] = {k: np.asarray(v) for k, v in state.params.items()}
        curve.append({"step": step, "kernel_cosine": jaxconv.lab.kernel_cosine(state.params["kernel"], pattern),
                      "mean_loss": float(np.mean(losses))})  # fmt: skip

    result = jaxconv.fit(task, steps=args.steps, seed=args.seed, steps_per_dispatch=args.every, eval_images=0,
                         callback=record)  # fmt: skip
    mf = jaxconv.matched_filter(task)
    snapshots = []
    for step in sorted(set(args.snapshots)):
        params = params_at[step]
        metrics = jaxconv.evaluate(params, task, num_images=args.eval_images, seed=args.seed)
        snapshots.append({
            "step": step,
            "kernel": np.asarray(params["kernel"])[:, :, 0, 0].tolist(),
            "bias": float(np.asarray(params["bias"])[0]),
            "kernel_cosine": metrics["kernel_cosine"],
            "f1": metrics["f1"],
            "average_precision": metrics["average_precision"],
        })  # fmt: skip
    first_above = {
        str(level): next((c["step"] for c in curve if c["kernel_cosine"] >= level), None) for level in (0.9, 0.99)
    }
    results = {
        "config": {**vars(args), "out": out, "task": task.to_dict()},
        "curve": curve,
        "snapshots": snapshots,
        "first_step_with_cosine_at_least": first_above,
        "final": {"kernel_cosine": curve[-1]["kernel_cosine"], "train_wall_s": result.timing["wall_s"]},
    }
    evidence.write_json(os.path.join(out, "results.json"), results)
    plot_grid(os.path.join(out, "kernel_evolution.png"), snapshots, mf)
    plot_curve(os.path.join(out, "cosine_curve.png"), curve, snapshots)

    print(f"{'step':>6}{'cosine':>9}{'F1':>8}{'AP':>8}{'bias':>8}")
    for s in snapshots:
        print(f"{s['step']:>6}{s['kernel_cosine']:>9.3f}{s['f1']:>8.3f}{s['average_precision']:>8.3f}{s['bias']:>8.2f}")
    print(f"cosine first >= 0.9 at step {first_above['0.9']}, >= 0.99 at step {first_above['0.99']}; "
          f"final {curve[-1]['kernel_cosine']:.4f}")  # fmt: skip
    print(f"wrote {out}")
    return 0


def plot_grid(path: str, snapshots: list[dict], mf: dict) -> None:
    n = len(snapshots) + 1
    cols = min(n, 5)
    rows = -(-n // cols)
    fig = evidence.figure(2.9 * cols, 2.3 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, s in zip(axes, snapshots, strict=False):
        evidence.show_kernel(ax, np.asarray(s["kernel"]), f"step {s['step']}: cos {s['kernel_cosine']:.3f}\n"
                             f"F1 {s['f1']:.2f}, bias {s['bias']:.2f}")  # fmt: skip
    mf_kernel = np.asarray(mf["kernel"])[:, :, 0, 0]
    evidence.show_kernel(axes[len(snapshots)], mf_kernel, f"matched filter\nbias {float(mf['bias'][0]):.2f}")
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.suptitle("the kernel during training (each panel on its own colour scale; red +, blue -)")
    evidence.save_figure(fig, path)


def plot_curve(path: str, curve: list[dict], snapshots: list[dict]) -> None:
    fig = evidence.figure(6.5, 3.6)
    ax = fig.subplots()
    steps = [c["step"] for c in curve]
    ax.plot(steps, [c["kernel_cosine"] for c in curve], color="tab:blue", label="kernel cosine to the pattern")
    ax.plot([s["step"] for s in snapshots], [s["f1"] for s in snapshots], "o--", color="tab:orange",
            label="held-out F1 (snapshots)")  # fmt: skip
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("training step")
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(1.0, color="gray", linewidth=0.8, linestyle=":")
    ax.legend(loc="lower right")
    ax.set_title("from random to the matched filter")
    evidence.save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
