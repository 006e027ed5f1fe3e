"""Regenerates the guide's figures: runs the experiments on their defaults and copies their PNGs into docs/figures.

    python docs/regenerate.py            # a few minutes on a 2-core CPU

Each experiment writes into a temporary run directory; only the figures the guide shows are kept, so the
committed PNGs always come from the scripts a reader can run themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(ROOT, "docs", "figures")

# (script, extra arguments, {figure written by the script: name under docs/figures})
RUNS = [
    ("learn_pattern.py", ["--no-progress"], {"kernel.png": "learned_kernel.png", "detections.png": "detections.png",
                                             "training.png": "training.png"}),
    ("equivariance.py", [], {"shift_error.png": "shift_error.png", "planted_everywhere.png": "planted_everywhere.png"}),
    ("gradient_sources.py", [], {"gradient_sources.png": "gradient_sources.png"}),
    ("kernel_evolution.py", [], {"kernel_evolution.png": "kernel_evolution.png"}),
    ("noise_sweep.py", [], {"noise_sweep.png": "noise_sweep.png"}),
    ("kernel_size.py", [], {"kernel_size.png": "kernel_size.png"}),
    ("multi_pattern.py", [], {"multi_confusion.png": "multi_confusion.png", "multi_kernels.png": "multi_kernels.png"}),
]  # fmt: skip


def main() -> int:
    os.makedirs(FIGURES, exist_ok=True)
    for script, extra, figures in RUNS:
        if not os.path.exists(os.path.join(ROOT, "experiments", script)):
            print(f"skipping {script}: not in experiments/")
            continue
        with tempfile.TemporaryDirectory() as out:
            print(f"running {script} ...", flush=True)
            subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *extra, "--out", out],
                           check=True, cwd=ROOT)  # fmt: skip
            for source, target in figures.items():
                shutil.copyfile(os.path.join(out, source), os.path.join(FIGURES, target))
                print(f"  docs/figures/{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
