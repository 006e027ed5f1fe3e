"""Where the Fourier transform beats the taps: ``conv2d(strategy="fft")`` against ``"direct"`` and ``"xla"``.

    python experiments/fft_sweep.py                    # single-channel, kernels 3..33, images 64..1024: ~6 min
    python experiments/fft_sweep.py --channels 3 --kernels 5 17 --images 256 --out runs/fft_sweep

A sweep of kernel size x image size (NHWC, one image, SAME zero padding, float32, forward): each strategy is
compiled once per point, then timed over ``--rounds`` rounds, each round calling every strategy once in a shuffled
order; the median per strategy is recorded. ``"direct"`` is what ``auto`` chose for these shapes before ``"fft"``
existed. The machine's load (``os.getloadavg``) is recorded before and after each point: on a shared machine the
timings are noisy, and only clear crossovers should be read from them.

Writes ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import jaxconv
from jaxconv import evidence

STRATEGIES = ("direct", "xla", "fft")


def measure(image: int, kernel: int, channels: int, rounds: int, rng: random.Random) -> dict:
    x = jax.random.normal(jax.random.key(0), (1, image, image, channels), jnp.float32)
    k = jax.random.normal(jax.random.key(1), (kernel, kernel, channels, 1), jnp.float32)
    fns = {s: jax.jit(lambda x, k, s=s: jaxconv.conv2d(x, k, padding="SAME", strategy=s)) for s in STRATEGIES}
    compile_s = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        fn(x, k).block_until_ready()
        compile_s[name] = time.perf_counter() - start
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        order = list(fns)
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            fns[name](x, k).block_until_ready()
            samples[name].append(1e3 * (time.perf_counter() - start))
    ms = {name: statistics.median(v) for name, v in samples.items()}
    return {
        "image": image,
        "kernel": kernel,
        "channels": channels,
        "ms": ms,
        "first_call_s": compile_s,
        "fft_speedup_over_direct": ms["direct"] / ms["fft"],
        "fft_speedup_over_xla": ms["xla"] / ms["fft"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 5, 9, 13, 17, 33])
    parser.add_argument("--images", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0, help="seeds the order of the contenders in each round")
    parser.add_argument("--out", default=evidence.default_out("fft_sweep"))
    args = parser.parse_args(argv)
    out = evidence.prepare_out(args.out)
    rng = random.Random(args.seed)
    points = []
    for image in args.images:
        for kernel in args.kernels:
            if kernel > image:
                continue
            load_before = os.getloadavg()[0]
            point = measure(image, kernel, args.channels, args.rounds, rng)
            point["load_before_after"] = [load_before, os.getloadavg()[0]]
            points.append(point)
            ms = point["ms"]
            print(
                f"{image}^2 k{kernel}: " + " ".join(f"{s} {ms[s]:.3g} ms" for s in STRATEGIES) + f" load {load_before}",
                flush=True,
            )
    results = {
        "setup": "NHWC [1, image, image, channels] * [kernel, kernel, channels, 1], SAME zeros, float32, forward; "
        "median ms over rounds, contenders shuffled per round",
        "args": vars(args),
        "environment": evidence.environment(None, None),
        "cpu_count": os.cpu_count(),
        "points": points,
    }
    evidence.write_json(os.path.join(out, "results.json"), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
