"""Every named binary pattern x N seeds: does `fit` on the CLI's defaults reach held-out F1 = 1.000?

    python experiments/pattern_sweep.py                 # all binary patterns, seeds 0-9, 1000 held-out images
    python experiments/pattern_sweep.py --patterns seed cross --seeds 3 --out runs/sweep.json

Prints one line per (pattern, seed) and a summary; exits 1 if any run falls short of F1 = 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jaxconv
from jaxconv.cli import TRAIN_DEFAULTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", nargs="+", default=list(jaxconv.PATTERNS), choices=list(jaxconv.PATTERNS))
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 per pattern (default 10)")
    parser.add_argument("--steps", type=int, default=TRAIN_DEFAULTS["steps"])
    parser.add_argument("--batch-size", type=int, default=TRAIN_DEFAULTS["batch_size"])
    parser.add_argument("--learning-rate", type=float, default=TRAIN_DEFAULTS["learning_rate"])
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--out", help="write every run's metrics to this JSON file")
    args = parser.parse_args(argv)

    rows, failures = [], 0
    start = time.perf_counter()
    for name in args.patterns:
        task = jaxconv.PlantedPatternTask(name)
        for seed in range(args.seeds):
            result = jaxconv.fit(
                task,
                steps=args.steps,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                seed=seed,
                eval_images=args.eval_images,
            )
            m = result.metrics
            ok = m["f1"] == 1.0
            failures += not ok
            rows.append({"pattern": name, "seed": seed, **m})
            print(
                f"{name:>9} seed {seed}: F1 {m['f1']:.4f}  AP {m['average_precision']:.4f}  "
                f"cos {m['kernel_cosine']:.4f}  fp {m['fp']}  fn {m['fn']}  positives {m['tp'] + m['fn']}"
                + ("" if ok else "  <-- below F1 = 1"),
                flush=True,
            )
    runs = len(rows)
    print(
        f"{runs - failures}/{runs} runs reached F1 = 1.000 on {args.eval_images} held-out images each "
        f"({time.perf_counter() - start:.0f} s)"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
