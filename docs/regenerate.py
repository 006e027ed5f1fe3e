"""Regenerates the evidence: runs every experiment on its defaults, keeps its results and the guide's figures.

    python docs/regenerate.py                      # every experiment, in order (the sweeps take longest)
    python docs/regenerate.py --only equivariance noise_sweep
    python docs/regenerate.py --list

Each experiment runs in a temporary folder; its JSON and PNG files (and a training run's ``history.jsonl`` and
``final_params.npz``) are then copied into
``experiments/results/<name>/`` (committed: every number in the README and the guide cites one of them) and the
figures the guide shows into ``docs/figures/``. Nothing is copied from a run that fails, so a committed folder is
always one complete run. Each ``results.json`` of this repository says which machine and versions made it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(ROOT, "docs", "figures")
RESULTS = os.path.join(ROOT, "experiments", "results")

# name: (extra arguments, {figure the script writes: its name under docs/figures})
EXPERIMENTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "learn_pattern": (["--no-progress"], {"kernel.png": "learned_kernel.png", "detections.png": "detections.png",
                                          "training.png": "training.png"}),
    "equivariance": ([], {"shift_error.png": "shift_error.png", "planted_everywhere.png": "planted_everywhere.png"}),
    "gradient_sources": ([], {"gradient_sources.png": "gradient_sources.png"}),
    "kernel_evolution": ([], {"kernel_evolution.png": "kernel_evolution.png"}),
    "kernel_size": ([], {"kernel_size.png": "kernel_size.png"}),
    "least_squares": ([], {}),
    "false_alarms": ([], {}),
    "multi_pattern": ([], {"multi_confusion.png": "multi_confusion.png", "multi_kernels.png": "multi_kernels.png"}),
    "noise_sweep": ([], {"noise_sweep.png": "noise_sweep.png"}),
    "lax_padding_bug": ([], {}),
    "scaling": ([], {}),
    "digits_cnn": ([], {}),
    "remedies": ([], {}),
    "gaussian_remedies": ([], {}),
    "gaussian_snr": ([], {}),
    "pattern_sweep": ([], {}),
    "real_photos": ([], {"real_photos.png": "real_photos.png"}),
    "textures": ([], {"texture_kernels.png": "texture_kernels.png"}),
    "fft_sweep": ([], {}),
    "weight_sharing": ([], {"n_star.png": "weight_sharing.png", "unseen_positions.png": "unseen_positions.png"}),
}  # fmt: skip
"""Every script in ``experiments/`` but ``benchmark.py`` (``jaxconv bench``; BENCHMARKS.md says how to run it) and
``accelerator_check.py`` (the check on a GPU; docs/gpu.md)."""

OUT_IS_A_FILE = {"remedies": "results.json", "gaussian_remedies": "results.json"}
"""Experiments whose ``--out`` names their JSON file rather than a folder."""


def run(name: str) -> float:
    """Runs ``experiments/<name>.py`` and copies its results; returns the seconds it took."""
    extra, figures = EXPERIMENTS[name]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "out")
        os.makedirs(out)
        target = os.path.join(out, OUT_IS_A_FILE[name]) if name in OUT_IS_A_FILE else out
        script = os.path.join(ROOT, "experiments", f"{name}.py")
        subprocess.run([sys.executable, script, *extra, "--out", target], check=True, cwd=ROOT)
        kept = os.path.join(RESULTS, name)
        os.makedirs(kept, exist_ok=True)
        for file in sorted(os.listdir(out)):
            if file.endswith((".json", ".jsonl")):  # the scratch folder's name is no fact about the run
                text = open(os.path.join(out, file)).read().replace(out, f"experiments/results/{name}")
                with open(os.path.join(kept, file), "w") as f:
                    f.write(text)
            elif file.endswith((".npz", ".png")):
                shutil.copyfile(os.path.join(out, file), os.path.join(kept, file))
            else:
                continue
            print(f"  experiments/results/{name}/{file}")
        for source, figure in figures.items():
            shutil.copyfile(os.path.join(out, source), os.path.join(FIGURES, figure))
            print(f"  docs/figures/{figure}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=tuple(EXPERIMENTS), metavar="NAME", help="these experiments only")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(EXPERIMENTS))
        return 0
    os.makedirs(FIGURES, exist_ok=True)
    for name in args.only or EXPERIMENTS:
        print(f"running experiments/{name}.py ...", flush=True)
        print(f"  {run(name):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
