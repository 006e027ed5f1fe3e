"""How convolution time grows with image size and with device count: JSON + PNG under ``--out``.

Three ways to convolve a single-channel image with a ``K x K`` kernel ("SAME"): ``conv2d`` on one device,
``spatial_conv2d`` with the rows split over all devices, and ``tiled_response`` (VALID + bias) streaming a
``.npy`` file from disk tile by tile. The largest size runs only through the last two, standing in for an image
that no longer fits one device (``--device-budget-mp``). Then ``spatial_conv2d`` on a fixed image over 1, 2, 4, ...
devices.

Without an accelerator the devices are ``--cpu-devices`` forced CPU devices sharing the host's cores: the code
paths are the real ones, the speed numbers mean little (the output says so). Run on a GPU for real numbers.

    python experiments/scaling.py --out runs/scaling
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for scaling.json and scaling.png")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048], help="square image sides")
    parser.add_argument("--big", type=int, default=6144, help="side of the image convolved only out of core")
    parser.add_argument("--device-size", type=int, default=2048, help="image side for the device-count sweep")
    parser.add_argument("--kernel", type=int, default=5, help="kernel side K")
    parser.add_argument("--tile", type=int, default=1024, help="tiled_response output tile side")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per point (median reported)")
    parser.add_argument("--cpu-devices", type=int, default=8, help="forced CPU devices when there is no accelerator")
    parser.add_argument(
        "--device-budget-mp", type=float, default=16.0, help="megapixels deemed to fit one device, for the labels"
    )
    return parser.parse_args(argv)


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn()`` (blocked until ready) after one untimed warm-up call that compiles."""
    import jax

    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(args.cpu_devices))  # before JAX starts; ignored on GPU/TPU
    import jax
    import numpy as np

    import jaxconv

    devices = jax.devices()
    rng = np.random.default_rng(0)
    kernel = (rng.normal(size=(args.kernel, args.kernel)) / args.kernel).astype(np.float32)
    params = {"kernel": kernel[:, :, None, None], "bias": np.zeros(1, np.float32)}
    mesh = jax.sharding.Mesh(np.array(devices), ("rows",))
    forced_cpu = devices[0].platform == "cpu"
    note = (
        f"{len(devices)} forced CPU devices sharing {os.cpu_count()} host cores: the code paths are real, the speed "
        "numbers mean little (more devices do not add compute). Measure on a GPU for meaningful numbers."
        if forced_cpu
        else f"{len(devices)} x {devices[0].device_kind}."
    )
    print(note)

    by_size = []
    with tempfile.TemporaryDirectory() as scratch:
        for side in [*args.sizes, args.big]:
            image = rng.random((side, side), dtype=np.float32)
            megapixels = side * side / 1e6
            row: dict[str, Any] = {"side": side, "megapixels": megapixels}
            row["fits_one_device"] = megapixels <= args.device_budget_mp
            if side != args.big:
                on_device = jax.device_put(image, devices[0])
                row["conv2d_1_device_seconds"] = median_seconds(
                    lambda x=on_device: jaxconv.conv2d(x, kernel, padding="SAME"), args.repeats
                )
                del on_device
            rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("rows"))
            sharded = jax.device_put(image, rows) if side % len(devices) == 0 else image
            row[f"spatial_conv2d_{len(devices)}_devices_seconds"] = median_seconds(
                lambda x=sharded: jaxconv.spatial_conv2d(x, kernel, mesh=mesh, padding="SAME"), args.repeats
            )
            path = Path(scratch) / "image.npy"
            np.save(path, image)
            del image, sharded
            warm = min(side - args.kernel + 1, args.tile) + args.kernel - 1  # compile the tile's shape, untimed
            jaxconv.lab.tiled_response(
                np.zeros((warm, warm), np.float32), params, tile=(args.tile,) * 2, progress=False
            )
            tiled = jaxconv.lab.tiled_response(
                path, params, tile=(args.tile, args.tile), out=Path(scratch) / "logits.npy", progress=False
            )
            row["tiled_response_seconds"] = tiled.seconds
            row["tiled_response_megapixels_per_second"] = tiled.megapixels_per_second
            print(json.dumps(row))
            by_size.append(row)

    by_devices = []
    image = rng.random((args.device_size, args.device_size), dtype=np.float32)
    count = 1
    while count <= len(devices):
        submesh = jax.sharding.Mesh(np.array(devices[:count]), ("rows",))
        seconds = median_seconds(
            lambda m=submesh: jaxconv.spatial_conv2d(image, kernel, mesh=m, padding="SAME"), args.repeats
        )
        row = {"devices": count, "side": args.device_size, "spatial_conv2d_seconds": seconds}
        print(json.dumps(row))
        by_devices.append(row)
        count *= 2

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "note": note,
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "jax_version": jax.__version__,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "by_size": by_size,
        "by_devices": by_devices,
    }
    (args.out / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "scaling.png")
    print(f"wrote {args.out / 'scaling.json'} and {args.out / 'scaling.png'}")
    return 0


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = result["by_size"]
    for key in sorted({k for row in sizes for k in row if k.endswith("_seconds")}):
        points = [(row["megapixels"], row[key]) for row in sizes if key in row]
        left.plot(*zip(*points, strict=True), marker="o", label=key.removesuffix("_seconds").replace("_", " "))
    beyond = [row["megapixels"] for row in sizes if not row["fits_one_device"]]
    if beyond:
        left.axvline(min(beyond), color="grey", linestyle=":", label="beyond one device (--device-budget-mp)")
    left.set(xscale="log", yscale="log", xlabel="image megapixels", ylabel="seconds", title="time vs image size")
    left.legend(fontsize=8)
    devices = result["by_devices"]
    counts = [r["devices"] for r in devices]
    right.plot(counts, [r["spatial_conv2d_seconds"] for r in devices], marker="o")
    right.set_xscale("log", base=2)
    right.set_xticks(counts, labels=[str(c) for c in counts])
    right.set(
        xlabel="devices (mesh of the first n)",
        ylabel="seconds",
        title=f"spatial_conv2d, {devices[0]['side']}^2 image" if devices else "",
    )
    fig.suptitle(result["note"], fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
