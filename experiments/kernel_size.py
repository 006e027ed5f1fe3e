"""A kernel larger than the pattern: what it learns with and without an L1/L2 penalty, and whether it localises.

    python experiments/kernel_size.py                        # 5x5 kernel, 'seed' (2x3) pattern: ~90 s
    python experiments/kernel_size.py --kernel 7 7 --l1 0.03 --l2 0.01 0.1 --seeds 3 --out runs/ksize

For each background (binary, and gaussian at --amplitude) and each penalty (none, L1 ``l1 * sum |k|``, L2
``l2 * sum k^2``, on the kernel only), ``fit`` trains a ``KH x KW`` kernel from random weights for each seed.
A penalty's effect depends on the kernel's natural scale (~7 on binary backgrounds, ~1.5 on the default
gaussian one), hence two L1 weights. Judged by: held-out F1 and AP; ``kernel_cosine`` at the best placement
of the pattern inside the kernel; and whether it localises: the share of the kernel's energy outside that
``PH x PW`` window (a random kernel has about ``1 - PH PW / (KH KW)``) and the largest outside weight relative
to the largest inside one. The matched filter, embedded in the same kernel size (zeros around), is the reference.

Writes ``results.json`` and ``kernel_size.png`` under ``--out``.
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


def show(ax: Any, kernel: np.ndarray, title: str) -> None:
    limit = float(np.abs(kernel).max()) or 1.0
    image = ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
    for (i, j), v in np.ndenumerate(kernel):
        text = f"{v:.1f}" if abs(v) >= 1 else f"{v:.2f}".replace("0.", ".")
        ax.text(j, i, text, ha="center", va="center", fontsize=7,
                color="white" if abs(v) > 0.6 * limit else "black")  # fmt: skip
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.figure.colorbar(image, ax=ax, shrink=0.7)


def plot(path: str, results: dict, pattern: np.ndarray) -> None:
    from matplotlib.patches import Rectangle

    backgrounds = list(results["runs"])
    penalties = list(results["runs"][backgrounds[0]])
    fig = evidence.figure(3.1 * (len(penalties) + 1), 3.0 * len(backgrounds))
    axes = np.atleast_2d(fig.subplots(len(backgrounds), len(penalties) + 1))
    ph, pw = pattern.shape
    for row, background in enumerate(backgrounds):
        mf = np.asarray(results["matched_filter"][background]["kernel"])
        show(axes[row, 0], mf, f"{background}: matched filter\n(pattern embedded, zeros around)")
        for col, penalty in enumerate(penalties, start=1):
            run = results["runs"][background][penalty][0]
            kernel = np.asarray(run["kernel"])
            p = run["placement"]
            show(axes[row, col], kernel,
                                 f"{background}, {penalty}: F1 {run['metrics']['f1']:.3f}\n"
                                 f"cos {p['cosine']:.3f}, energy outside {p['outside_energy']:.1e}")  # fmt: skip
            a, b = p["offset"]
            axes[row, col].add_patch(Rectangle((b - 0.5, a - 0.5), pw, ph, fill=False, edgecolor="tab:green",
                                               linewidth=2))  # fmt: skip
    fig.suptitle(f"learned {mf.shape[0]}x{mf.shape[1]} kernels (seed 0) for a {ph}x{pw} pattern; "
                 "green: best placement", fontsize=11)  # fmt: skip
    evidence.save_figure(fig, path)


def steps_flag(text: str) -> int | str:
    """``--steps``: ``auto`` or a number of steps (checked by ``TrainConfig``)."""
    return text if text == "auto" else int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="seed", choices=list(jaxconv.lab.PATTERNS))
    parser.add_argument("--kernel", type=int, nargs=2, default=[5, 5], metavar=("KH", "KW"))
    parser.add_argument(
        "--backgrounds", nargs="+", default=["binary", "gaussian"], choices=typing.get_args(jaxconv.lab.Background)
    )
    parser.add_argument("--amplitude", type=float, default=2.45, help="gaussian background's amplitude (2.45)")
    parser.add_argument("--l1", type=float, nargs="*", default=[0.01, 0.05], help="L1 weights to try (0.01 0.05)")
    parser.add_argument("--l2", type=float, nargs="*", default=[0.05], help="L2 weights to try (0.05)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=steps_flag, default=jaxconv.TrainConfig().steps, help="auto or N (auto)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--eval-images", type=int, default=500)
    parser.add_argument("--out", help="output directory (default runs/kernel_size-<timestamp>)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"argument --seeds: must be >= 1; got {args.seeds}")
    try:
        out = evidence.prepare_out(args.out or evidence.default_out("kernel_size"))
    except ValueError as err:
        parser.error(str(err))

    start = time.perf_counter()
    kernel_shape = tuple(args.kernel)
    penalties: dict[str, dict[str, float]] = {"no penalty": {}}
    penalties.update({f"L1 {v:g}": {"l1": v} for v in args.l1})
    penalties.update({f"L2 {v:g}": {"l2": v} for v in args.l2})
    results: dict = {"config": {**vars(args), "out": out}, "matched_filter": {}, "runs": {}}
    print(f"{'background':>10} {'penalty':>12} {'seed':>4} {'F1':>6} {'AP':>6} {'cos':>6} "
          f"{'outside energy':>14} {'outside/inside max':>18}")  # fmt: skip
    for background in args.backgrounds:
        task = jaxconv.PlantedPatternTask(args.pattern, image_shape=args.image_size, background=background,
                                          amplitude=args.amplitude)  # fmt: skip
        try:
            mf = jaxconv.matched_filter(task, kernel_shape=kernel_shape)
        except ValueError as err:
            parser.error(f"argument --kernel: {err}")
        results["matched_filter"][background] = {
            "kernel": np.asarray(mf["kernel"])[:, :, 0, 0].tolist(),
            "metrics": jaxconv.evaluate(mf, task, num_images=args.eval_images),
        }
        results["runs"][background] = {}
        for name, penalty in penalties.items():
            runs = []
            for seed in range(args.seeds):
                fitted = jaxconv.fit(task, steps=args.steps, seed=seed, kernel_shape=kernel_shape,
                                     eval_images=args.eval_images, **penalty)  # fmt: skip
                kernel = np.asarray(fitted.params["kernel"])[:, :, 0, 0]
                placement = jaxconv.lab.kernel_placement(kernel, task.pattern_array)
                m = fitted.metrics
                runs.append({"seed": seed, "metrics": m, "placement": placement, "kernel": kernel.tolist(),
                             "bias": float(fitted.params["bias"][0])})  # fmt: skip
                print(f"{background:>10} {name:>12} {seed:>4} {m['f1']:>6.3f} {m['average_precision']:>6.3f} "
                      f"{placement['cosine']:>6.3f} {placement['outside_energy']:>14.2e} "
                      f"{placement['outside_max_ratio']:>18.3f}", flush=True)  # fmt: skip
            results["runs"][background][name] = runs
        m = results["matched_filter"][background]["metrics"]
        print(f"{background:>10} {'matched filt':>12} {'':>4} {m['f1']:>6.3f} {m['average_precision']:>6.3f} "
              f"{1.0:>6.3f} {0.0:>14.2e} {0.0:>18.3f}")  # fmt: skip
    ph, pw = jaxconv.PlantedPatternTask(args.pattern).pattern_array.shape
    results["random_kernel_outside_energy"] = 1 - ph * pw / (kernel_shape[0] * kernel_shape[1])
    results["wall_s"] = time.perf_counter() - start
    evidence.write_json(os.path.join(out, "results.json"), results)
    plot(os.path.join(out, "kernel_size.png"), results, jaxconv.PlantedPatternTask(args.pattern).pattern_array)
    print(f"(a random {kernel_shape[0]}x{kernel_shape[1]} kernel has ~{results['random_kernel_outside_energy']:.2f} "
          f"of its energy outside a {ph}x{pw} window); {results['wall_s']:.0f} s; wrote {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
