"""``jaxconv bench --grid template``: ``match_template`` against scikit-image and OpenCV, in one order-free run.

Each point is a batch of ``n`` grey ``size x size`` float32 images and one ``t x t`` template. The contenders:
``jaxconv`` (``match_template``, jitted, the whole batch in one call), ``skimage`` (``feature.match_template``, one
image at a time) and ``opencv`` (``cv2.matchTemplate(..., TM_CCOEFF_NORMED)``, one image at a time, on as many
threads as XLA:CPU). Every round calls each contender once, in an order drawn from the seeded ``rng``
(:func:`jaxconv.evidence._bench.interleaved`); medians and the medians of per-round ratios are reported. Each
contender's first image is checked against scikit-image computed in float64 (``max_abs_err``, valid windows only).
scikit-image and OpenCV are the ``images`` extra: imported only when this runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from jaxconv._files import write_atomic
from jaxconv.conv._strategies import xla_cpu_threads
from jaxconv.conv._template import match_template
from jaxconv.evidence._bench import _is_oom, environment, interleaved, median_ratio


@dataclasses.dataclass(frozen=True)
class TemplatePoint:
    """One configuration: ``n`` grey float32 images ``[n, size, size]``, a ``[template, template]`` template."""

    n: int
    size: int
    template: int

    @property
    def label(self) -> str:
        """E.g. ``16x1024^2 t32``."""
        return f"{self.n}x{self.size}^2 t{self.template}"


# Images 256^2 to 4096^2, templates 8^2 to 128^2, batches of 1 and 16.
TEMPLATE_GRID: tuple[TemplatePoint, ...] = tuple(
    TemplatePoint(n, size, t) for n in (1, 16) for size in (256, 1024, 4096) for t in (8, 32, 128)
)
QUICK_TEMPLATE_GRID: tuple[TemplatePoint, ...] = (TemplatePoint(1, 32, 8), TemplatePoint(2, 24, 5))
CONTENDERS = ("jaxconv", "skimage", "opencv")


def template_grid(quick: bool) -> tuple[TemplatePoint, ...]:
    """The template grid, or its tiny ``quick`` version."""
    return QUICK_TEMPLATE_GRID if quick else TEMPLATE_GRID


def _contenders(images: np.ndarray, template: np.ndarray) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """The thunks timed, and ``{"compile_s", "outputs" (each contender's first image's scores), "failed"}``."""
    import cv2  # noqa: PLC0415 (the images extra, only here)
    from skimage.feature import match_template as skimage_match  # noqa: PLC0415

    x, t = jax.device_put(images), jax.device_put(template)
    info: dict[str, Any] = {"compile_s": None, "outputs": {}, "failed": {}}
    thunks: dict[str, Callable[[], Any]] = {
        "skimage": lambda: [skimage_match(image, template) for image in images],
        "opencv": lambda: [cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED) for image in images],
    }
    try:
        start = time.perf_counter()
        compiled = jax.jit(match_template).lower(x, t).compile()
        info["compile_s"] = time.perf_counter() - start
        info["outputs"]["jaxconv"] = np.asarray(compiled(x, t)[0])
        thunks["jaxconv"] = lambda: compiled(x, t).block_until_ready()
    except Exception as err:  # noqa: BLE001 (recorded, the run goes on)
        if not _is_oom(err):
            raise
        info["failed"]["jaxconv"] = "OOM"
    info["outputs"]["skimage"] = thunks["skimage"]()[0]
    info["outputs"]["opencv"] = thunks["opencv"]()[0]
    return thunks, info


def bench_template_point(point: TemplatePoint, *, rng: random.Random, warmup: int, rounds: int) -> dict[str, Any]:
    """Measures every contender on one point; returns a JSON-ready record: ``{"point", "label", "ms": {name:
    median}, "samples_ms", "ratio": {"jaxconv/skimage", "jaxconv/opencv"} (medians of per-round ratios),
    "compile_s", "failed", "max_abs_err": {name: vs scikit-image in float64, first image}}``."""
    from skimage.feature import match_template as skimage_match  # noqa: PLC0415

    data = np.random.default_rng(point.size * 1000 + point.template)
    images = (np.round(data.random((point.n, point.size, point.size)) * 255) / 256).astype(np.float32)
    top = point.size // 3
    template = images[0, top : top + point.template, top : top + point.template].copy()
    thunks, info = _contenders(images, template)
    samples = interleaved(thunks, warmup=warmup, rounds=rounds, rng=rng)
    reference = skimage_match(images[0].astype(np.float64), template.astype(np.float64))
    ratio = {
        f"jaxconv/{other}": median_ratio(samples["jaxconv"], samples[other])
        for other in ("skimage", "opencv")
        if "jaxconv" in samples
    }
    return {
        "point": dataclasses.asdict(point),
        "label": point.label,
        "ms": {name: statistics.median(s) for name, s in samples.items()},
        "samples_ms": {name: [round(v, 5) for v in s] for name, s in samples.items()},
        "ratio": ratio,
        "compile_s": info["compile_s"],
        "failed": info["failed"],
        "max_abs_err": {name: float(np.max(np.abs(out - reference))) for name, out in info["outputs"].items()},
    }


def format_template_grid(records: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table: median ms of every contender per point, and jaxconv's per-round ratios to the others."""
    header = (
        f"{'match_template (ms)':<22}" + "".join(f"{n:>10}" for n in CONTENDERS) + f"{'/skimage':>10}{'/opencv':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in records:
        cells = "".join(
            f"{r['ms'][n]:>10.3f}" if n in r["ms"] else f"{r['failed'].get(n, '-'):>10}" for n in CONTENDERS
        )
        ratios = "".join(
            f"{r['ratio'][k]:>{w}.2f}" if k in r["ratio"] else f"{'-':>{w}}"
            for k, w in (("jaxconv/skimage", 10), ("jaxconv/opencv", 9))
        )
        lines.append(f"{r['label']:<22}{cells}{ratios}")
    lines.append("/skimage, /opencv: jaxconv's medians of per-round ratios (< 1: jaxconv faster)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``jaxconv bench --grid template`` from parsed options: prints the table, writes ``bench.json``; returns 0."""
    import cv2  # noqa: PLC0415

    cv2.setNumThreads(xla_cpu_threads())
    grid = template_grid(args.quick)
    if args.only:
        grid = tuple(grid[i] for i in args.only)
    rounds = args.reps if args.reps is not None else (2 if args.quick else 11)
    load_start = os.getloadavg()
    env = environment(None, None)
    env["opencv_threads"] = cv2.getNumThreads()
    env["versions_images"] = {
        name: importlib.metadata.version(name) for name in ("opencv-python-headless", "scikit-image")
    }
    print(
        f"device: {env['device']} ({env['cpu']}); XLA:CPU threads {env['xla_cpu_threads']}, OpenCV threads "
        f"{env['opencv_threads']}; {rounds} rounds after {args.warmup} warm-up, order seed {args.seed}; "
        f"load {load_start[0]:.2f}"
    )
    rng = random.Random(args.seed)
    records = []
    for point in grid:
        records.append(bench_template_point(point, rng=rng, warmup=args.warmup, rounds=rounds))
        print(f"  {point.label}: " + " ".join(f"{n} {ms:.3f} ms" for n, ms in records[-1]["ms"].items()), flush=True)
    print("\n" + format_template_grid(records))
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "grid": "template",
        "environment": env,
        "quick": args.quick,
        "seed": args.seed,
        "rounds": rounds,
        "warmup": args.warmup,
        "loadavg": {"start": load_start, "end": os.getloadavg()},
        "records": records,
    }
    write_atomic(str(args.out / "bench.json"), json.dumps(result, indent=1))
    print(f"\nwrote {args.out / 'bench.json'}")
    return 0
