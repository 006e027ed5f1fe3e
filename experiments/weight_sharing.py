"""Why a convolution and not a huge weight matrix: training images each detector needs, against image size.

    python experiments/weight_sharing.py                  # 3 detectors x 4 sizes x 2 backgrounds x 2 seeds
    python experiments/weight_sharing.py --sizes 16 24 --cap 64 --seeds 1 --out runs/sharing

Three detectors of the one lab (``TrainConfig.model``), the same task, loss, optimizer and streams: ``conv`` (one
2x3 kernel slid everywhere: 7 parameters), ``local`` (a 2x3 filter and a bias per output position: 7 Ho Wo) and
``dense`` (one matrix from the H x W image to the Ho x Wo logit map: H W Ho Wo + Ho Wo). Each is trained on a
fixed set of n images (``train_images``; the set for n holds the set for every smaller n) for a fixed number of
steps, then scored on 1000 held-out images (F1 at logit > 0, and AP). n runs over 1, 4, 16, ... up to ``--cap``
until F1 >= 0.99 on held-out images, and then n / 2 is tried: n* (the smallest n reaching it) is known to within
a factor 2, or is "> cap". The unseen-positions test then trains each detector on fresh images with the pattern
planted only in the left half of the positions (``train_columns``) and scores F1 at every position
(``position_scores``) on held-out images planted everywhere.

PREDICTIONS (written before measuring). P = Ho Wo positions (P ~ H W); each image plants m = 2 copies on average.

- conv: each of its 6 weights sees every window of every image: one image brings ~m positives and P negatives
  (among them the near misses, 2 per image on a binary background) to the same 6 weights. n* = O(1): 1 or 4 at
  every size, and if anything falling with the size (a larger image brings more windows). Slope ~0 on the log-log
  plot of n* against H.
- local: the filter at position p sees one window per image, a positive there with probability ~m / P. A filter
  that never saw a positive has no reason to fire, so recall <= the coverage, the share of positions with at least
  one positive in the training set, ~1 - exp(-n m / P); F1 >= 0.99 needs nearly every position covered, a coupon
  collector's n* ~ (P / m) ln P: ~500 at 16x16, ~8000 at 48x48 — beyond this machine's cap at 24 and up; slope
  ~2 (times a log) against H.
- dense: the logit at p is a weighted sum of all H W pixels, and must learn to ignore the H W - 6 outside its
  window from data alone. On top of the local detector's coverage it needs ~H W examples per position to pin down
  H W weights (Li, Zhang & Arora, ICLR 2021: a task that O(1) samples solve for a convolutional net needs
  Omega(d^2) samples, d the input size, for a fully connected net trained by SGD from a Gaussian start, and
  Omega(d) under Adam): n* ~ P H W / m, slope ~4 against H; here F1 ~ 0 up to the cap at every size.
- unseen positions: conv's F1 on the never-planted right half equals its F1 on the left (its one kernel is the
  same at every position: equivariance); local's is that of its untouched random filters, ~0; dense ~0.

Budget: on the 2-core machine, shared with other jobs, the committed run took 1525 s (25 min, load average ~14;
each new shape compiles for ~15 s there; a run trains ``--steps`` steps of ``--batch-size`` whatever n is, so a
large n is seen fewer times per image: ``steps * batch / n`` epochs). Gaussian backgrounds use amplitude 5 (the
matched filter's held-out AP ~0.999); every detector uses the hard-negative loss and a cosine decay of the
learning rate over the run. No validation draw is used (no auto stopping, no threshold calibration): the n images
are all the labelled data a run sees.

Writes results.json, n_star.png (n* against image size, log-log) and unseen_positions.png under --out
(``--replot results.json`` redraws the figures of a finished run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

import jax
import numpy as np

import jaxconv
from jaxconv import evidence

MODELS = ("conv", "local", "dense")
TARGET_F1 = 0.99


def parameters(params: dict[str, Any]) -> int:
    return int(sum(np.size(v) for v in params.values()))


def coverage(targets: np.ndarray, n: int) -> float:
    """Share of the positions where the first ``n`` training images hold at least one positive."""
    return float(np.mean(targets[:n].max(axis=0) > 0.5))


def one_run(task: Any, model: str, n: int | None, seed: int, args: argparse.Namespace, **extra: Any) -> dict:
    fitted = jaxconv.fit(task, model=model, train_images=n, seed=seed, steps=args.steps, decay_steps=args.steps,
                         batch_size=args.batch_size, loss="hard_negative", steps_per_dispatch=max(args.steps // 3, 1),
                         eval_images=args.eval_images, **extra)  # fmt: skip
    m = fitted.metrics
    return {
        "n": n, "seed": seed, "f1": m["f1"], "average_precision": m["average_precision"], "precision": m["precision"],
        "recall": m["recall"], "parameters": parameters(fitted.params), "wall_s": fitted.timing["wall_s"],
        "ms_per_step": 1000 / fitted.timing["steps_per_s"],  # after the first dispatch, which compiles
        "params": fitted.params,
    }  # fmt: skip


def sweep(task: Any, model: str, seed: int, args: argparse.Namespace, targets: np.ndarray) -> dict:
    """Runs n = 1, 4, 16, ... (<= cap) until F1 >= TARGET_F1, then n / 2; returns the runs and n*."""
    runs, n_star, n = [], None, 1
    while n <= args.cap:
        run = one_run(task, model, n, seed, args)
        runs.append(run)
        print(f"{task.background:>9} {task.image_shape[0]:>4} {model:>6} {seed:>4} {n:>6} {run['f1']:>7.3f} "
              f"{run['average_precision']:>7.3f} {coverage(targets, n):>8.3f} {run['ms_per_step']:>8.1f}",
              flush=True)  # fmt: skip
        if run["f1"] >= TARGET_F1:
            n_star = n
            if n > 1:
                half = one_run(task, model, n // 2, seed, args)
                runs.append(half)
                n_star = n // 2 if half["f1"] >= TARGET_F1 else n
            break
        n *= 4
    for run in runs:
        run["coverage"] = coverage(targets, run["n"])
        del run["params"]
    return {"runs": sorted(runs, key=lambda r: r["n"]), "n_star": n_star}


def unseen(task: Any, model: str, args: argparse.Namespace) -> dict:
    """Trains on fresh images planted only in the left half of the positions; F1 per position on held-out images."""
    wo = task.output_shape[1]
    run = one_run(task, model, None, 0, args, train_columns=(0, wo // 2))
    maps = jaxconv.lab.position_scores(run.pop("params"), task, num_images=args.eval_images)
    halves = {}
    for name, cols in (("left", slice(0, wo // 2)), ("right", slice(wo // 2, wo))):
        tp, fp, fn = (int(maps[k][:, cols].sum()) for k in ("tp", "fp", "fn"))
        halves[name] = {"f1": 2 * tp / max(2 * tp + fp + fn, 1), "tp": tp, "fp": fp, "fn": fn}
    print(f"unseen {model:>6}: F1 left {halves['left']['f1']:.3f}, right {halves['right']['f1']:.3f}", flush=True)
    return {**run, "halves": halves, "f1_map": np.where(np.isnan(maps["f1"]), None, maps["f1"]).tolist()}


def plot_n_star(path: str, results: dict) -> None:
    backgrounds = list(results["sweeps"])
    fig = evidence.figure(5.2 * len(backgrounds), 8.4)
    axes = np.array(fig.subplots(2, len(backgrounds))).reshape(2, len(backgrounds))
    cap = results["config"]["cap"]
    for col, background in enumerate(backgrounds):
        ax, curves = axes[0, col], axes[1, col]
        for index, (model, marker) in enumerate(zip(MODELS, "osD", strict=True)):
            if model not in results["config"]["models"]:  # a run of some models (--models): each keeps its marker
                continue
            color, stars, above = f"C{index}", [], []
            for size, by_model in results["sweeps"][background].items():
                for one in by_model[model]:
                    (stars if one["n_star"] else above).append((int(size), one["n_star"] or cap))
                runs = [r for one in by_model[model] for r in one["runs"] if r["seed"] == 0]
                curves.plot([r["n"] for r in runs], [r["f1"] for r in runs], marker=marker, markersize=4,
                            label=f"{model} {size}x{size}")  # fmt: skip
            if stars:
                xs, ys = np.array(sorted(stars)).T
                ax.scatter(xs, ys, marker=marker, color=color, label=f"{model}: n* (each seed)")
                ax.plot(np.unique(xs), [np.median(ys[xs == x]) for x in np.unique(xs)], color=color)
            if above:
                xs, ys = np.array(above).T
                ax.scatter(xs, ys * 1.4**index, marker="^", s=60, facecolors="none", edgecolors=color,
                           label=f"{model}: n* > {cap} (not reached)")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("image size H (H x H images)")
        ax.set_ylabel(f"training images n* for held-out F1 >= {TARGET_F1}")
        ax.set_title(f"{background} background: n* (line: median over seeds)")
        ax.minorticks_off()
        ax.set_xticks(results["config"]["sizes"], [str(s) for s in results["config"]["sizes"]])
        ax.legend(fontsize=7)
        curves.set_xscale("log")
        curves.set_xlabel("training images n")
        curves.set_ylabel("held-out F1 (seed 0)")
        curves.set_title(f"{background}: F1 against n")
        curves.legend(fontsize=6, ncol=3)
    fig.suptitle("weight sharing: the training images each detector needs", fontsize=11)
    evidence.save_figure(fig, path)


def plot_unseen(path: str, results: dict) -> None:
    models = [m for m in MODELS if m in results["config"]["models"]]
    fig = evidence.figure(4.0 * len(models), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(models)))
    for ax, model in zip(axes, models, strict=True):
        run = results["unseen"][model]
        f1 = np.array(run["f1_map"], dtype=float)
        image = ax.imshow(f1, vmin=0, vmax=1, cmap="viridis")
        ax.axvline(f1.shape[1] // 2 - 0.5, color="white", linestyle="--")
        ax.set_title(f"{model}: F1 left {run['halves']['left']['f1']:.2f}, right {run['halves']['right']['f1']:.2f}",
                     fontsize=9)  # fmt: skip
        ax.set_xlabel("output column (planted in training: left of the line)")
        ax.figure.colorbar(image, ax=ax, shrink=0.7)
    fig.suptitle("F1 per position, held-out images planted everywhere; training planted only the left half",
                 fontsize=10)  # fmt: skip
    evidence.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 24, 32, 48], help="image sizes H (H x H)")
    parser.add_argument("--backgrounds", nargs="+", default=["binary", "gaussian"], choices=["binary", "gaussian"])
    parser.add_argument("--amplitude", type=float, default=5.0, help="gaussian background's amplitude (5)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--cap", type=int, default=1024, help="largest n tried (1024)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--unseen-size", type=int, default=24, help="image size of the unseen-positions test (24)")
    parser.add_argument("--out", help="output directory (default runs/weight_sharing-<timestamp>)")
    parser.add_argument("--replot", metavar="RESULTS_JSON", help="only redraw the figures of a results.json into --out")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.cap < 1:
        parser.error(f"--seeds and --cap must be >= 1; got {args.seeds} and {args.cap}")
    default_out = (os.path.dirname(args.replot) or ".") if args.replot else evidence.default_out("weight_sharing")
    try:
        out = evidence.prepare_out(args.out or default_out)
    except ValueError as err:
        parser.error(str(err))
    if args.replot:
        with open(args.replot) as f:
            results = json.load(f)
        plot_n_star(os.path.join(out, "n_star.png"), results)
        plot_unseen(os.path.join(out, "unseen_positions.png"), results)
        return 0

    start = time.perf_counter()
    results: dict[str, Any] = {
        "config": {**vars(args), "out": out, "target_f1": TARGET_F1},
        "machine": f"2-core AMD EPYC CPU (shared with other jobs), no GPU; jax {jax.__version__}",
        "matched_filter": {}, "sweeps": {}, "unseen": {},
    }  # fmt: skip
    print(f"{'background':>9} {'H':>4} {'model':>6} {'seed':>4} {'n':>6} {'F1':>7} {'AP':>7} {'coverage':>8} "
          f"{'ms/step':>8}")  # fmt: skip
    for background in args.backgrounds:
        results["sweeps"][background], results["matched_filter"][background] = {}, {}
        for size in args.sizes:
            task = jaxconv.PlantedPatternTask("seed", image_shape=size, background=background,
                                              amplitude=args.amplitude)  # fmt: skip
            m = jaxconv.evaluate(jaxconv.matched_filter(task), task, num_images=args.eval_images)
            results["matched_filter"][background][size] = {"f1": m["f1"], "average_precision": m["average_precision"]}
            results["sweeps"][background][size] = {model: [] for model in args.models}
            for seed in range(args.seeds):
                # The sets are nested (the first n images of the cap's set are the set of n), so one draw gives
                # every n's coverage.
                config = jaxconv.TrainConfig(task, seed=seed, train_images=args.cap)
                targets = np.asarray(jaxconv.lab.training_set(config)[1])
                for model in args.models:
                    results["sweeps"][background][size][model].append(sweep(task, model, seed, args, targets))
    task = jaxconv.PlantedPatternTask("seed", image_shape=args.unseen_size, background="gaussian",
                                      amplitude=args.amplitude)  # fmt: skip
    for model in args.models:
        results["unseen"][model] = unseen(task, model, args)
    results["n_star"] = {
        background: {size: {model: [s["n_star"] for s in sweeps] for model, sweeps in by_model.items()}
                     for size, by_model in by_size.items()}
        for background, by_size in results["sweeps"].items()
    }  # fmt: skip
    results["wall_s"] = time.perf_counter() - start
    evidence.write_json(os.path.join(out, "results.json"), results)
    plot_n_star(os.path.join(out, "n_star.png"), results)
    plot_unseen(os.path.join(out, "unseen_positions.png"), results)
    print(f"n* (None: > {args.cap}): {results['n_star']}")
    print(f"{math.ceil(results['wall_s'])} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
