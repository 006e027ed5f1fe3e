"""Detection vs signal-to-noise: the learned kernel vs the matched filter vs the matched filter's theory.

    python experiments/noise_sweep.py                        # seed pattern, SNR 4-16 dB, 2 seeds: about a minute
    python experiments/noise_sweep.py --snr-db 6 10 14 --seeds 3 --out runs/noise

Gaussian backgrounds (noise std 1, the pattern planted at amplitude A). SNR (dB) is defined as
``10 log10(A^2 |p|^2 / s^2) = 20 log10(d')``: the pattern's energy over the per-pixel noise variance, which
is the matched filter's output SNR; ``d' = A |p| / s``. At each SNR: ``fit`` on the train defaults for each
seed, the matched filter (``jaxconv.matched_filter``) on the same held-out images, and the theory
(``jaxconv.lab._theory``): scores ``N(d', 1)`` at a planted position and ``N(0, 1)`` elsewhere — which ignores the
windows that partly overlap a planted copy, so it is an optimistic bound — with AP from that ROC at the task's
positive prevalence and F1 at the MAP threshold (the matched filter's logit > 0).

Writes ``results.json`` and ``noise_sweep.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import jaxconv
from jaxconv import evidence


def plot(path: str, rows: list[dict], curve: dict, pattern: str) -> None:
    fig = evidence.figure(11, 4.0)
    axes = fig.subplots(1, 2)
    snr = np.array([r["snr_db"] for r in rows])
    for ax, key, title in ((axes[0], "average_precision", "average precision"), (axes[1], "f1", "F1 at logit > 0")):
        ax.plot(curve["snr_db"], curve[key], color="black", linewidth=1.6,
                label="theory: matched filter, white noise\n(no partial overlaps: a bound)")  # fmt: skip
        ax.plot(snr, [r["matched_filter"][key] for r in rows], "s-", color="tab:orange", label="matched filter")
        learned = np.array([[m[key] for m in r["learned"]] for r in rows])
        for s in range(learned.shape[1]):
            ax.plot(snr, learned[:, s], "o", color="tab:blue", alpha=0.5, markersize=5,
                    label="learned kernel (each seed)" if s == 0 else None)  # fmt: skip
        ax.plot(snr, learned.mean(1), "-", color="tab:blue", linewidth=1.2, label="learned, mean over seeds")
        ax.set_xlabel("SNR = 20 log10(A |p| / noise std)  [dB]")
        ax.set_ylabel(title)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(f"{title} vs SNR ({pattern!r} pattern)", fontsize=10)
    axes[0].legend(fontsize=8, loc="upper left")
    evidence.save_figure(fig, path)


def steps_flag(text: str) -> int | str:
    """``--steps``: ``auto`` or a number of steps (checked by ``TrainConfig``)."""
    return text if text == "auto" else int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="seed", choices=list(jaxconv.lab.PATTERNS))
    parser.add_argument("--snr-db", type=float, nargs="+", default=[4, 6, 8, 10, 12, 14, 16])
    parser.add_argument("--seeds", type=int, default=2, help="learned runs per SNR, seeds 0..N-1 (default 2)")
    parser.add_argument("--steps", type=steps_flag, default=jaxconv.TrainConfig().steps, help="auto or N (auto)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--out", help="output directory (default runs/noise_sweep-<timestamp>)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"argument --seeds: must be >= 1; got {args.seeds}")
    try:
        out = evidence.prepare_out(args.out or evidence.default_out("noise_sweep"))
    except ValueError as err:
        parser.error(str(err))

    start = time.perf_counter()
    base = jaxconv.PlantedPatternTask(args.pattern, image_shape=args.image_size, background="gaussian")
    prevalence = jaxconv.theory.positive_prevalence(base)
    rows = []
    print(f"{'SNR dB':>7} {'d`':>5} {'A':>5} | {'AP theory':>9} {'MF':>6} {'learned':>14} | "
          f"{'F1 theory':>9} {'MF':>6} {'learned':>14}")  # fmt: skip
    for snr in sorted(args.snr_db):
        amplitude = jaxconv.theory.amplitude_for_snr_db(base, snr)
        task = jaxconv.PlantedPatternTask(args.pattern, image_shape=args.image_size, background="gaussian",
                                          amplitude=amplitude)  # fmt: skip
        d = jaxconv.theory.d_prime(task)
        theory = jaxconv.theory.theoretical_detection(d, prevalence)
        mf = jaxconv.evaluate(jaxconv.matched_filter(task), task, num_images=args.eval_images)
        learned = [
            jaxconv.fit(task, steps=args.steps, seed=seed, eval_images=args.eval_images).metrics
            for seed in range(args.seeds)
        ]
        rows.append({"snr_db": snr, "d_prime": d, "amplitude": amplitude, "theory": theory, "matched_filter": mf,
                     "learned": learned})  # fmt: skip

        def span(key: str, ms: list[dict] = learned) -> str:
            values = [m[key] for m in ms]
            return f"{np.mean(values):.3f} ({min(values):.2f}-{max(values):.2f})"

        print(f"{snr:>7.1f} {d:>5.2f} {amplitude:>5.2f} | {theory['average_precision']:>9.3f} "
              f"{mf['average_precision']:>6.3f} {span('average_precision'):>14} | {theory['f1']:>9.3f} "
              f"{mf['f1']:>6.3f} {span('f1'):>14}", flush=True)  # fmt: skip

    grid = np.linspace(min(args.snr_db) - 2, max(args.snr_db) + 2, 81)
    curve: dict[str, list[float]] = {"snr_db": grid.tolist(), "average_precision": [], "f1": []}
    for snr in grid:
        theory = jaxconv.theory.theoretical_detection(10 ** (snr / 20), prevalence, grid=1001)
        curve["average_precision"].append(theory["average_precision"])
        curve["f1"].append(theory["f1"])

    gaps = {
        f"{r['snr_db']:g}": {
            "learned_minus_theory_ap": float(np.mean([m["average_precision"] for m in r["learned"]]))
            - r["theory"]["average_precision"],
            "learned_minus_matched_filter_ap": float(np.mean([m["average_precision"] for m in r["learned"]]))
            - r["matched_filter"]["average_precision"],
            "matched_filter_minus_theory_ap": r["matched_filter"]["average_precision"]
            - r["theory"]["average_precision"],
            "learned_minus_theory_f1": float(np.mean([m["f1"] for m in r["learned"]])) - r["theory"]["f1"],
        }
        for r in rows
    }
    results = {
        "config": {**vars(args), "out": out, "task": base.to_dict()},
        "definitions": {
            "snr_db": "10 log10(A^2 |p|^2 / noise_std^2) = 20 log10(d')",
            "d_prime": "A |p| / noise_std",
            "theory": "matched-filter scores N(d', 1) at planted positions, N(0, 1) elsewhere; partial overlaps "
            "and correlations between windows ignored; AP from the ROC TPR = Q(Q^-1(FPR) - d') at the "
            "positive prevalence, F1 at the MAP threshold",
            "positive_prevalence": prevalence,
        },
        "rows": rows,
        "gaps": gaps,
        "theory_curve": curve,
        "wall_s": time.perf_counter() - start,
    }
    evidence.write_json(os.path.join(out, "results.json"), results)
    plot(os.path.join(out, "noise_sweep.png"), rows, curve, args.pattern)

    print("gap to the optimum (AP): learned - theory | learned - matched filter | matched filter - theory")
    for snr, g in gaps.items():
        print(f"  {snr:>5} dB: {g['learned_minus_theory_ap']:+.3f} | {g['learned_minus_matched_filter_ap']:+.3f} | "
              f"{g['matched_filter_minus_theory_ap']:+.3f}")  # fmt: skip
    print(f"positive prevalence {prevalence:.5f}; {results['wall_s']:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
