"""Every named pattern x 3 seeds, and random binary patterns 1x2..7x7: does `fit` on its defaults reach F1 = 1.000?

    python experiments/pattern_sweep.py                       # 9 named x 3 seeds + 200 random patterns
    python experiments/pattern_sweep.py --random 5 --seeds 1 --no-named --out runs/smoke

The random patterns come from --sweep-seed (recorded in results.json): a pattern shape (1x2 to 7x7, every
shape but 1x1 equally likely) and an image size (16 to 64, square) are drawn for each of --groups groups, and
--random / --groups patterns in each group get random 0/1 contents (each pixel 1 with probability 1/2, at least
one 1) and a random density in [0.1, 0.5]; each is trained with `fit` on its defaults (seed 0; the task's 1-3
planted copies, fewer where 3 cannot fit) and scored on 1000 held-out images. Patterns of one group share a
compile (a task's contents and density are traced), which is what makes 200 patterns affordable on a CPU.
Groups run in a random order, and results.json is rewritten after every run, so an interrupted sweep still
leaves a random sample of what it did (--resume goes on from it).

Writes results.json (every run: pattern, size, image size, density, F1, false alarms, misses, steps used,
seconds) and pattern_sweep.png (F1 and false alarms against pattern size) under --out. Exits 1 if any run falls
short of F1 = 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import jaxconv
from jaxconv import evidence

SHAPES = [(h, w) for h in range(1, 8) for w in range(1, 8) if h * w > 1]


def random_runs(seed: int, count: int, groups: int) -> list[dict]:
    """``count`` random binary patterns in ``groups`` groups of one (shape, image size), groups shuffled."""
    rng = np.random.default_rng(seed)
    runs = []
    for g in range(groups):
        shape = SHAPES[rng.integers(len(SHAPES))]
        size = int(rng.integers(16, 65))
        for _ in range(count // groups + (g < count % groups)):
            pattern = (rng.random(shape) < 0.5).astype(int)
            if not pattern.any():
                pattern.flat[rng.integers(pattern.size)] = 1
            density = float(np.round(rng.uniform(0.1, 0.5), 3))
            runs.append({"name": "random", "pattern": pattern.tolist(), "image_size": size, "density": density})
    return runs


def instances(run: dict) -> tuple[int, int]:
    """The task's default 1-3 planted copies, fewer where 3 cannot fit (a 7x7 pattern in a 17x17 image: 1)."""
    ph, pw = len(run["pattern"]), len(run["pattern"][0])
    ho, wo = run["image_size"] - ph + 1, run["image_size"] - pw + 1
    fit = (ho * wo - 1) // ((2 * ph - 1) * (2 * pw - 1)) + 1
    return 1, min(3, fit)


def plot(path: str, rows: list[dict]) -> None:
    fig = evidence.figure(11, 4.0)
    axes = fig.subplots(1, 2)
    area = np.array([len(r["pattern"]) * len(r["pattern"][0]) for r in rows])
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(rows))
    named = np.array([r["name"] != "random" for r in rows])
    for ax, key, title in ((axes[0], "f1", "held-out F1"), (axes[1], "fp", "false alarms (of 1000 images)")):
        values = np.array([r[key] for r in rows], float)
        ax.plot(area[~named] + jitter[~named], values[~named], "o", alpha=0.5, markersize=4, label="random pattern")
        ax.plot(area[named] + jitter[named], values[named], "s", alpha=0.7, markersize=4, label="named pattern x seed")
        ax.set_xlabel("pattern size (pixels, PH x PW)")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(min(0.9, float(np.min([r["f1"] for r in rows]))) - 0.01, 1.01)
    axes[1].set_ylim(-0.5, max(5, max(r["fp"] for r in rows)) + 0.5)
    axes[0].legend(fontsize=8, loc="lower left")
    perfect = sum(r["f1"] == 1.0 for r in rows)
    fig.suptitle(f"fit on its defaults: {perfect}/{len(rows)} runs at F1 = 1.000 on 1000 held-out images", fontsize=10)
    evidence.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=200, help="random patterns (200)")
    parser.add_argument("--groups", type=int, default=40, help="(shape, image size) groups they share (40)")
    parser.add_argument("--sweep-seed", type=int, default=2026)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 per named pattern (3)")
    parser.add_argument("--no-named", action="store_true", help="skip the named patterns")
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--out", default="experiments/results/pattern_sweep")
    parser.add_argument("--resume", action="store_true", help="keep the runs in OUT/results.json and go on")
    args = parser.parse_args(argv)
    if args.random < 0 or args.groups < 1:
        parser.error(f"--random must be >= 0 and --groups >= 1; got {args.random} and {args.groups}")
    out = args.out
    os.makedirs(out, exist_ok=True)

    planned = [] if args.no_named else [
        {"name": name, "pattern": [[int(v) for v in row] for row in jaxconv.lab.PATTERNS[name]], "image_size": 32,
         "density": 0.3, "seed": seed}
        for name in jaxconv.lab.PATTERNS for seed in range(args.seeds)
    ]  # fmt: skip
    planned += random_runs(args.sweep_seed, args.random, min(args.groups, max(args.random, 1)))
    rows: list[dict] = []
    start, earlier_s = time.perf_counter(), 0.0
    path = os.path.join(out, "results.json")
    if args.resume and os.path.exists(path):
        with open(path) as f:
            done = json.load(f)
        same = {k: v for k, v in done["config"].items() if k != "resume"} == {
            k: v for k, v in vars(args).items() if k != "resume"
        }
        if not same:
            parser.error(f"--resume: {path} was written with another configuration: {done['config']}")
        rows, earlier_s = done["rows"], done["wall_s"]
        for row in rows:  # written before the field existed: every such run had the default 1-3 copies
            row.setdefault("instances", [1, 3])
        print(f"resuming after {len(rows)} runs", flush=True)
    for run in planned[len(rows) :]:
        task = jaxconv.PlantedPatternTask(
            run["pattern"], image_shape=run["image_size"], density=run["density"], instances=instances(run)
        )
        began = time.perf_counter()
        result = jaxconv.fit(task, seed=run.get("seed", 0), eval_images=args.eval_images)
        m = result.metrics
        row = {
            **run,
            "seed": run.get("seed", 0),
            "instances": list(task.instances),
            "size": [len(run["pattern"]), len(run["pattern"][0])],
            "f1": m["f1"],
            "fp": m["fp"],
            "fn": m["fn"],
            "positives": m["tp"] + m["fn"],
            "steps": len(result.history),
            "validation_errors": result.validation["errors"] if result.validation else None,
            "seconds": round(time.perf_counter() - began, 2),
        }
        rows.append(row)
        text = ",".join("".join(str(v) for v in r) for r in run["pattern"])
        print(
            f"{len(rows):>3}/{len(planned)} {run['name']:>8} {row['size'][0]}x{row['size'][1]} {text:<20} "
            f"image {run['image_size']:>2} density {run['density']:.2f} seed {row['seed']}: F1 {m['f1']:.4f} "
            f"fp {m['fp']} fn {m['fn']} steps {row['steps']} {row['seconds']:.1f} s"
            + ("" if m["f1"] == 1.0 else "  <-- below F1 = 1"),
            flush=True,
        )
        perfect = sum(r["f1"] == 1.0 for r in rows)
        evidence.write_json(
            os.path.join(out, "results.json"),
            {
                "config": vars(args),
                "machine": "2-core AMD EPYC CPU (shared with other jobs), no GPU",
                "planned_runs": len(planned),
                "completed_runs": len(rows),
                "perfect_runs": perfect,
                "wall_s": round(earlier_s + time.perf_counter() - start, 1),
                "rows": rows,
            },
        )
    plot(os.path.join(out, "pattern_sweep.png"), rows)
    perfect = sum(r["f1"] == 1.0 for r in rows)
    print(
        f"{perfect}/{len(rows)} runs reached F1 = 1.000 on {args.eval_images} held-out images each "
        f"({time.perf_counter() - start:.0f} s); wrote {out}"
    )
    return 0 if perfect == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
