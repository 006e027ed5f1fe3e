"""The jit benchmark behind ``jaxconv bench`` and ``experiments/benchmark.py``.

For each grid point and each contender — every ``conv2d`` strategy, ``lax.conv_general_dilated`` called
directly, and PyTorch's ``conv2d`` when torch is importable — it measures, in one process:

- forward and forward+backward (``value_and_grad`` of ``<conv(x, k), ct>`` w.r.t. ``x`` and ``k``) wall times,
  after warm-up, with ``block_until_ready`` (``torch.cuda.synchronize`` on GPU); the contenders are run
  round-robin, one call each per round, so that the load of a shared machine hits all of them alike, and the
  median over rounds is reported;
- compile time (``jit(f).lower(...).compile()``) and temporary memory (``compiled.memory_analysis()``) apart;
- GFLOP/s and the percentage of a float32 matmul's GFLOP/s measured in the same run;
- the issue's floors, as PASS/FAIL lines.

Results: a table on screen, ``bench.json`` and ``bench.png`` in the output directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
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

from jaxconv._conv import conv2d, resolve_strategy
from jaxconv._spec import make_spec

JAXCONV_STRATEGIES = ("auto", "window", "shift", "direct", "xla")


@dataclasses.dataclass(frozen=True)
class Point:
    """One benchmark configuration: NHWC input ``[n, h, w, c]``, kernel ``k x k``, SAME padding, float32."""

    n: int
    h: int
    w: int
    c: int
    o: int
    k: int
    stride: int = 1
    dilation: int = 1
    groups: int = 1

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. ``8x64x64 32->32 k3``."""
        extra = "".join(
            f" {name}{value}"
            for name, value in (("s", self.stride), ("d", self.dilation), ("g", self.groups))
            if value != 1
        )
        return f"{self.n}x{self.h}x{self.w} {self.c}->{self.o} k{self.k}{extra}"

    @property
    def out_hw(self) -> tuple[int, int]:
        """SAME output size ``(ceil(h / stride), ceil(w / stride))``."""
        return -(-self.h // self.stride), -(-self.w // self.stride)

    @property
    def flops(self) -> float:
        """Forward multiply-adds times two: ``2 * N * Ho * Wo * O * K * K * C / groups``."""
        ho, wo = self.out_hw
        return 2.0 * self.n * ho * wo * self.o * self.k * self.k * (self.c // self.groups)

    @property
    def channel_heavy(self) -> bool:
        """The issue's channel-heavy class: ``C, O >= 32`` with a dense (ungrouped) contraction."""
        return self.c >= 32 and self.o >= 32 and self.groups == 1


# The grid (NHWC, f32, SAME, stride 1) plus stride-2, dilated and depthwise points.
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
)

QUICK_GRID: tuple[Point, ...] = (
    Point(2, 16, 16, 1, 4, 3),
    Point(2, 12, 12, 8, 8, 3, stride=2, groups=2),
)


def _fingerprint(compiled: Any) -> str:
    """The optimised HLO with names, numbering and metadata removed: equal strings mean the same program."""
    blocks = compiled.as_text().split("\n\n")
    tables = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")
    text = "\n".join(b for b in blocks if not b.lstrip().startswith(tables))  # drop the source-location tables
    text = re.sub(r"metadata=\{[^}]*\}|, (?:frontend_attributes|backend_config)=\{.*?\}(?=[,\n])", "", text)
    text = re.sub(r"%[\w.\-]+|HloModule [^\n]*|\b[\w.\-]+\.\d+\b", "_", text)
    return re.sub(r"\s+", " ", text)


def _median_ms(samples: Sequence[float]) -> float:
    return 1e3 * statistics.median(samples)


def _interleaved(fns: dict[str, Callable[[], Any]], warmup: int, reps: int) -> dict[str, float]:
    """Median wall time (ms) of each thunk, calling them round-robin ``reps`` times after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: _median_ms(s) for name, s in samples.items()}


def matmul_gflops(size: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of a jitted float32 ``[size, size] @ [size, size]`` matmul on the default device (median)."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    mm = jax.jit(jnp.matmul)
    ms = _interleaved({"mm": lambda: mm(a, a).block_until_ready()}, warmup=2, reps=reps)["mm"]
    return 2.0 * size**3 / (ms * 1e-3) / 1e9


def _jax_contenders(point: Point, strategies: Sequence[str]) -> dict[str, Callable[..., jax.Array]]:
    """``conv2d`` per strategy, and ``lax.conv_general_dilated`` called directly, on NHWC/HWIO arrays."""
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


def _torch_contender(point: Point, x: np.ndarray, k: np.ndarray, ct: np.ndarray, device: str) -> Any:
    """Thunks for PyTorch's ``conv2d`` (NCHW, its native layout), forward and forward+backward."""
    import torch  # noqa: PLC0415 (optional dependency)

    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), device=device, requires_grad=True)
    kt = torch.tensor(k.transpose(3, 2, 0, 1).copy(), device=device, requires_grad=True)
    ctt = torch.tensor(ct.transpose(0, 3, 1, 2).copy(), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    # PyTorch's padding="same" needs stride 1; pad explicitly as lax's SAME does (odd extra at bottom/right).
    pads = make_spec(
        (point.n, point.h, point.w, point.c),
        (point.k, point.k, point.c // point.groups, point.o),
        stride=point.stride,
        padding="SAME",
        dilation=point.dilation,
        groups=point.groups,
        padding_mode="zeros",
        strategy="xla",
        precision=None,
    ).padding
    torch_pad = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
    fn = torch.nn.functional

    def conv() -> Any:
        return fn.conv2d(fn.pad(xt, torch_pad), kt, stride=point.stride, dilation=point.dilation, groups=point.groups)

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


def environment(torch_threads: int | None) -> dict[str, Any]:
    """Device, versions and thread counts of this run."""
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
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax, "lib") and hasattr(jax.lib, "__version__") else None,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "torch_threads": torch_threads,
    }
    try:
        import jaxlib  # noqa: PLC0415

        env["jaxlib"] = jaxlib.__version__
    except (ImportError, AttributeError):
        pass
    if torch_threads is not None:
        import torch  # noqa: PLC0415

        env["torch"] = torch.__version__
    return env


def bench_point(
    point: Point,
    *,
    strategies: Sequence[str] = JAXCONV_STRATEGIES,
    use_torch: bool = True,
    warmup: int = 2,
    reps: int = 10,
) -> dict[str, Any]:
    """Measures every contender on one point; returns a JSON-ready record.

    Args:
      point: the configuration.
      strategies: the ``conv2d`` strategies to time (``lax`` is always timed; torch when ``use_torch``).
      use_torch: include PyTorch's ``conv2d`` (needs torch).
      warmup: untimed rounds before timing.
      reps: timed rounds; each contender is called once per round, round-robin.

    Returns:
      ``{"point", "label", "flops", "auto_strategy", "fwd_ms", "fwd_bwd_ms", "compile_s", "temp_bytes",
      "max_abs_err"}``; the per-contender entries are dicts keyed by contender name.
    """
    kx, kk, kc = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (point.n, point.h, point.w, point.c), jnp.float32)
    k = jax.random.normal(kk, (point.k, point.k, point.c // point.groups, point.o), jnp.float32)
    k = k / math.sqrt(point.k * point.k * point.c // point.groups)
    ct = jax.random.normal(kc, (point.n, *point.out_hw, point.o), jnp.float32)

    fwd_fns: dict[str, Callable[[], Any]] = {}
    bwd_fns: dict[str, Callable[[], Any]] = {}
    compile_s: dict[str, dict[str, float]] = {}
    temp_bytes: dict[str, dict[str, int | None]] = {}
    prints: dict[str, dict[str, str]] = {}
    outputs: dict[str, np.ndarray] = {}
    for name, f in _jax_contenders(point, strategies).items():

        def loss(x: jax.Array, k: jax.Array, f: Callable[..., jax.Array] = f) -> jax.Array:
            return jnp.vdot(f(x, k), ct)

        compile_s[name], temp_bytes[name], prints[name] = {}, {}, {}
        for mode, fun in (("fwd", f), ("fwd_bwd", jax.value_and_grad(loss, argnums=(0, 1)))):
            start = time.perf_counter()
            compiled = jax.jit(fun).lower(x, k).compile()
            compile_s[name][mode] = time.perf_counter() - start
            memory = compiled.memory_analysis()
            temp_bytes[name][mode] = None if memory is None else int(memory.temp_size_in_bytes)
            prints[name][mode] = _fingerprint(compiled)

            def thunk(c: Any = compiled) -> Any:
                return jax.block_until_ready(c(x, k))

            (fwd_fns if mode == "fwd" else bwd_fns)[name] = thunk
        outputs[name] = np.asarray(fwd_fns[name]())
    if use_torch:
        device = "cuda" if jax.default_backend() == "gpu" else "cpu"
        fwd_fns["torch"], bwd_fns["torch"], outputs["torch"] = _torch_contender(
            point, np.asarray(x), np.asarray(k), np.asarray(ct), device
        )
    reference = outputs["lax"]
    spec = make_spec(
        x.shape, k.shape, stride=point.stride, padding="SAME", dilation=point.dilation, groups=point.groups,
        padding_mode="zeros", strategy="auto", precision=None,
    )  # fmt: skip
    return {
        "point": dataclasses.asdict(point),
        "label": point.label,
        "flops": point.flops,
        "auto_strategy": resolve_strategy(spec),
        "fwd_ms": _interleaved(fwd_fns, warmup, reps),
        "fwd_bwd_ms": _interleaved(bwd_fns, warmup, reps),
        "compile_s": compile_s,
        "temp_bytes": temp_bytes,
        "max_abs_err": {name: float(np.max(np.abs(out - reference))) for name, out in outputs.items()},
        # Whether auto compiled to the very program lax did (then auto/lax timings differ by noise only).
        "auto_is_lax": {mode: prints["auto"][mode] == prints["lax"][mode] for mode in ("fwd", "fwd_bwd")},
    }


def _geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else float("nan")


def floors(records: Sequence[dict[str, Any]], peak_gflops: float) -> list[tuple[str, bool, str]]:
    """The issue's floors as ``(name, passed, detail)`` from benchmark records.

    - ``auto`` never slower than ``lax`` (forward, forward+backward) on any point — strict ``<=``, no noise allowance,
      except that points where ``auto`` compiled to the *identical* optimised program as ``lax`` (same HLO after
      stripping names and metadata, recorded as ``auto_is_lax``) cannot be slower than it: their timing ratio is
      noise of the shared machine, listed in the detail but not counted;
    - geometric mean of ``auto / torch`` ``<= 1.5`` (forward, forward+backward), when torch was timed;
    - channel-heavy points (``C, O >= 32``, ungrouped) at ``>= 50%`` of the matmul's GFLOP/s, forward.
    """
    results: list[tuple[str, bool, str]] = []
    for mode in ("fwd_ms", "fwd_bwd_ms"):
        same = {r["label"] for r in records if r.get("auto_is_lax", {}).get(mode[:-3], False)}
        ratios = {r["label"]: r[mode]["auto"] / r[mode]["lax"] for r in records if r["label"] not in same}
        worst = max(ratios, key=ratios.__getitem__) if ratios else None
        detail = (f"worst {worst}: {ratios[worst]:.2f}x; " if worst else "") + "slower on "
        detail += ", ".join(f"{k} ({v:.2f}x)" for k, v in ratios.items() if v > 1.0) or "none"
        if same:
            noise = [r[mode]["auto"] / r[mode]["lax"] for r in records if r["label"] in same]
            detail += (f"; {len(same)} points where auto is the identical program as lax not counted "
                       f"(timing ratios {min(noise):.2f}-{max(noise):.2f}: noise)")  # fmt: skip
        results.append((f"auto <= lax on every point ({mode[:-3]})", all(v <= 1.0 for v in ratios.values()), detail))
    if all("torch" in r["fwd_ms"] for r in records):
        for mode in ("fwd_ms", "fwd_bwd_ms"):
            gm = _geomean([r[mode]["auto"] / r[mode]["torch"] for r in records])
            results.append((f"geomean auto/torch <= 1.5 ({mode[:-3]})", gm <= 1.5, f"{gm:.2f} (goal <= 1.0)"))
    heavy = [r for r in records if Point(**r["point"]).channel_heavy]
    for r in heavy:
        pct = 100 * r["flops"] / (r["fwd_ms"]["auto"] * 1e-3) / 1e9 / peak_gflops
        results.append((f"{r['label']}: auto fwd >= 50% of matmul peak", pct >= 50, f"{pct:.0f}%"))
    return results


def format_table(records: Sequence[dict[str, Any]], peak_gflops: float) -> str:
    """A fixed-width table: per point, ms of every contender, forward and forward+backward, and ratios."""
    names = list(records[0]["fwd_ms"])
    has_torch = "torch" in names
    lines = []
    for mode, title in (("fwd_ms", "forward"), ("fwd_bwd_ms", "forward+backward")):
        header = f"{title + ' (ms)':<30}" + "".join(f"{n:>9}" for n in names) + f"{'auto':>8}{'/lax':>7}"
        header += f"{'/torch':>8}" if has_torch else ""
        header += f"{'%peak':>7}" if mode == "fwd_ms" else ""
        lines += [header, "-" * len(header)]
        for r in records:
            row = f"{r['label']:<30}" + "".join(f"{r[mode][n]:>9.3f}" for n in names)
            same = "=" if r.get("auto_is_lax", {}).get(mode[:-3], False) else " "
            row += f"{r['auto_strategy']:>8}{r[mode]['auto'] / r[mode]['lax']:>6.2f}{same}"
            row += f"{r[mode]['auto'] / r[mode]['torch']:>8.2f}" if has_torch else ""
            if mode == "fwd_ms":
                row += f"{100 * r['flops'] / (r[mode]['auto'] * 1e-3) / 1e9 / peak_gflops:>6.0f}%"
            lines.append(row)
        gm = f"{'geomean auto/lax':<30}{_geomean([r[mode]['auto'] / r[mode]['lax'] for r in records]):.2f}"
        if has_torch:
            gm += f"   auto/torch {_geomean([r[mode]['auto'] / r[mode]['torch'] for r in records]):.2f}"
        lines += [gm, ""]
    lines.append("= after /lax: auto compiled to the identical program as lax (the ratio is timing noise)")
    return "\n".join(lines)


def plot(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Writes a two-panel bar chart (forward, forward+backward; ms, log scale) of every contender per point."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = list(records[0]["fwd_ms"])
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.3 * len(records)), 8), sharex=True)
    width = 0.8 / len(names)
    xs = np.arange(len(records))
    for ax, (mode, title) in zip(axes, (("fwd_ms", "forward"), ("fwd_bwd_ms", "forward + backward")), strict=True):
        for i, name in enumerate(names):
            ax.bar(xs + i * width, [r[mode][name] for r in records], width, label=name)
        ax.set_yscale("log")
        ax.set_ylabel("ms (median)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=len(names), fontsize=8)
    axes[1].set_xticks(xs + 0.4 - width / 2, [r["label"] for r in records], rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options, shared by ``jaxconv bench`` and ``experiments/benchmark.py``."""
    parser.add_argument("--quick", action="store_true", help="a tiny grid (smoke test), 2 rounds")
    parser.add_argument("--reps", type=int, default=None, help="timed rounds per point (default 15; quick: 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds before timing (default 2)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="directory for bench.json/png")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--only", type=int, nargs="*", default=None, help="indices into the grid to run (default: all)")


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark from parsed options; prints the table and floors, writes JSON and PNG; returns 0."""
    grid = QUICK_GRID if args.quick else GRID
    if args.only:
        grid = tuple(grid[i] for i in args.only)
    reps = args.reps if args.reps is not None else (2 if args.quick else 15)
    use_torch = not args.no_torch and _torch_available()
    torch_threads = None
    if use_torch:
        import torch  # noqa: PLC0415

        # XLA:CPU runs one intra-op thread per core available to the process; give torch the same number.
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(threads)
        torch_threads = torch.get_num_threads()
    env = environment(torch_threads)
    print(f"device: {env['device']} ({env['cpu']}, {env['cpu_count']} cores); jax {env['jax']}; torch threads "
          f"{torch_threads}; reps {reps}")  # fmt: skip
    peaks = [matmul_gflops(256 if args.quick else 2048)]
    records = []
    for point in grid:
        records.append(bench_point(point, use_torch=use_torch, warmup=args.warmup, reps=reps))
        print(f"  {point.label}: auto={records[-1]['auto_strategy']} fwd {records[-1]['fwd_ms']['auto']:.3f} ms",
              flush=True)  # fmt: skip
    peaks.append(matmul_gflops(256 if args.quick else 2048))
    peak = statistics.fmean(peaks)
    print(f"\nmatmul peak (f32 {'256' if args.quick else '2048'}^2, mean of before/after): {peak:.1f} GFLOP/s\n")
    print(format_table(records, peak))
    verdicts = floors(records, peak)
    for name, passed, detail in verdicts:
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "environment": env,
        "reps": reps,
        "warmup": args.warmup,
        "matmul_gflops": peaks,
        "records": records,
        "floors": [{"floor": n, "pass": p, "detail": d} for n, p, d in verdicts],
    }
    (args.out / "bench.json").write_text(json.dumps(result, indent=1))
    if not args.no_plot:
        plot(records, args.out / "bench.png")
    print(f"\nwrote {args.out / 'bench.json'}" + ("" if args.no_plot else f" and {args.out / 'bench.png'}"))
    return 0
