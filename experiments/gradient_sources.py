"""Each weight gets gradient from the whole image: the per-position sources of dL/dkernel, tied vs untied.

    python experiments/gradient_sources.py                  # a few seconds
    python experiments/gradient_sources.py --pattern cross --out runs/grad

For one training image and a random starting kernel, the gradient of the detection loss with respect to the
kernel is split into the contribution of every output position (``jaxconv.lab.kernel_gradient_sources``). With
the same weights at every position (a convolution) each weight sums contributions from all over the image.
An untied layer — a locally connected layer (one kernel per position) or a dense layer from the image to the
logit map — gives each of its weights the contribution of a single position: the gradient of the untied layer,
evaluated at the tied kernel, *is* the map of sources (checked here), and the convolution's gradient is its sum.

Writes ``results.json`` and ``gradient_sources.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxconv
from jaxconv import evidence


def sources_for(loss_name: str, image: jax.Array, target: jax.Array, params: dict) -> tuple[jax.Array, dict]:
    """The sources ``[Ho, Wo, KH, KW]`` of dL/dkernel for one image, and checks against the tied and untied grads."""
    kernel, bias = params["kernel"][:, :, 0, 0], params["bias"][0]

    def loss_of_logits(logits: jax.Array) -> jax.Array:
        return jaxconv.detection_loss(logits, target, loss=loss_name)

    logits = jaxconv.conv2d(image, kernel) + bias
    output_grad = jax.grad(loss_of_logits)(logits)
    sources = jaxconv.lab.kernel_gradient_sources(image, kernel, output_grad)

    tied = jax.grad(lambda k: loss_of_logits(jaxconv.conv2d(image, k) + bias))(kernel)
    windows = jaxconv.lab.patches(image, kernel.shape)
    untied_kernels = jnp.broadcast_to(kernel, windows.shape)  # a locally connected layer, at the tied kernel
    untied = jax.grad(lambda w: loss_of_logits(jnp.einsum("ijab,ijab->ij", windows, w) + bias))(untied_kernels)

    contributing = np.asarray(jnp.abs(sources) > 0)  # [Ho, Wo, KH, KW]
    checks = {
        "max_abs_diff_sum_of_sources_vs_grad": float(jnp.max(jnp.abs(sources.sum((0, 1)) - tied))),
        "max_abs_diff_untied_grad_vs_sources": float(jnp.max(jnp.abs(untied - sources))),
        "positions": int(np.prod(sources.shape[:2])),
        "positions_with_nonzero_output_grad": int((np.asarray(output_grad) != 0).sum()),
        "positions_per_weight_conv": contributing.reshape(-1, kernel.size).sum(0).tolist(),
        "positions_per_weight_untied": 1,
    }
    return sources, checks


def plot(path: str, image: np.ndarray, target: np.ndarray, sources: dict, kernel_shape: tuple[int, int]) -> None:
    from matplotlib.colors import LogNorm, SymLogNorm

    names = list(sources)
    fig = evidence.figure(4.2 * (1 + 2 * len(names)), 4.0)
    axes = fig.subplots(1, 1 + 2 * len(names))
    axes[0].imshow(image, cmap="gray_r", interpolation="nearest")
    ys, xs = np.nonzero(target)
    axes[0].scatter(xs, ys, s=18, facecolors="none", edgecolors="tab:green", label="pattern corners")
    axes[0].set_title("training image (green: pattern corners)", fontsize=9)
    for n, name in enumerate(names):
        s = np.asarray(sources[name])
        strength = np.sqrt((s**2).sum((2, 3)))
        ax = axes[1 + 2 * n]
        positive = strength[strength > 0]
        norm = LogNorm(vmin=float(positive.min()), vmax=float(positive.max())) if positive.size else None
        shown = ax.imshow(np.where(strength > 0, strength, np.nan), cmap="viridis", norm=norm)
        ax.set_facecolor("black")
        ax.set_title(f"{name}: |contribution| per position, log scale\n(nonzero at {(strength > 0).mean():.0%} "
                     "of positions; black: none)", fontsize=9)  # fmt: skip
        fig.colorbar(shown, ax=ax, shrink=0.75)
        ax = axes[2 + 2 * n]
        w = s[:, :, 0, 0]
        limit = float(np.abs(w).max()) or 1.0
        tiny = float(np.abs(w[w != 0]).min()) if np.any(w != 0) else 1.0
        shown = ax.imshow(w, cmap="RdBu_r", norm=SymLogNorm(linthresh=tiny, vmin=-limit, vmax=limit))
        ax.set_title(f"{name}: share of dL/dk[0,0] per position\n(sum = the gradient)", fontsize=9)
        fig.colorbar(shown, ax=ax, shrink=0.75)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"where the gradient of a shared {kernel_shape[0]}x{kernel_shape[1]} kernel comes from")
    evidence.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="seed", choices=list(jaxconv.lab.PATTERNS))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output directory (default runs/gradient_sources-<timestamp>)")
    args = parser.parse_args(argv)
    try:
        out = evidence.prepare_out(args.out or evidence.default_out("gradient_sources"))
    except ValueError as err:
        parser.error(str(err))

    task = jaxconv.PlantedPatternTask(args.pattern, image_shape=(args.image_size, args.image_size))
    key_data, key_init = jax.random.split(jax.random.key(args.seed))
    sample = task.sample(key_data, 1)
    image, target = sample.images[0, :, :, 0], sample.targets[0]
    params = jaxconv.init_params(key_init, task.pattern_array.shape)
    kernel_shape = task.pattern_array.shape

    sources, checks = {}, {}
    for loss_name in ("balanced", "hard_negative"):
        sources[loss_name], checks[loss_name] = sources_for(loss_name, image, target, params)
    ho, wo = task.output_shape
    h, w = task.image_shape
    taps = int(np.prod(kernel_shape))
    results = {
        "config": {**vars(args), "out": out, "task": task.to_dict()},
        "parameters": {
            "conv": taps + 1,
            "locally_connected": ho * wo * taps + 1,
            "dense": ho * wo * h * w + ho * wo,
        },
        "losses": checks,
    }
    evidence.write_json(os.path.join(out, "results.json"), results)
    plot(os.path.join(out, "gradient_sources.png"), np.asarray(image), np.asarray(target), sources, kernel_shape)

    print(f"one {h}x{w} image, {int(target.sum())} pattern positions, random {kernel_shape} kernel; "
          f"{ho * wo} output positions")  # fmt: skip
    for loss_name, c in checks.items():
        per_weight = c["positions_per_weight_conv"]
        print(f"{loss_name:>13}: each conv weight gets gradient from {min(per_weight)}-{max(per_weight)} positions "
              f"(untied layers: 1); sum of sources - grad: {c['max_abs_diff_sum_of_sources_vs_grad']:.1e}; "
              f"untied grad - sources: {c['max_abs_diff_untied_grad_vs_sources']:.1e}")  # fmt: skip
    p = results["parameters"]
    print(f"parameters: conv {p['conv']}, locally connected {p['locally_connected']}, dense {p['dense']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
