"""Edges, corners, textures: a bank of kernels learned by classifying real textures, and what each became.

    python experiments/textures.py                          # a few minutes on a loaded 2-core CPU
    python experiments/textures.py --steps 50 --eval-crops 64 --out runs/textures

Four textures bundled in packages (nothing downloaded): scikit-image's ``brick``, ``grass`` and ``gravel`` and
scikit-learn's ``flower`` photograph, each the grey centre ``--photo-size`` square. The top ``--train-rows`` rows
of each are the training region, the rows below it the held-out region: held-out crops share no pixel with
training. A crop (``--crop`` square, at a uniformly random place in its region) is standardised to mean 0 and
std 1, so brightness and contrast say nothing about its texture.

The model: one convolution layer (``jaxconv.conv2d``, ``--kernels`` kernels of ``--kernel-size`` squared, VALID),
a ReLU, global average pooling and a linear read-out to the four classes; softmax cross-entropy, Adam
(``--learning-rate``, cosine-decayed over ``--steps``), ``--batch`` fresh crops per step, every step jitted and
run in ``lax.scan`` blocks of 100. The PRNG key ``--seed`` makes the run: ``fold_in(key, 0)`` the initial
weights, ``fold_in(key, 1)`` the training crops, ``fold_in(key, 2)`` the held-out crops.

Reported: held-out accuracy on ``--eval-crops`` crops per texture (and the confusion matrix), training accuracy
on as many training crops, and for each kernel its measured description — preferred orientation and spatial
frequency from its 2-D power spectrum, orientation selectivity (``jaxconv.lab.kernel_spectrum``) — with its mean
pooled response to each texture on the held-out crops. Writes ``results.json``, ``texture_kernels.png`` (the
kernels, and their response maps on one held-out crop of each texture) under ``--out`` (default
``experiments/results/textures``). Needs the ``images`` and ``interop`` extras.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxconv
from jaxconv import evidence
from jaxconv.lab import kernel_spectrum

TEXTURES = ("brick", "grass", "gravel", "flower")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--textures", nargs="+", default=list(TEXTURES))
    parser.add_argument("--photo-size", type=int, default=416)
    parser.add_argument("--train-rows", type=int, default=288, help="rows of each texture used for training")
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--kernels", type=int, default=8)
    parser.add_argument("--kernel-size", type=int, default=7)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--eval-crops", type=int, default=250, help="held-out crops per texture")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "textures"))
    return parser.parse_args(argv)


def crops(key: jax.Array, region: jax.Array, count: int, size: int) -> tuple[jax.Array, jax.Array]:
    """``count`` standardised ``[size, size, 1]`` crops of ``region [C, H, W]`` (texture uniform, place uniform)."""
    k_class, k_row, k_col = jax.random.split(key, 3)
    labels = jax.random.randint(k_class, (count,), 0, region.shape[0])
    rows = jax.random.randint(k_row, (count,), 0, region.shape[1] - size + 1)
    cols = jax.random.randint(k_col, (count,), 0, region.shape[2] - size + 1)
    cut = jax.vmap(lambda c, i, j: jax.lax.dynamic_slice(region, (c, i, j), (1, size, size))[0])
    x = cut(labels, rows, cols)
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / (x.std(axis=(1, 2), keepdims=True) + 1e-6)
    return x[..., None], labels


def init(key: jax.Array, kernels: int, size: int, classes: int) -> dict[str, jax.Array]:
    k_conv, k_read = jax.random.split(key)
    return {
        "kernel": jax.random.normal(k_conv, (size, size, 1, kernels)) / size,
        "bias": jnp.zeros(kernels),
        "read": jax.random.normal(k_read, (kernels, classes)) / np.sqrt(kernels),
        "read_bias": jnp.zeros(classes),
    }


def responses(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """``[B, Ho, Wo, kernels]``: the rectified convolution layer."""
    return jax.nn.relu(jaxconv.conv2d(x, params["kernel"], params["bias"]))


def logits(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    return responses(params, x).mean(axis=(1, 2)) @ params["read"] + params["read_bias"][None, :]


def train(args: argparse.Namespace, region: jax.Array, key: jax.Array) -> tuple[dict[str, jax.Array], list[float]]:
    params = init(jax.random.fold_in(key, 0), args.kernels, args.kernel_size, region.shape[0])
    optimizer = optax.adam(optax.cosine_decay_schedule(args.learning_rate, args.steps))
    data_key = jax.random.fold_in(key, 1)

    def loss(p: dict[str, jax.Array], step: jax.Array) -> jax.Array:
        x, y = crops(jax.random.fold_in(data_key, step), region, args.batch, args.crop)
        return optax.softmax_cross_entropy_with_integer_labels(logits(p, x), y).mean()

    def step(carry: tuple[Any, Any], t: jax.Array) -> tuple[tuple[Any, Any], jax.Array]:
        p, state = carry
        value, grad = jax.value_and_grad(loss)(p, t)
        updates, state = optimizer.update(grad, state, p)
        return (optax.apply_updates(p, updates), state), value

    @jax.jit
    def block(carry: tuple[Any, Any], start: jax.Array) -> tuple[tuple[Any, Any], jax.Array]:
        return jax.lax.scan(step, carry, start + jnp.arange(100))

    carry, losses = (params, optimizer.init(params)), []
    for start in range(0, -(-args.steps // 100) * 100, 100):
        carry, values = block(carry, jnp.asarray(start))
        losses.extend(np.asarray(values).tolist())
    return carry[0], losses[: args.steps]


def accuracy(params: dict[str, jax.Array], x: jax.Array, y: jax.Array, classes: int) -> tuple[float, list]:
    predicted = np.asarray(jnp.argmax(jax.jit(logits)(params, x), -1))
    y = np.asarray(y)
    confusion = np.zeros((classes, classes), int)
    np.add.at(confusion, (y, predicted), 1)
    return float(np.mean(predicted == y)), confusion.tolist()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    evidence.prepare_out(args.out)
    start = time.perf_counter()
    photos = evidence.bundled_photos(args.textures, (args.photo_size, args.photo_size))
    train_region, held_region = jnp.asarray(photos[:, : args.train_rows]), jnp.asarray(photos[:, args.train_rows :])
    key = jax.random.key(args.seed)
    params, losses = train(args, train_region, key)
    classes, count = len(args.textures), args.eval_crops * len(args.textures)
    x_held, y_held = crops(jax.random.fold_in(key, 2), held_region, count, args.crop)
    x_train, y_train = crops(jax.random.fold_in(key, 3), train_region, count, args.crop)
    held_accuracy, confusion = accuracy(params, x_held, y_held, classes)
    train_accuracy, _ = accuracy(params, x_train, y_train, classes)

    pooled = np.asarray(jax.jit(responses)(params, x_held).mean(axis=(1, 2)))  # [N, kernels]
    by_texture = np.stack([pooled[np.asarray(y_held) == c].mean(0) for c in range(classes)], -1)  # [kernels, C]
    kernels = np.asarray(params["kernel"][:, :, 0, :])
    described = []
    for i in range(args.kernels):
        described.append({
            **kernel_spectrum(kernels[:, :, i]),
            "mean_response": dict(zip(args.textures, by_texture[i].tolist(), strict=True)),
            "prefers": args.textures[int(np.argmax(by_texture[i]))],
        })  # fmt: skip
    results = {
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": f"2-core AMD EPYC CPU (shared with other jobs), no GPU; jax {jax.__version__}",
        "chance": 1 / classes,
        "held_out_accuracy": held_accuracy,
        "train_accuracy": train_accuracy,
        "confusion": {"rows": "true texture", "columns": "predicted", "textures": args.textures, "counts": confusion},
        "kernels": described,
        "losses_first_last_100": [float(np.mean(losses[:100])), float(np.mean(losses[-100:]))],
        "wall_s": round(time.perf_counter() - start, 1),
    }
    evidence.write_json(os.path.join(args.out, "results.json"), results)
    examples = [int(np.nonzero(np.asarray(y_held) == c)[0][0]) for c in range(classes)]
    maps = np.asarray(jax.jit(responses)(params, x_held[np.asarray(examples)]))
    figure(os.path.join(args.out, "texture_kernels.png"), kernels, described, np.asarray(x_held)[examples], maps,
           args.textures)  # fmt: skip
    print(f"held-out accuracy {held_accuracy:.3f} (train {train_accuracy:.3f}, chance {1 / classes:.3f})")
    for i, d in enumerate(described):
        print(f"kernel {i}: {d['orientation_deg']:5.1f} deg, {d['frequency']:.3f} cyc/px, "
              f"selectivity {d['selectivity']:.2f}, prefers {d['prefers']}")  # fmt: skip
    return 0


def figure(
    path: str, kernels: np.ndarray, described: list, examples: np.ndarray, maps: np.ndarray, names: list
) -> None:
    """Row 0: the kernels (titled with orientation, frequency, selectivity); one row per texture: a held-out crop
    and each kernel's rectified response to it."""
    count = kernels.shape[-1]
    fig = evidence.figure(1.6 * (count + 1), 1.8 * (len(names) + 1))
    grid = fig.add_gridspec(len(names) + 1, count + 1)
    for i in range(count):
        d = described[i]
        title = f"{d['orientation_deg']:.0f}° {d['frequency']:.2f}\nsel {d['selectivity']:.2f}"
        ax, limit = fig.add_subplot(grid[0, i + 1]), float(np.abs(kernels[:, :, i]).max())
        ax.imshow(kernels[:, :, i], cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(title, fontsize=9)
    for row, name in enumerate(names, start=1):
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(examples[row - 1, :, :, 0], cmap="gray")
        ax.set_title(name, fontsize=9)
        for i in range(count):
            fig.add_subplot(grid[row, i + 1]).imshow(maps[row - 1, :, :, i], cmap="magma")
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    evidence.save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
