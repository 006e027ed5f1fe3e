"""Gaussian backgrounds: is the learned detector's AP within 0.02 of the matched filter's near AP = 0.85?

    python experiments/gaussian_snr.py                       # seed pattern, amplitude 2.45 (MF AP ~0.85), seeds 0-4
    python experiments/gaussian_snr.py --amplitudes 2.3 2.45 2.6 --seeds 10

For each amplitude (noise std 1): the matched filter's AP on the held-out images, then `fit` on the train
defaults for each seed and the learned AP on the same images. Exits 1 if any |AP gap| > --tolerance at an
amplitude whose matched-filter AP is within 0.05 of 0.85.
"""

from __future__ import annotations

import argparse
import sys

import jaxconv
from jaxconv.cli import TRAIN_DEFAULTS, parse_steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="seed", choices=list(jaxconv.PATTERNS))
    parser.add_argument("--amplitudes", type=float, nargs="+", default=[2.45])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=parse_steps, default=TRAIN_DEFAULTS["steps"], help="auto or N (auto)")
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args(argv)

    bad = 0
    for amplitude in args.amplitudes:
        task = jaxconv.PlantedPatternTask(args.pattern, background="gaussian", amplitude=amplitude)
        mf = jaxconv.evaluate(jaxconv.matched_filter(task), task, num_images=args.eval_images)
        print(f"amplitude {amplitude}: matched filter AP {mf['average_precision']:.4f}  F1 {mf['f1']:.4f}")
        for seed in range(args.seeds):
            m = jaxconv.fit(task, steps=args.steps, seed=seed, eval_images=args.eval_images).metrics
            gap = m["average_precision"] - mf["average_precision"]
            near = abs(mf["average_precision"] - 0.85) <= 0.05
            bad += near and abs(gap) > args.tolerance
            print(
                f"  seed {seed}: learned AP {m['average_precision']:.4f} (gap {gap:+.4f})  F1 {m['f1']:.4f}  "
                f"cos {m['kernel_cosine']:.4f}",
                flush=True,
            )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
