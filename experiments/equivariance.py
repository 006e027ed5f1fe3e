"""Detect the pattern anywhere: shift the image and the response shifts with it; plant it anywhere and it is found.

    python experiments/equivariance.py                      # about 30 s on a 2-core CPU
    python experiments/equivariance.py --steps 100 --shifts 3 --out runs/eq

1. Translation equivariance, measured: for random binary images and the learned detector's kernel,
   ``|conv2d(roll(x)) - roll(conv2d(x))|`` per padding mode — zero everywhere with circular padding, zero on the
   interior (windows that touch neither the padding nor roll's seam) in every mode, and a boundary error for
   zeros/reflect/replicate that is reported separately.
2. The seed pattern planted at every position of one background image (one image per position) is detected at
   every position, by the learned kernel and by the matched filter, with the same logit everywhere.

Writes ``results.json``, ``shift_error.png`` and ``planted_everywhere.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing

import jax
import jax.numpy as jnp
import numpy as np

import jaxconv
from jaxconv import evidence

PADDING_MODES = typing.get_args(jaxconv.conv.PaddingMode)


def shift_errors(kernel: jax.Array, images: jax.Array, shifts: np.ndarray) -> dict:
    """Per padding mode: the largest error on the interior, and the boundary's largest and mean error."""
    results = {}
    for mode in PADDING_MODES:
        interior_max, boundary_max, boundary_sum, boundary_count, interior_count = 0.0, 0.0, 0.0, 0, 0
        for image in images:
            for shift in shifts:
                error, interior = jaxconv.lab.shift_error(
                    image, kernel, tuple(int(s) for s in shift), padding_mode=mode
                )
                error = np.asarray(error)
                interior_max = max(interior_max, float(error[interior].max(initial=0.0)))
                boundary_max = max(boundary_max, float(error[~interior].max(initial=0.0)))
                boundary_sum += float(error[~interior].sum())
                boundary_count += int((~interior).sum())
                interior_count += int(interior.sum())
        results[mode] = {
            "interior_max_error": interior_max,
            "boundary_max_error": boundary_max,
            "boundary_mean_error": boundary_sum / max(boundary_count, 1),
            "interior_fraction": interior_count / (interior_count + boundary_count),
        }
    return results


def planted_everywhere(task: jaxconv.PlantedPatternTask, detectors: dict, key: jax.Array) -> tuple[dict, dict]:
    """One background image; one copy per VALID position, pasted at that position; the logit there."""
    background = jaxconv.PlantedPatternTask(task.pattern, image_shape=task.image_shape, instances=0)
    image = background.sample(key, 1).images[0, :, :, 0]
    pattern = jnp.asarray(task.pattern_array)
    ho, wo = task.output_shape
    rows, cols = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    corners = np.stack([rows.ravel(), cols.ravel()], axis=1)
    images = jax.vmap(lambda c: jax.lax.dynamic_update_slice(image, pattern, tuple(c)))(jnp.asarray(corners))
    results, maps = {}, {}
    for name, params in detectors.items():
        logits = np.asarray(jaxconv.logit_map(params, images[..., None]))
        at_corner = logits[np.arange(len(corners)), corners[:, 0], corners[:, 1]].reshape(ho, wo)
        maps[name] = at_corner
        results[name] = {
            "positions": int(at_corner.size),
            "detected_fraction": float((at_corner > 0).mean()),
            "logit_min": float(at_corner.min()),
            "logit_max": float(at_corner.max()),
        }
    centre = len(corners) // 2
    return results, {"image": np.asarray(images[centre]), "corner": tuple(corners[centre]), **maps}


def plot_shift_error(path: str, kernel: jax.Array, image: jax.Array, shift: tuple[int, int]) -> None:
    fig = evidence.figure(12, 3.4)
    axes = fig.subplots(1, len(PADDING_MODES))
    errors = [jaxconv.lab.shift_error(image, kernel, shift, padding_mode=m) for m in PADDING_MODES]
    top = max(float(e.max()) for e, _ in errors) or 1.0
    for ax, mode, (error, interior) in zip(axes, PADDING_MODES, errors, strict=True):
        shown = ax.imshow(np.asarray(error), cmap="magma", vmin=0, vmax=top)
        ax.contour(interior, levels=[0.5], colors="cyan", linewidths=1.0)
        ax.set_title(f"{mode}: max {float(error.max()):.2f}, interior {float(error[interior].max()):.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes, shrink=0.8, label="|conv(roll x) - roll(conv x)|")
    fig.suptitle(f"shift {shift}: error per padding mode (cyan: the interior, where equivariance is exact)")
    evidence.save_figure(fig, path)


def plot_planted(path: str, maps: dict) -> None:
    from matplotlib.patches import Rectangle

    names = [n for n in maps if n not in ("image", "corner")]
    fig = evidence.figure(4 + 4 * len(names), 3.6)
    axes = fig.subplots(1, 1 + len(names))
    axes[0].imshow(maps["image"], cmap="gray_r", interpolation="nearest")
    ph, pw = maps[names[0]].shape
    i, j = maps["corner"]
    kh, kw = maps["image"].shape[0] - ph + 1, maps["image"].shape[1] - pw + 1
    axes[0].add_patch(Rectangle((j - 0.5, i - 0.5), kw, kh, fill=False, edgecolor="tab:green", linewidth=2))
    axes[0].set_title(f"one of the {ph * pw} images (pattern at {i}, {j})", fontsize=9)
    for ax, name in zip(axes[1:], names, strict=True):
        shown = ax.imshow(maps[name], cmap="viridis")
        ax.set_title(f"{name}: logit where planted\n{(maps[name] > 0).mean():.0%} detected", fontsize=9)
        fig.colorbar(shown, ax=ax, shrink=0.8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    evidence.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="seed", choices=list(jaxconv.lab.PATTERNS))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=400, help="training steps for the learned detector")
    parser.add_argument("--images", type=int, default=8, help="random images for the shift-error measurement")
    parser.add_argument("--shifts", type=int, default=10, help="random shifts per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output directory (default runs/equivariance-<timestamp>)")
    args = parser.parse_args(argv)
    try:
        out = evidence.prepare_out(args.out or evidence.default_out("equivariance"))
    except ValueError as err:
        parser.error(str(err))

    task = jaxconv.PlantedPatternTask(args.pattern, image_shape=(args.image_size, args.image_size))
    learned = jaxconv.fit(task, steps=args.steps, seed=args.seed, eval_images=0).params
    detectors = {"learned": learned, "matched filter": jaxconv.matched_filter(task)}
    key_images, key_shifts, key_planted = jax.random.split(jax.random.key(args.seed), 3)
    images = task.sample(key_images, args.images).images[..., 0]
    shifts = np.asarray(jax.random.randint(key_shifts, (args.shifts, 2), -args.image_size, args.image_size))
    kernel = learned["kernel"][:, :, 0, 0]

    shift_results = shift_errors(kernel, images, shifts)
    planted_results, maps = planted_everywhere(task, detectors, key_planted)
    results = {
        "config": {**vars(args), "out": out, "task": task.to_dict()},
        "shift_error": shift_results,
        "planted_everywhere": planted_results,
    }
    evidence.write_json(os.path.join(out, "results.json"), results)
    plot_shift_error(os.path.join(out, "shift_error.png"), kernel, images[0], tuple(int(s) for s in shifts[0]))
    plot_planted(os.path.join(out, "planted_everywhere.png"), maps)

    print(f"shift error over {args.images} images x {args.shifts} shifts (learned {kernel.shape} kernel, SAME):")
    print(f"{'padding mode':<14}{'interior max':>14}{'boundary max':>14}{'boundary mean':>15}{'interior':>10}")
    for mode, r in shift_results.items():
        print(f"{mode:<14}{r['interior_max_error']:>14.3g}{r['boundary_max_error']:>14.3g}"
              f"{r['boundary_mean_error']:>15.3g}{r['interior_fraction']:>10.0%}")  # fmt: skip
    for name, r in planted_results.items():
        print(f"{name}: planted at each of {r['positions']} positions, detected at {r['detected_fraction']:.1%}; "
              f"logit there from {r['logit_min']:.4f} to {r['logit_max']:.4f}")  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
