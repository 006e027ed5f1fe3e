"""The jit benchmark behind ``jaxconv bench`` and ``experiments/benchmark.py``, built so that no order flatters.

For each grid point and each contender — every ``conv2d`` strategy, ``lax.conv_general_dilated`` called
directly, and PyTorch's ``conv2d`` when torch is importable (on CUDA when JAX's backend is ``gpu``) — it
measures, in one process:

- forward and forward+backward (``value_and_grad`` of ``<conv(x, k), ct>`` w.r.t. ``x`` and ``k``) wall times
  in many short rounds: every round calls each contender in one block, the contenders **in a fresh random order**
  (one seeded ``random.Random`` for the whole run, its seed recorded), each call ended by ``block_until_ready`` /
  ``torch.cuda.synchronize``; a block is a first call (its cold time kept apart), untimed calls back to back for
  :data:`WARM_S`, then ``block - 1`` timed calls whose median is the round's sample (warm calls, as in a training
  loop), with the minor page faults per call beside it; per-round samples are kept, medians reported, and ratios
  between two contenders are the median of their *per-round* ratios (both timed in the same round, under the same
  load);
- compile time, the compiled program's memory (``memory_analysis``) and a fingerprint of its optimised HLO;
  a contender that runs out of memory is recorded as ``"OOM"`` and the run goes on;
- GFLOP/s counting only the taps that touch the image (not the padding), and the percentage of the float32
  matmul peak, the best of :data:`PEAK_SAMPLES` samples spread through the run at the same thread count.

Validity: programs that compile to the identical optimised HLO (``auto`` and the strategy it resolves to, ``xla``
and ``lax``) cannot differ in speed, so their per-round ratios measure the run's noise. Each such pair must agree:
the distribution-free confidence interval of its median per-round ratio (order statistics; family-wise 95% over
every pair of the run, Bonferroni) must contain 1. Where one does not, the order of calls or the load biased the
run, and it is marked INVALID (printed and in ``bench.json``).

Floors (:func:`floors`): ``auto <= lax`` per point (forward, forward+backward); geometric mean of ``auto/torch``
``<= 0.8`` both ways; depthwise forward+backward ``<= 1.5x`` torch; first layers (``C <= 3``, ``O >= 16``) within
``1.2x`` of torch at each point, both ways; channel-heavy points forward at ``>= 70%`` of
the matmul peak.

The ``local`` grid times locally connected layers instead (a filter per output position): jaxconv's
``conv_general_dilated_local`` (as ``auto``) against ``lax.conv_general_dilated_local`` itself, called with the same
arguments (NHWC, lax's ``[Ho, Wo, C*KH*KW, O]`` kernel, SAME), forward and forward+backward; PyTorch has no such layer.

Results: a table on screen, ``bench.json`` (every sample) and ``bench.png`` in the output directory.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import functools
import gc
import json
import math
import os
import platform
import random
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._env import versions
from jaxconv._files import write_atomic
from jaxconv.conv._conv import conv2d, resolve_strategy
from jaxconv.conv._local import conv_general_dilated_local
from jaxconv.conv._spec import ConvSpec, Pads, make_spec
from jaxconv.conv._strategies import xla_cpu_threads

JAXCONV_STRATEGIES = ("auto", "window", "shift", "direct", "xla", "fft")
MODES = ("fwd", "fwd_bwd")
PEAK_SAMPLES = 5
FAMILY_CONFIDENCE = 0.95
GEOMEAN_TORCH_FLOOR = 0.8
DEPTHWISE_TORCH_FLOOR = 1.5
PEAK_FRACTION_FLOOR = 0.70
FIRST_LAYER_TORCH_FLOOR = 1.2
# With blocks of more than one call, every contender's block calls it back to back, untimed, for at least this long
# before its timed calls (the first call included). Two effects of the order of calls are kept out of the samples
# this way (measured, BENCHMARKS.md, "How it measures"): PyTorch's OpenMP threads, at their defaults, spin on a core
# for up to ~10 ms after a 2-thread call, and would slow whichever contender is timed next; and an idle machine is
# slow to get back up to speed — after 30 ms of sleep XLA's next calls ran at ~0.7 ms instead of 0.4 (64x28² 1->16 k5,
# two threads) for a dozen calls, PyTorch's for two — so an idle gap to let PyTorch's threads settle would handicap
# whichever contender follows it. Warm, every contender is timed as in a training loop.
WARM_S = 0.030
# ``--vector-width W`` adds the contender ``auto_vwW``: ``auto``'s program compiled with this XLA option (per
# program, ``compiler_options``), which sets the width of the vectors XLA:CPU's own loops use (256 bits by default
# on x86; PyTorch's oneDNN kernels use 512-bit registers where the CPU has them).
VECTOR_WIDTH_OPTION = "xla_cpu_prefer_vector_width"


def widened(width: int) -> str:
    """The contender name of ``auto`` compiled for ``width``-bit vectors (``--vector-width``)."""
    return f"auto_vw{width}"


@dataclasses.dataclass(frozen=True)
class Point:
    """One benchmark configuration: NHWC input ``[n, h, w, c]``, kernel ``k x k``, SAME padding, float32; ``local``:
    a locally connected layer (ungrouped, a ``k x k`` filter per output position) instead of a convolution."""

    n: int
    h: int
    w: int
    c: int
    o: int
    k: int
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    local: bool = False

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. ``8x64x64 32->32 k3``."""
        extra = "".join(
            f" {name}{value}"
            for name, value in (("s", self.stride), ("d", self.dilation), ("g", self.groups))
            if value != 1
        )
        return f"{self.n}x{self.h}x{self.w} {self.c}->{self.o} k{self.k}{extra}" + (" local" if self.local else "")

    @property
    def out_hw(self) -> tuple[int, int]:
        """SAME output size ``(ceil(h / stride), ceil(w / stride))``."""
        return -(-self.h // self.stride), -(-self.w // self.stride)

    @property
    def spec(self) -> ConvSpec:
        """The point's ``conv2d`` (NHWC, SAME, zero padding, ``strategy="auto"``) as a checked spec."""
        return make_spec(
            (self.n, self.h, self.w, self.c),
            (self.k, self.k, self.c // self.groups, self.o),
            stride=self.stride,
            padding="SAME",
            dilation=self.dilation,
            groups=self.groups,
            padding_mode="zeros",
            strategy="auto",
            precision=None,
        )

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        """HWIO ``(k, k, c // groups, o)``; locally connected: lax's ``(Ho, Wo, c * k * k, o)``."""
        if self.local:
            return (*self.out_hw, self.c * self.k * self.k, self.o)
        return (self.k, self.k, self.c // self.groups, self.o)

    @property
    def padding(self) -> Pads:
        """SAME padding ``((top, bottom), (left, right))`` as ``lax`` computes it (odd extra at bottom/right)."""
        return self.spec.padding

    def _taps_inside(self, size: int, out: int, low: int) -> int:
        # Output positions times taps, along one axis, that land inside [0, size) rather than on padding.
        return sum(
            1 for i in range(out) for a in range(self.k) if 0 <= i * self.stride + a * self.dilation - low < size
        )

    @property
    def flops(self) -> float:
        """Forward multiply-adds on the image times two (taps that land on padding not counted).

        ``2 * N * O * (C / groups) * T_h * T_w`` where ``T_h`` counts (output row, kernel row) pairs that read an
        image row, and likewise ``T_w``.

        Examples:
          >>> Point(1, 3, 3, 1, 1, 3).flops  # SAME 3x3 on 3x3: 4 corners x 4 + 4 edges x 6 + 1 centre x 9
          98.0
        """
        (top, _), (left, _) = self.padding
        ho, wo = self.out_hw
        taps = self._taps_inside(self.h, ho, top) * self._taps_inside(self.w, wo, left)
        return 2.0 * self.n * self.o * (self.c // self.groups) * taps

    @property
    def channel_heavy(self) -> bool:
        """The channel-heavy class (its floor: a share of the matmul peak): ``C, O >= 32``, ungrouped, a convolution."""
        return self.c >= 32 and self.o >= 32 and self.groups == 1 and not self.local

    @property
    def first_layer(self) -> bool:
        """A network's first layer: ungrouped, at most 3 input channels fanned out to at least 16 (its floor: within
        :data:`FIRST_LAYER_TORCH_FLOOR` of PyTorch)."""
        return self.groups == 1 and self.c <= 3 and self.o >= 16 and not self.local

    @property
    def depthwise(self) -> bool:
        """One input channel per group, ``groups > 1``."""
        return self.groups > 1 and self.groups == self.c


# The main CPU grid (NHWC, f32, SAME, stride 1) plus stride-2, dilated, depthwise and large-kernel points, and first
# layers: the digits CNN's 1->16 k5, 3->16 k3, a CIFAR-sized 3->32 k3 and a ResNet stem 3->64 k7 s2 at 224².
GRID: tuple[Point, ...] = (
    Point(32, 64, 64, 1, 1, 3),
    Point(32, 64, 64, 1, 8, 5),
    Point(16, 128, 128, 3, 16, 3),
    Point(8, 64, 64, 32, 32, 3),
    Point(4, 256, 256, 1, 1, 7),
    Point(8, 32, 32, 64, 64, 3),
    Point(1, 512, 512, 1, 1, 3),
    Point(64, 28, 28, 1, 16, 5),
    Point(16, 64, 64, 16, 32, 3, stride=2),
    Point(8, 64, 64, 8, 8, 3, dilation=2),
    Point(8, 64, 64, 32, 32, 3, groups=32),
    # Large single-channel kernels (template matching), where auto takes "fft".
    Point(4, 256, 256, 1, 1, 17),
    Point(1, 256, 256, 1, 1, 33),
    # First layers (with 16x128² 3->16 k3 and 64x28² 1->16 k5 above).
    Point(64, 32, 32, 3, 32, 3),
    Point(4, 224, 224, 3, 64, 7, stride=2),
)

# Sized for a GPU: a ResNet stem, a ResNet block, a depthwise layer, one large single-channel image.
GPU_GRID: tuple[Point, ...] = (
    Point(128, 224, 224, 3, 64, 7, stride=2),
    Point(64, 56, 56, 64, 64, 3),
    Point(32, 56, 56, 256, 256, 3, groups=256),
    Point(1, 4096, 4096, 1, 1, 3),
)

# Locally connected layers: the lab's detectors (one channel in, few out, image sizes 16 to 48), more channels, a
# stride and a dilation.
LOCAL_GRID = (
    Point(64, 16, 16, 1, 1, 3, local=True),
    Point(32, 48, 48, 1, 1, 3, local=True),
    Point(32, 28, 28, 1, 8, 5, local=True),
    Point(8, 32, 32, 16, 16, 3, local=True),
    Point(8, 64, 64, 3, 8, 3, stride=2, local=True),
    Point(16, 32, 32, 4, 4, 3, dilation=2, local=True),
)
GRIDS = {"main": GRID, "gpu": GPU_GRID, "local": LOCAL_GRID}
QUICK_GRIDS = {
    "local": (Point(2, 8, 8, 1, 2, 3, local=True), Point(2, 9, 8, 2, 3, 3, stride=2, local=True)),
    "main": (Point(2, 16, 16, 1, 4, 3), Point(2, 12, 12, 8, 8, 3, stride=2, groups=2)),
    "gpu": (
        Point(2, 28, 28, 3, 16, 7, stride=2),
        Point(2, 14, 14, 16, 16, 3),
        Point(2, 14, 14, 16, 16, 3, groups=16),
        Point(1, 64, 64, 1, 1, 3),
    ),
}


def grid_for(name: str, quick: bool) -> tuple[Point, ...]:
    """The named grid (``"main"``, ``"gpu"`` or ``"local"``), or its tiny ``quick`` version."""
    return (QUICK_GRIDS if quick else GRIDS)[name]


# ---------------------------------------------------------------------------------------------------------------
# Statistics: pure functions of per-round samples (tests/test_bench.py feeds them synthetic records).


def median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """The median over rounds of ``a[i] / b[i]`` (both timed in round ``i``)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def median_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: order statistics ``(x_(k), x_(n+1-k))``.

    ``k`` is the largest rank with ``P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2``; with too few values for
    the confidence asked, the whole range ``(min, max)``.

    Examples:
      >>> median_interval([5, 1, 4, 2, 3, 9, 7, 8, 6, 10], 0.9)  # P(Binomial(10, 1/2) <= 1) = 0.011 <= 0.05
      (2, 9)
    """
    xs = sorted(values)
    n = len(xs)
    tail, k, cdf = (1 - confidence) / 2, 0, 0.0
    while k < n // 2:
        cdf += math.comb(n, k) / 2**n  # P(Binomial(n, 1/2) == k), accumulated: P(X <= k)
        if cdf > tail:
            break
        k += 1
    k = max(k, 1)
    return xs[k - 1], xs[n - k]


def identical_pairs(record: dict[str, Any], mode: str) -> list[tuple[str, str]]:
    """The pairs of contenders that must time alike at ``record``'s point: ``auto`` and its resolved strategy,
    ``xla`` and ``lax``, and ``auto`` and ``lax`` — each only where both compiled to the identical program."""
    program = record["program"][mode]
    candidates = [("auto", record["auto_strategy"]), ("xla", "lax"), ("auto", "lax")]
    pairs = []
    for a, b in candidates:
        if a != b and (a, b) not in pairs and program.get(a) is not None and program.get(a) == program.get(b):
            pairs.append((a, b))
    return pairs


def rounds_needed(confidence: float) -> int:
    """The fewest rounds whose median has a distribution-free interval at ``confidence``: ``2^-n <= (1-c)/2``."""
    return math.ceil(math.log2(2 / (1 - confidence)))


def validity(records: Sequence[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """``"VALID"``, ``"INVALID"`` or ``"UNDETERMINED"``, and each identical-program pair's check.

    A pair agrees when the confidence interval (:func:`median_interval`, at the family-wise
    :data:`FAMILY_CONFIDENCE`, Bonferroni over all pairs of the run) of its median per-round ratio contains 1.
    The run is VALID when every pair agrees, INVALID when one does not, UNDETERMINED when it has too few rounds
    for such an interval (:func:`rounds_needed`) or no identical pairs at all.
    """
    checks = [(r, mode, pair) for r in records for mode in MODES for pair in identical_pairs(r, mode)]
    confidence = 1 - (1 - FAMILY_CONFIDENCE) / max(len(checks), 1)
    out = []
    for r, mode, (a, b) in checks:
        ratios = [x / y for x, y in zip(r["samples_ms"][mode][a], r["samples_ms"][mode][b], strict=True)]
        lo, hi = median_interval(ratios, confidence)
        agree = lo <= 1.0 <= hi if len(ratios) >= rounds_needed(confidence) else None
        out.append(
            {
                "label": r["label"],
                "mode": mode,
                "pair": [a, b],
                "ratio": statistics.median(ratios),
                "interval": [lo, hi],
                "confidence": confidence,
                "agree": agree,
            }
        )
    if not out or any(c["agree"] is None for c in out):
        return "UNDETERMINED", out
    return ("VALID" if all(c["agree"] for c in out) else "INVALID"), out


def _ratio(record: dict[str, Any], mode: str, a: str, b: str) -> float | None:
    samples = record["samples_ms"][mode]
    if a not in samples or b not in samples:
        return None
    return median_ratio(samples[a], samples[b])


def _geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else float("nan")


def percent_of_peak(record: dict[str, Any], peak_gflops: float) -> float | None:
    """``auto``'s forward GFLOP/s as a percentage of ``peak_gflops``."""
    ms = record["ms"]["fwd"].get("auto")
    return None if ms is None else 100 * record["flops"] / (ms * 1e-3) / 1e9 / peak_gflops


def floors(records: Sequence[dict[str, Any]], peak_gflops: float) -> list[tuple[str, bool, str]]:
    """The floors BENCHMARKS.md states, as ``(name, passed, detail)``; ratios are medians of per-round ratios.

    - ``auto <= lax`` on every point (forward, forward+backward): strictly, except where ``auto`` compiled to the
      identical program as ``lax`` — its ratio is then noise, judged by :func:`validity`; a point where ``auto``
      failed (e.g. OOM) and ``lax`` did not fails;
    - geometric mean of ``auto / torch`` over the points ``<=`` :data:`GEOMEAN_TORCH_FLOOR` (both modes), if torch ran;
    - depthwise points forward+backward ``<=`` :data:`DEPTHWISE_TORCH_FLOOR` x torch;
    - first-layer points (:attr:`Point.first_layer`) forward and forward+backward ``<=``
      :data:`FIRST_LAYER_TORCH_FLOOR` x torch, each;
    - channel-heavy points (``C, O >= 32``, ungrouped) forward at ``>=`` :data:`PEAK_FRACTION_FLOOR` of the peak.
    """
    results: list[tuple[str, bool, str]] = []
    for mode in MODES:
        slower, same, worst = [], [], (None, 0.0)
        for r in records:
            if "lax" not in r["samples_ms"][mode]:
                continue
            if ("auto", "lax") in identical_pairs(r, mode):
                same.append(r["label"])
                continue
            ratio = _ratio(r, mode, "auto", "lax")
            if ratio is None:
                slower.append(f"{r['label']} (auto {r['failed'].get('auto', {}).get(mode, 'failed')})")
                continue
            worst = max(worst, (r["label"], ratio), key=lambda t: t[1]) if worst[0] else (r["label"], ratio)
            if ratio > 1.0:
                slower.append(f"{r['label']} ({ratio:.2f}x)")
        detail = (f"worst {worst[0]}: {worst[1]:.2f}x; " if worst[0] else "") + "slower on "
        detail += ", ".join(slower) or "none"
        if same:
            detail += f"; identical program as lax (noise, see validity) on {len(same)}"
        results.append((f"auto <= lax on every point ({mode})", not slower, detail))
    with_torch = [r for r in records if all(_ratio(r, m, "auto", "torch") is not None for m in MODES)]
    if with_torch:
        for mode in MODES:
            gm = _geomean([_ratio(r, mode, "auto", "torch") for r in with_torch])  # type: ignore[misc]
            name = f"geomean auto/torch <= {GEOMEAN_TORCH_FLOOR} ({mode}, {len(with_torch)} points)"
            results.append((name, gm <= GEOMEAN_TORCH_FLOOR, f"{gm:.2f}"))
        for r in with_torch:
            if Point(**r["point"]).first_layer:
                for mode in MODES:
                    ratio = _ratio(r, mode, "auto", "torch")
                    name = f"{r['label']}: first layer auto/torch <= {FIRST_LAYER_TORCH_FLOOR} ({mode})"
                    results.append((name, ratio <= FIRST_LAYER_TORCH_FLOOR, f"{ratio:.2f}"))  # type: ignore[operator]
            if Point(**r["point"]).depthwise:
                ratio = _ratio(r, "fwd_bwd", "auto", "torch")
                name = f"{r['label']}: depthwise auto/torch <= {DEPTHWISE_TORCH_FLOOR} (fwd_bwd)"
                results.append((name, ratio <= DEPTHWISE_TORCH_FLOOR, f"{ratio:.2f}"))  # type: ignore[operator]
    for r in records:
        if Point(**r["point"]).channel_heavy:
            pct = percent_of_peak(r, peak_gflops)
            name = f"{r['label']}: auto fwd >= {100 * PEAK_FRACTION_FLOOR:.0f}% of matmul peak"
            passed = pct is not None and pct >= 100 * PEAK_FRACTION_FLOOR
            results.append((name, passed, "auto failed" if pct is None else f"{pct:.0f}%"))
    return results


# ---------------------------------------------------------------------------------------------------------------
# Measurement.


# glibc's malloc serves a block at least as large as its mmap threshold (128 KiB in a fresh process, raised by the
# frees of such blocks up to 32 MiB) by a fresh mmap, whose pages fault on first touch, and returns the freed top of a
# heap to the system past its trim threshold (twice the mmap threshold). Then a contender that allocates its output
# on every call faults it in again on every call: measured in a fresh process, PyTorch's 64x28² 1->16 k5 forward
# 1537 minor faults and 2.4 ms a call, 0 and 0.4 ms in a process whose allocator had freed a larger block. A second
# way: XLA allocates its buffers on its own threads, from glibc's per-thread arenas, whose extra 64 MiB heaps are
# unmapped as soon as they are empty — so where a thread's first heap is full, a large output lands in a new heap
# every call and faults in afresh (one-thread runs: every XLA program's 16x128² 3->16 k3 forward, 16 MiB, 4097 faults
# and 11.4-12.5 ms a call against 0 and 4.2 ms with one arena; PyTorch allocates on the calling thread, from the main
# arena). Which contender lands in either state depended on the run's allocation history (BENCHMARKS.md, "How it
# measures"). The bench fixes the thresholds and puts every thread on the main arena before measuring, for every
# contender alike: blocks up to 32 MiB from one heap that is never trimmed — the steady state of a long-running
# process.
SETTLE_MMAP_THRESHOLD = 32 << 20
SETTLE_TRIM_THRESHOLD = 1 << 30
SETTLE_ARENA_MAX = 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters


def settle_allocator() -> bool:
    """Fixes glibc's mmap threshold at :data:`SETTLE_MMAP_THRESHOLD`, its trim threshold at
    :data:`SETTLE_TRIM_THRESHOLD` and its number of arenas at :data:`SETTLE_ARENA_MAX` (``mallopt``, as
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_ARENA_MAX`` would), so that no contender's
    allocations below 32 MiB fault in fresh pages on every call. Threads that have allocated before keep their arena,
    and later threads may still be handed an arena made before (importing NumPy starts one: OpenBLAS's), so only
    ``MALLOC_ARENA_MAX=1`` in the environment at start-up puts every thread on one arena (:func:`arena_note`).
    Returns whether it did (``False`` where the C library is not glibc)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    settings = (
        (_M_MMAP_THRESHOLD, SETTLE_MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, SETTLE_TRIM_THRESHOLD),
        (_M_ARENA_MAX, SETTLE_ARENA_MAX),
    )
    return all([mallopt(param, value) for param, value in settings])


def arena_note() -> str | None:
    """What to tell the user about glibc's arenas before measuring: ``None`` where every thread shares one (the
    environment had ``MALLOC_ARENA_MAX=1`` at start-up) or the C library is not glibc, else why to set it."""
    if platform.libc_ver()[0] != "glibc" or os.environ.get("MALLOC_ARENA_MAX") == str(SETTLE_ARENA_MAX):
        return None
    return (
        f"MALLOC_ARENA_MAX is not {SETTLE_ARENA_MAX}: XLA's threads may allocate from arenas made before the bench "
        "started and fault their outputs in afresh on every call; run as `MALLOC_ARENA_MAX=1 jaxconv bench ...` for "
        "the steady state of a long-running process (BENCHMARKS.md, 'How it measures')"
    )


def _fingerprint(compiled: Any) -> str:
    """The optimised HLO with names, numbering and metadata removed: equal strings mean the same program."""
    blocks = compiled.as_text().split("\n\n")
    tables = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")
    text = "\n".join(b for b in blocks if not b.lstrip().startswith(tables))  # drop the source-location tables
    text = re.sub(r"metadata=\{[^}]*\}|, (?:frontend_attributes|backend_config)=\{.*?\}(?=[,\n])", "", text)
    text = re.sub(r"%[\w.\-]+|HloModule [^\n]*|\b[\w.\-]+\.\d+\b", "_", text)
    return re.sub(r"\s+", " ", text)


def _minor_faults() -> int | None:
    """The process's minor page faults so far (``getrusage``'s ``ru_minflt``); ``None`` where ``resource`` is missing
    (not Unix)."""
    try:
        import resource  # noqa: PLC0415 (Unix only)
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _call_block(
    fn: Callable[[], Any], block: int, warm_s: float, count_faults: bool
) -> tuple[list[float], float | None]:
    """Wall times (ms) of a block of calls of ``fn`` (:func:`interleaved`): the first call's, then, after untimed calls
    until ``warm_s`` has passed since the block began (``block > 1`` only), the ``block - 1`` timed calls'; and the
    minor page faults per timed call (the one call when ``block == 1``), ``None`` unless ``count_faults`` and
    countable here."""
    before = _minor_faults() if count_faults and block == 1 else None
    began = time.perf_counter()
    fn()
    times = [1e3 * (time.perf_counter() - began)]
    if block > 1:
        while time.perf_counter() - began < warm_s:
            fn()
        before = _minor_faults() if count_faults else None
        for _ in range(block - 1):
            start = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - start))
    after = _minor_faults() if before is not None else None
    return times, None if before is None or after is None else (after - before) / max(block - 1, 1)


def interleaved(
    fns: dict[str, Callable[[], Any]],
    *,
    warmup: int,
    rounds: int,
    rng: random.Random,
    block: int = 1,
    warm_s: float = 0.0,
    firsts: dict[str, list[float]] | None = None,
    faults: dict[str, list[float]] | None = None,
    after: dict[str, list[str | None]] | None = None,
) -> dict[str, list[float]]:
    """Per-round samples (ms) of each thunk: every round calls each thunk in one block, the thunks in an order drawn
    from ``rng`` (one ``shuffle`` per round, whatever ``block``); ``warmup`` untimed rounds first.

    With ``block == 1`` a round's sample is its one call. With ``block > 1`` a block is its first call, untimed calls
    until ``warm_s`` has passed since the block began, then ``block - 1`` timed calls whose median is the sample:
    warm calls, as in a training loop where the convolution runs back to back with other ops (threads awake, caches
    warm, and whatever threads the previous thunk left spinning stopped, :data:`WARM_S`). The first call's time is
    kept apart, appended per timed round to ``firsts[name]`` when ``firsts`` is given.

    When ``faults`` is given, per timed round the process's minor page faults per timed call are appended to
    ``faults[name]`` (nothing where ``resource`` is missing: not Unix). When ``after`` is given, per timed round the
    name of the thunk whose block ran just before (``None`` for the very first) is appended to ``after[name]``.

    Returns:
      ``{name: [sample per timed round]}``: ``rounds`` floats per thunk; ``firsts``, ``faults`` and ``after`` (when
      given, and ``block > 1`` for ``firsts``) gain as many entries per thunk.
    """
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    previous: str | None = None
    for r in range(warmup + rounds):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            times, per_call = _call_block(fns[name], block, warm_s, faults is not None)
            if r >= warmup:
                samples[name].append(statistics.median(times[1:] or times))  # block 1: the one call
                if block > 1 and firsts is not None:
                    firsts.setdefault(name, []).append(times[0])
                if faults is not None and per_call is not None:
                    faults.setdefault(name, []).append(per_call)
                if after is not None:
                    after.setdefault(name, []).append(previous)
            previous = name
    return samples


def after_neighbour(
    samples: dict[str, list[float]], after: dict[str, list[str | None]], neighbour: str
) -> dict[str, float]:
    """Per thunk other than ``neighbour``: the median of its samples timed right after ``neighbour``'s block over the
    median of its others (:func:`interleaved`'s ``after``), where it has both; above 1 where ``neighbour`` slows the
    thunk timed next.

    Examples:
      >>> after_neighbour({"a": [2.0, 1.0, 1.0], "t": [5.0] * 3}, {"a": ["t", None, "x"], "t": ["a"] * 3}, "t")
      {'a': 2.0}
    """
    ratios = {}
    for name, values in samples.items():
        next_to = [v for v, a in zip(values, after.get(name, ()), strict=False) if a == neighbour]
        others = [v for v, a in zip(values, after.get(name, ()), strict=False) if a != neighbour]
        if name != neighbour and next_to and others:
            ratios[name] = statistics.median(next_to) / statistics.median(others)
    return ratios


def matmul_gflops(size: int, calls: int = 3) -> float:
    """GFLOP/s of a jitted float32 ``[size, size] @ [size, size]`` on the default device (fastest of ``calls``)."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    mm = jax.jit(jnp.matmul)
    mm(a, a).block_until_ready()
    best = math.inf
    for _ in range(calls):
        start = time.perf_counter()
        mm(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def _jax_contenders(point: Point, strategies: Sequence[str]) -> dict[str, Callable[..., jax.Array]]:
    """``conv2d`` per strategy, and ``lax.conv_general_dilated`` called directly, on NHWC/HWIO arrays; for a
    locally connected point, jaxconv's ``conv_general_dilated_local`` (as ``auto``) and lax's, on the same arguments."""
    if point.local:
        window, dilation = (point.k,) * 2, (point.dilation,) * 2
        return {
            name: (
                lambda x, k, fn=fn: fn(
                    x,
                    k,
                    (point.stride,) * 2,
                    "SAME",
                    window,
                    rhs_dilation=dilation,
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                )  # fmt: skip
            )
            for name, fn in (("auto", conv_general_dilated_local), ("lax", lax.conv_general_dilated_local))
        }
    opts: dict[str, Any] = dict(stride=point.stride, dilation=point.dilation, groups=point.groups, padding="SAME")
    fns: dict[str, Callable[..., jax.Array]] = {
        name: (lambda x, k, name=name: conv2d(x, k, strategy=name, **opts)) for name in strategies
    }
    fns["lax"] = lambda x, k: lax.conv_general_dilated(
        x,
        k,
        (point.stride,) * 2,
        "SAME",
        rhs_dilation=(point.dilation,) * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=point.groups,
    )
    return fns


def torch_device() -> str | None:
    """Where torch runs beside JAX: ``"cuda"`` on a GPU backend (``None`` if torch has no CUDA), else ``"cpu"``."""
    import torch  # noqa: PLC0415 (optional dependency)

    if jax.default_backend() == "gpu":
        return "cuda" if torch.cuda.is_available() else None
    return "cpu"


def _torch_contender(point: Point, x: np.ndarray, k: np.ndarray, ct: np.ndarray, device: str) -> Any:
    """Thunks for PyTorch's ``conv2d`` (NCHW, its native layout), forward and forward+backward, and its output.

    Symmetric padding goes to ``conv2d``'s own ``padding=``; lax's SAME with an odd total (extra at the bottom/right)
    needs an explicit ``F.pad`` first, as in a PyTorch model.
    """
    import torch  # noqa: PLC0415 (optional dependency)

    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), device=device, requires_grad=True)
    kt = torch.tensor(k.transpose(3, 2, 0, 1).copy(), device=device, requires_grad=True)
    ctt = torch.tensor(ct.transpose(0, 3, 1, 2).copy(), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    (top, bottom), (left, right) = point.padding
    fn = torch.nn.functional
    opts: dict[str, Any] = dict(stride=point.stride, dilation=point.dilation, groups=point.groups)

    if top == bottom and left == right:

        def conv() -> Any:
            return fn.conv2d(xt, kt, padding=(top, left), **opts)
    else:

        def conv() -> Any:
            return fn.conv2d(fn.pad(xt, (left, right, top, bottom)), kt, **opts)

    def forward() -> None:
        with torch.no_grad():
            conv()
        sync()

    def forward_backward() -> None:
        xt.grad = kt.grad = None
        (conv() * ctt).sum().backward()
        sync()

    out = conv().detach().cpu().numpy().transpose(0, 2, 3, 1)
    return forward, forward_backward, out


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _is_oom(err: BaseException) -> bool:
    text = f"{type(err).__name__} {err}"
    return any(s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "OutOfMemory", "out of memory"))


def environment(torch_threads: int | None, torch_dev: str | None) -> dict[str, Any]:
    """Device, versions, thread counts and load of this run."""
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    env: dict[str, Any] = {
        "backend": jax.default_backend(),
        "device": f"{dev.platform}: {dev.device_kind}",
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "xla_cpu_threads": xla_cpu_threads(),
        "torch_threads": torch_threads,
        "torch_device": torch_dev,
        **versions(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    }
    if torch_threads is not None:
        import torch  # noqa: PLC0415

        env["torch"] = torch.__version__
        if torch_dev == "cuda":
            env["torch_cuda_device"] = torch.cuda.get_device_name(0)
    return env


def _call(compiled: Any, args: tuple[jax.Array, ...]) -> Any:
    return jax.block_until_ready(compiled(*args))


def _memory(compiled: Any) -> dict[str, int | None]:
    stats = compiled.memory_analysis()
    keys = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes", "peak_memory_in_bytes")
    return {k.replace("_size_in", "").replace("_in", ""): getattr(stats, k, None) for k in keys} if stats else {}


Compiled = tuple[
    dict[str, dict[str, Callable[[], Any]]],
    dict[str, dict[str, float]],
    dict[str, dict[str, Any]],
    dict[str, dict[str, str]],
    dict[str, dict[str, str]],
    dict[str, np.ndarray],
]


def _compile_contenders(
    point: Point, strategies: Sequence[str], x: jax.Array, k: jax.Array, ct: jax.Array, vector_width: int | None = None
) -> Compiled:
    """Compiles every JAX contender forward and forward+backward: ``(thunks, compile_s, memory, fingerprints,
    failed, forward outputs)``, each keyed by mode and contender (an out-of-memory contender is recorded). With
    ``vector_width``, ``auto`` is compiled a second time with :data:`VECTOR_WIDTH_OPTION` set to it, as
    ``auto_vw<width>`` (its fingerprint carries the option: the optimised HLO is the same, the machine code is not)."""
    thunks: dict[str, dict[str, Callable[[], Any]]] = {mode: {} for mode in MODES}
    compile_s: dict[str, dict[str, float]] = {}
    memory: dict[str, dict[str, Any]] = {}
    prints: dict[str, dict[str, str]] = {mode: {} for mode in MODES}
    failed: dict[str, dict[str, str]] = {}
    outputs: dict[str, np.ndarray] = {}
    contenders = _jax_contenders(point, strategies)
    options: dict[str, dict[str, Any]] = {}
    if vector_width is not None and not point.local:
        name = widened(vector_width)
        contenders[name], options[name] = contenders["auto"], {VECTOR_WIDTH_OPTION: vector_width}
    for name, f in contenders.items():

        def loss(x: jax.Array, k: jax.Array, ct: jax.Array, f: Callable[..., jax.Array] = f) -> jax.Array:
            return jnp.vdot(f(x, k), ct)

        compile_s[name], memory[name] = {}, {}
        # The cotangent is an argument, not a captured constant that XLA could fold work into at compile time.
        for mode, fun, args in (("fwd", f, (x, k)), ("fwd_bwd", jax.value_and_grad(loss, argnums=(0, 1)), (x, k, ct))):
            try:
                start = time.perf_counter()
                compiled = jax.jit(fun).lower(*args).compile(compiler_options=options.get(name))
                compile_s[name][mode] = time.perf_counter() - start
                memory[name][mode] = _memory(compiled)
                out = jax.block_until_ready(compiled(*args))  # the first call: where an OOM shows
            except Exception as err:  # noqa: BLE001 (recorded, the run goes on)
                if not _is_oom(err):
                    raise
                failed.setdefault(name, {})[mode] = "OOM"
                gc.collect()
                continue
            if mode == "fwd":
                outputs[name] = np.asarray(out)
            del out
            prints[mode][name] = _fingerprint(compiled) + repr(options.get(name, ""))
            thunks[mode][name] = functools.partial(_call, compiled, args)
    return thunks, compile_s, memory, prints, failed, outputs


def _add_torch(
    point: Point,
    x: jax.Array,
    k: jax.Array,
    ct: jax.Array,
    thunks: dict[str, dict[str, Callable[[], Any]]],
    failed: dict[str, dict[str, str]],
    outputs: dict[str, np.ndarray],
) -> int | None:
    """Adds PyTorch's thunks and forward output (or its OOM); returns its peak CUDA memory (None on CPU)."""
    torch_peak = None
    device = torch_device()
    assert device is not None
    try:
        fwd, bwd, outputs["torch"] = _torch_contender(point, np.asarray(x), np.asarray(k), np.asarray(ct), device)
        if device == "cuda":
            import torch  # noqa: PLC0415

            torch.cuda.reset_peak_memory_stats()
            bwd()
            torch_peak = int(torch.cuda.max_memory_allocated())
        thunks["fwd"]["torch"], thunks["fwd_bwd"]["torch"] = fwd, bwd
    except Exception as err:  # noqa: BLE001
        if not _is_oom(err):
            raise
        failed["torch"] = {mode: "OOM" for mode in MODES}
    return torch_peak


def _per_mode(by_mode: dict[str, dict[str, list[float]]], fn: Callable[[list[float]], Any]) -> dict[str, Any]:
    """``{mode: {name: fn(values)}}`` of per-mode, per-contender values (e.g. their median)."""
    return {mode: {name: fn(values) for name, values in by_mode[mode].items()} for mode in MODES}


def _rounded(values: list[float]) -> list[float]:
    """Samples as ``bench.json`` keeps them: to 10 ns (5 decimals of a millisecond)."""
    return [round(v, 5) for v in values]


def bench_point(
    point: Point,
    *,
    rng: random.Random,
    strategies: Sequence[str] = JAXCONV_STRATEGIES,
    use_torch: bool = True,
    warmup: int = 2,
    rounds: int = 21,
    block: int = 1,
    vector_width: int | None = None,
) -> dict[str, Any]:
    """Measures every contender on one point; returns a JSON-ready record.

    Args:
      point: the configuration.
      rng: draws each round's order of the contenders.
      strategies: the ``conv2d`` strategies to time (``lax`` is always timed; torch when ``use_torch``); a locally
        connected point times ``auto`` and ``lax`` only.
      use_torch: include PyTorch's ``conv2d`` (needs torch, and CUDA on a GPU backend; not on a locally connected
        point).
      warmup: untimed rounds before timing.
      rounds: timed rounds; each contender is called in one block per round, the contenders in a fresh random
        order.
      block: calls per contender and round; above 1, the first call's time is kept apart, untimed calls follow for
        :data:`WARM_S`, and a round's sample is the median of the ``block - 1`` timed calls after them
        (:func:`interleaved`).
      vector_width: also time ``auto`` compiled with :data:`VECTOR_WIDTH_OPTION` set to it, as ``auto_vw<width>``
        (not on a locally connected point).

    Returns:
      ``{"point", "label", "flops", "auto_strategy", "block", "ms": {mode: {name: median}}, "samples_ms": {mode:
      {name: [per round]}}, "first_call_ms": {mode: {name: median}}, "first_call_samples_ms": {mode: {name: [per
      round]}} (both empty per mode when ``block == 1``), "page_faults_per_call": {mode: {name: median over rounds}}
      (minor page faults per timed call; empty per mode where not countable), "compile_s", "memory", "program":
      {mode: {name: id}} (equal ids: identical optimised HLO), "failed": {name: {mode: "OOM" | message}},
      "after_torch": {mode: {name: ratio}} (the median of a JAX contender's samples timed right after PyTorch's block
      over the median of its others, where it has both: about 1 when PyTorch's threads leave the next samples alone),
      "max_abs_err"}``; ``mode`` is ``"fwd"`` or ``"fwd_bwd"``.
    """
    kx, kk, kc = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (point.n, point.h, point.w, point.c), jnp.float32)
    k = jax.random.normal(kk, point.kernel_shape, jnp.float32)
    k = k / math.sqrt(point.k * point.k * point.c // point.groups)
    ct = jax.random.normal(kc, (point.n, *point.out_hw, point.o), jnp.float32)

    compiled = _compile_contenders(point, strategies, x, k, ct, vector_width)
    thunks, compile_s, memory, prints, failed, outputs = compiled
    torch_peak = _add_torch(point, x, k, ct, thunks, failed, outputs) if use_torch and not point.local else None
    firsts: dict[str, dict[str, list[float]]] = {mode: {} for mode in MODES}
    faults: dict[str, dict[str, list[float]]] = {mode: {} for mode in MODES}
    after: dict[str, dict[str, list[str | None]]] = {mode: {} for mode in MODES}
    samples = {
        mode: interleaved(
            thunks[mode],
            warmup=warmup,
            rounds=rounds,
            rng=rng,
            block=block,
            warm_s=WARM_S,
            firsts=firsts[mode],
            faults=faults[mode],
            after=after[mode],
        )
        for mode in MODES
    }
    program = {
        mode: {name: sorted(set(prints[mode].values())).index(fp) for name, fp in prints[mode].items()}
        for mode in MODES
    }
    reference = outputs.get("lax")
    record = {
        "point": dataclasses.asdict(point),
        "label": point.label,
        "flops": point.flops,
        "auto_strategy": "window" if point.local else resolve_strategy(point.spec),  # local: the window gather
        "block": block,
        "ms": _per_mode(samples, statistics.median),
        "samples_ms": _per_mode(samples, _rounded),
        "first_call_ms": _per_mode(firsts, statistics.median),
        "first_call_samples_ms": _per_mode(firsts, _rounded),
        "page_faults_per_call": _per_mode(faults, statistics.median),
        "compile_s": compile_s,
        "memory": memory,
        "program": program,
        "failed": failed,
        "after_torch": {mode: after_neighbour(samples[mode], after[mode], "torch") for mode in MODES},
        "max_abs_err": (
            {} if reference is None else {n: float(np.max(np.abs(o - reference))) for n, o in outputs.items()}
        ),
    }
    if torch_peak is not None:
        record["torch_cuda_peak_bytes"] = torch_peak
    if jax.default_backend() != "cpu":
        stats = jax.devices()[0].memory_stats() or {}
        record["device_peak_bytes_so_far"] = stats.get("peak_bytes_in_use")
    return record


# ---------------------------------------------------------------------------------------------------------------
# Output.


def format_grid(records: Sequence[dict[str, Any]], peak_gflops: float) -> str:
    """A fixed-width table: per point, median ms of every contender, forward and forward+backward, and ratios.

    ``/lax`` and ``/torch`` are medians of per-round ratios; ``=`` marks ``auto`` compiled to the same program as lax.
    """
    names: list[str] = []
    for r in records:
        names += [n for n in (*r["ms"]["fwd"], *r["failed"]) if n not in names]
    has_torch = "torch" in names
    width = {n: max(9, len(n) + 1) for n in names}
    lines = []
    for mode, title in (("fwd", "forward"), ("fwd_bwd", "forward+backward")):
        header = f"{title + ' (ms)':<30}" + "".join(f"{n:>{width[n]}}" for n in names) + f"{'auto':>8}{'/lax':>7}"
        header += f"{'/torch':>8}" if has_torch else ""
        header += f"{'%peak':>7}" if mode == "fwd" else ""
        lines += [header, "-" * len(header)]
        for r in records:
            cells = []
            for n in names:
                ms = r["ms"][mode].get(n)
                w = width[n]
                cells.append(f"{ms:>{w}.3f}" if ms is not None else f"{r['failed'].get(n, {}).get(mode, '-'):>{w}}")
            row = f"{r['label']:<30}" + "".join(cells)
            same = "=" if ("auto", "lax") in identical_pairs(r, mode) else " "
            lax_ratio = _ratio(r, mode, "auto", "lax")
            row += f"{r['auto_strategy']:>8}" + (f"{lax_ratio:>6.2f}{same}" if lax_ratio else f"{'-':>7}")
            if has_torch:
                torch_ratio = _ratio(r, mode, "auto", "torch")
                row += f"{torch_ratio:>8.2f}" if torch_ratio else f"{'-':>8}"
            if mode == "fwd":
                pct = percent_of_peak(r, peak_gflops)
                row += f"{pct:>6.0f}%" if pct is not None else f"{'-':>7}"
            lines.append(row)
        lax_ratios = [v for r in records if (v := _ratio(r, mode, "auto", "lax"))]
        gm = f"{'geomean auto/lax':<30}{_geomean(lax_ratios):.2f}"
        if has_torch:
            torch_ratios = [v for r in records if (v := _ratio(r, mode, "auto", "torch"))]
            gm += f"   auto/torch {_geomean(torch_ratios):.2f}"
        lines += [gm, ""]
    lines.append("/lax, /torch: medians of per-round ratios; = after /lax: auto compiled to the same program as lax")
    return "\n".join(lines)


def plot(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Writes a two-panel bar chart (forward, forward+backward; median ms, log scale) of every contender per point."""
    from jaxconv.evidence._report import figure, save_figure  # noqa: PLC0415 (matplotlib only when plotting)

    names: list[str] = []
    for r in records:
        names += [n for n in r["ms"]["fwd"] if n not in names]
    fig = figure(max(8, 1.3 * len(records)), 8)
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / len(names)
    xs = np.arange(len(records))
    for ax, (mode, title) in zip(axes, (("fwd", "forward"), ("fwd_bwd", "forward + backward")), strict=True):
        for i, name in enumerate(names):
            ax.bar(xs + i * width, [r["ms"][mode].get(name, np.nan) for r in records], width, label=name)
        ax.set_yscale("log")
        ax.set_ylabel("ms (median)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=len(names), fontsize=8)
    axes[1].set_xticks(xs + 0.4 - width / 2, [r["label"] for r in records], rotation=30, ha="right", fontsize=8)
    save_figure(fig, str(path))


def _torch_setup(no_torch: bool) -> tuple[bool, int | None, str | None]:
    """``(use_torch, torch_threads, torch_device)``: torch on as many threads as XLA:CPU uses, if it can run here."""
    # torch runs at its own defaults (its OpenMP threads spin after a call, as in a user's process); every block's
    # untimed warm calls (WARM_S, interleaved) outlast the spinning, so it stays out of the other contenders' samples.
    if no_torch or not _torch_available():
        return False, None, None
    import torch  # noqa: PLC0415

    device = torch_device()
    if device is None:
        print("torch has no CUDA here: the torch column is skipped")
        return False, None, None
    torch.set_num_threads(xla_cpu_threads())
    return True, torch.get_num_threads(), device


def _measure_grid(
    grid: Sequence[Point], args: argparse.Namespace, rounds: int, block: int, use_torch: bool, size: int
) -> Any:
    """``(records, peaks)``: every point measured (``rounds`` rounds of ``block`` calls per contender), and matmul
    peak samples spread through the run (before the first point, after the last, and evenly between)."""
    rng = random.Random(args.seed)
    sample_before = [round(j * len(grid) / (PEAK_SAMPLES - 1)) for j in range(PEAK_SAMPLES)]
    peaks: list[float] = []
    records = []
    for i in range(len(grid) + 1):
        peaks += [matmul_gflops(size) for _ in range(sample_before.count(i))]
        if i == len(grid):
            break
        options = {"strategies": args.strategies, "use_torch": use_torch, "warmup": args.warmup, "rounds": rounds}
        r = bench_point(grid[i], rng=rng, block=block, vector_width=args.vector_width, **options)
        records.append(r)
        auto = r["ms"]["fwd"].get("auto")
        shown = f"{auto:.3f} ms" if auto is not None else "failed"
        print(f"  {grid[i].label}: auto={r['auto_strategy']} fwd {shown}", flush=True)
    return records, peaks


def _report_validity(records: list[dict[str, Any]], rounds: int) -> tuple[str, list[dict[str, Any]]]:
    """Prints and returns the run's validity verdict and its identical-program checks."""
    verdict, checks = validity(records)
    disagree = [c for c in checks if c["agree"] is False]
    why = (
        f"{len(checks) - len(disagree)} of {len(checks)} identical-program pairs agree within the run's noise "
        f"(median per-round ratio's {100 * FAMILY_CONFIDENCE:.0f}% family-wise interval contains 1)"
    )
    if verdict == "UNDETERMINED":
        needed = rounds_needed(checks[0]["confidence"]) if checks else None
        why = f"too few rounds to check {len(checks)} identical-program pairs" + (
            f" (need --reps >= {needed})" if needed else ""
        )
    print(f"\n{verdict}: {why}")
    for c in disagree:
        print(
            f"  disagree: {c['label']} {c['mode']} {c['pair'][0]}/{c['pair'][1]} = {c['ratio']:.3f} "
            f"(interval {c['interval'][0]:.3f}-{c['interval'][1]:.3f})"
        )
    return verdict, checks


def _vector_width_ratios(records: Sequence[dict[str, Any]], width: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per point and mode, ``auto_vw<width>`` over ``auto`` and over torch (medians of per-round ratios), where
    timed: ``{label: {mode: {"auto_vw/auto": r, "auto_vw/torch": r}}}``."""
    name = widened(width)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in records:
        for mode in MODES:
            pairs = {f"auto_vw/{other}": _ratio(r, mode, name, other) for other in ("auto", "torch")}
            kept = {k: v for k, v in pairs.items() if v}
            if kept:
                out.setdefault(r["label"], {})[mode] = kept
    return out


def _after_torch_geomean(records: Sequence[dict[str, Any]]) -> float | None:
    """The geometric mean of every record's ``after_torch`` ratios (``None`` without any): about 1 when PyTorch's
    blocks leave the samples timed after them alone."""
    ratios = [v for r in records for by_name in r.get("after_torch", {}).values() for v in by_name.values()]
    return _geomean(ratios) if ratios else None


def _block_policy(block: int) -> str:
    """What a sample is, in words, for ``block`` calls per contender and round."""
    if block == 1:
        return "1 call per contender a round, the sample"
    return (
        f"{block} calls per contender a round (the first, untimed warm calls for at least {1e3 * WARM_S:.0f} ms from "
        f"its start, then {block - 1} timed), the sample the median of the last {block - 1}"
    )


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark from parsed (already validated) options; prints the table, validity and floors, writes
    ``bench.json`` and ``bench.png``; returns 0 (an INVALID run or a failed floor is reported, not an error)."""
    # On a GPU, allocate as needed (not 75% up front) so that torch gets memory too and an OOM is a real one.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    grid = grid_for(args.grid, args.quick)
    if args.only:
        grid = tuple(grid[i] for i in args.only)
    rounds = args.reps if args.reps is not None else (2 if args.quick else 21)
    settled = settle_allocator()
    note = arena_note()
    if note:
        print(f"note: {note}")
    block = args.block if args.block is not None else (2 if args.quick else 5)
    use_torch, torch_threads, torch_dev = _torch_setup(args.no_torch)
    load_start = os.getloadavg()
    env = environment(torch_threads, torch_dev)
    print(
        f"device: {env['device']} ({env['cpu']}); XLA:CPU threads {env['xla_cpu_threads']}, torch threads "
        f"{torch_threads} ({torch_dev}); jax {env['jax']}; {rounds} rounds after {args.warmup} warm-up, "
        f"{_block_policy(block)}; order seed {args.seed}; load {load_start[0]:.2f}"
    )
    size = 256 if args.quick else (8192 if jax.default_backend() == "gpu" else 2048)
    records, peaks = _measure_grid(grid, args, rounds, block, use_torch, size)
    peak, load_end = max(peaks), os.getloadavg()
    spread = ", ".join(f"{p:.0f}" for p in peaks)
    print(
        f"\nmatmul peak (f32 {size}^2, best of {len(peaks)} samples spread through the run): {peak:.1f} GFLOP/s "
        f"(samples {spread}); load {load_start[0]:.2f} -> {load_end[0]:.2f}\n"
    )
    print(format_grid(records, peak))
    wider = _vector_width_ratios(records, args.vector_width) if args.vector_width else {}
    for label, by_mode in wider.items():
        cells = (f"  {m}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()) for m, r in by_mode.items())
        print(f"{label:<30}" + "".join(cells))
    verdict, checks = _report_validity(records, rounds)
    neighbour = _after_torch_geomean(records)
    if neighbour is not None:
        print(f"samples right after PyTorch's block / the others (geomean, 1 = no effect): {neighbour:.2f}")
    verdicts = floors(records, peak)
    for name, passed, detail in verdicts:
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "validity": verdict,
        "environment": env,
        "grid": args.grid,
        "strategies": list(args.strategies),
        "quick": args.quick,
        "seed": args.seed,
        "rounds": rounds,
        "warmup": args.warmup,
        "block": block,
        "loadavg": {"start": load_start, "end": load_end},
        "matmul_size": size,
        "matmul_gflops": peaks,
        "peak_gflops": peak,
        "allocator": {
            "settled": settled,
            "mmap_threshold_bytes": SETTLE_MMAP_THRESHOLD,
            "trim_threshold_bytes": SETTLE_TRIM_THRESHOLD,
            "arena_max": SETTLE_ARENA_MAX,
            "arena_max_env": os.environ.get("MALLOC_ARENA_MAX"),
            "why": "glibc's thresholds and number of arenas fixed before measuring (mallopt), so that no contender "
            "page-faults fresh memory for its outputs on every call, as in a long-running process (settle_allocator)",
        },
        "timing_policy": {
            "sample": f"{_block_policy(block)}; with a block of more than 1 call, its first call is kept apart "
            "(first_call_ms), then the contender is called back to back, untimed, until warm_s has passed since the "
            "block began, then timed: warm calls, as in a training loop where the convolution runs back to back with "
            "other ops; the minor page faults per timed call beside it (page_faults_per_call: a call that page-faults "
            "its output runs several times slower)",
            "warm_s": WARM_S if block > 1 else 0.0,
            "why": "torch's OpenMP threads spin after a call (measured: up to ~10 ms of one core after a 2-thread "
            "conv2d, libgomp defaults), which the warm calls outlast; and after an idle gap (30 ms) XLA's calls ran "
            "slower for a dozen calls, PyTorch's for two, so no contender is timed coming out of idle",
            "after_torch_geomean": neighbour,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "") or "unset (the OpenMP runtime's default)",
        },
        "vector_width": args.vector_width,
        "vector_width_ratios": wider,
        "records": records,
        "identical_pairs": checks,
        "floors": [{"floor": n, "pass": p, "detail": d} for n, p, d in verdicts],
    }
    write_atomic(str(args.out / "bench.json"), json.dumps(result, indent=1))
    if not args.no_plot:
        plot(records, args.out / "bench.png")
    print(f"\nwrote {args.out / 'bench.json'}" + ("" if args.no_plot else f" and {args.out / 'bench.png'}"))
    return 0
