"""K kernels for K patterns at once: one conv with K outputs, per-pattern F1 and a confusion matrix.

    python experiments/multi_pattern.py
    python experiments/multi_pattern.py --patterns seed diagonal tee --out runs/multi

``jaxconv.PlantedPatternTask(patterns=...)`` plants 0-2 copies of each of K patterns (sharing a common 3x3
window) in white Gaussian noise. ``jaxconv.fit`` trains one ``[PH, PW, 1, K]`` kernel — one ``conv2d`` with K
outputs — from random weights, with the detection loss per output channel (hard-negative mining by default, as
this experiment has always used). Each kernel's negatives include the other patterns, so it has to learn to
tell them apart. The reference is each pattern's own matched filter (``jaxconv.matched_filter``), side by side:
optimal against noise, blind to the others.
The confusion matrix: row k = kernel k, column j = the share of pattern j's copies on which it fires (logit > 0
at the copy's top-left corner), last column = the share of pattern-free positions where it fires.

Writes ``results.json``, ``multi_kernels.png`` and ``multi_confusion.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import typing
from typing import Any

import numpy as np

import jaxconv
from jaxconv import evidence


def plot_kernels(path: str, task: jaxconv.PlantedPatternTask, learned: Any, mf: Any, names: list[str]) -> None:
    k = task.num_patterns
    fig = evidence.figure(2.2 * k, 6.3)
    axes = np.atleast_2d(fig.subplots(3, k))
    for j in range(k):
        ax = axes[0, j]
        ax.imshow(task.templates[j], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"pattern {j}: {names[j]}", fontsize=9)
        for row, (label, kernel) in enumerate((("learned", learned), ("matched filter", mf))):
            ax = axes[1 + row, j]
            w = np.asarray(kernel)[:, :, 0, j]
            limit = float(np.abs(w).max()) or 1.0
            ax.imshow(w, cmap="RdBu_r", vmin=-limit, vmax=limit)
            for (a, b), v in np.ndenumerate(w):
                color = "white" if abs(v) > 0.6 * limit else "black"
                ax.text(b, a, f"{v:.1f}", ha="center", va="center", fontsize=7, color=color)
            ax.set_title(f"{label} kernel {j}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("K kernels from one conv with K outputs (red +, blue -)", fontsize=10)
    evidence.save_figure(fig, path)


def plot_confusion(path: str, confusions: dict[str, np.ndarray], names: list[str]) -> None:
    fig = evidence.figure(5.2 * len(confusions), 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(confusions)))
    for ax, (title, m) in zip(axes, confusions.items(), strict=True):
        shown = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(m):
            ax.text(
                j,
                i,
                f"{v:.3f}" if v < 0.1 else f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if v > 0.6 else "black",
            )
        ax.set_xticks(range(m.shape[1]), [*names, "no pattern"], rotation=30, fontsize=8)
        ax.set_yticks(range(m.shape[0]), [f"kernel {i}" for i in range(m.shape[0])], fontsize=8)
        ax.set_xlabel("planted pattern")
        ax.set_title(f"{title}: share of copies on which\neach kernel fires (logit > 0)", fontsize=9)
        fig.colorbar(shown, ax=ax, shrink=0.7)
    evidence.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--patterns", nargs="+", default=["hedge", "vedge", "cross", "ring"], choices=list(jaxconv.lab.PATTERNS)
    )
    parser.add_argument("--amplitude", type=float, default=4.0)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument(
        "--instances",
        type=int,
        nargs=2,
        default=[0, 2],
        metavar=("MIN", "MAX"),
        help="copies of each pattern per image (0 2)",
    )
    parser.add_argument(
        "--steps",
        type=lambda t: t if t == "auto" else int(t),
        default=jaxconv.TrainConfig().steps,
        help="auto (the lab's default: on noise, a decayed learning rate, then each kernel's threshold "
        "calibrated on the validation draw) or N",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", default="hard_negative", choices=list(typing.get_args(jaxconv.lab.Loss)))
    parser.add_argument("--eval-images", type=int, default=500)
    parser.add_argument("--out", help="output directory (default runs/multi_pattern-<timestamp>)")
    args = parser.parse_args(argv)
    try:
        task = jaxconv.PlantedPatternTask(
            patterns=tuple(args.patterns),
            image_shape=args.image_size,
            instances=tuple(args.instances),
            background="gaussian",
            amplitude=args.amplitude,
        )
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    try:
        out = evidence.prepare_out(args.out or evidence.default_out("multi_pattern"))
    except ValueError as err:
        parser.error(str(err))

    start = time.perf_counter()
    fitted = jaxconv.fit(
        task,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        loss=args.loss,
        eval_images=args.eval_images,
    )
    train_s = fitted.timing["wall_s"]
    mf = jaxconv.matched_filter(task)
    evaluated = {"learned": fitted.metrics, "matched filters": jaxconv.evaluate(mf, task, num_images=args.eval_images)}
    names = list(args.patterns)
    k = task.num_patterns
    specialised = {
        title: {
            "own_pattern_min": float(np.min(np.diag(np.asarray(m["confusion"])[:, :k]))),
            "other_patterns_max": float(np.max(np.asarray(m["confusion"])[:, :k][~np.eye(k, dtype=bool)]))
            if k > 1
            else 0.0,
        }
        for title, m in evaluated.items()
    }
    results = {
        "config": {**vars(args), "out": out, "task": task.to_dict()},
        "learned": {
            "kernel": np.asarray(fitted.params["kernel"]).tolist(),
            "bias": np.asarray(fitted.params["bias"]).tolist(),
            "loss_first_last": [fitted.history[0]["loss"], fitted.history[-1]["loss"]],
        },
        "evaluation": evaluated,
        "specialised": specialised,
        "steps_trained": len(fitted.history),
        "train_s": train_s,
    }
    plot_kernels(os.path.join(out, "multi_kernels.png"), task, fitted.params["kernel"], mf["kernel"], names)
    plot_confusion(
        os.path.join(out, "multi_confusion.png"), {t: np.asarray(m["confusion"]) for t, m in evaluated.items()}, names
    )
    results["wall_s"] = time.perf_counter() - start
    evidence.write_json(os.path.join(out, "results.json"), results)

    print(
        f"{k} patterns {names}, amplitude {args.amplitude}, {args.image_size}x{args.image_size} images; "
        f"trained {len(fitted.history)} steps in {train_s:.1f} s"
    )
    print(f"{'pattern':>10} | {'F1 learned':>10} {'AP learned':>10} | {'F1 MF':>7} {'AP MF':>7}")
    for j, name in enumerate(names):
        a, b = evaluated["learned"], evaluated["matched filters"]
        print(
            f"{name:>10} | {a['f1'][j]:>10.3f} {a['average_precision'][j]:>10.3f} | {b['f1'][j]:>7.3f} "
            f"{b['average_precision'][j]:>7.3f}"
        )
    for title, s in specialised.items():
        print(
            f"{title}: each kernel fires on >= {s['own_pattern_min']:.3f} of its own pattern's copies and on "
            f"<= {s['other_patterns_max']:.3f} of any other pattern's"
        )
    print(f"{results['wall_s']:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
