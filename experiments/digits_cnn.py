"""A Flax nnx CNN on scikit-learn's bundled digits, trained twice from one seed: stock, and with jaxconv's drop-in.

    python experiments/digits_cnn.py                          # about a minute on a 2-core CPU
    python experiments/digits_cnn.py --steps 20 --out runs/digits

The model (two 3x3 ``nnx.Conv`` layers, 8 and 16 channels, "SAME", ReLU, 2x2 average pooling, a linear head) is
built once with ``lax.conv_general_dilated`` (Flax's default) and once with
``nnx.Conv(..., conv_general_dilated=jaxconv.conv_general_dilated)`` — the only difference. Both see the same
initial weights and the same minibatches (Adam, softmax cross-entropy). The 8x8 digits (1797 images, shipped with
scikit-learn: no download) are split into train and test by a seeded permutation.

Writes ``results.json`` (config, per-step losses, test accuracies, median step times — the two models' steps timed
in alternation after training — and their ratio),
``digits_loss.png`` (both loss curves overlaid) and ``digits_kernels.png`` (the jaxconv run's first-layer kernels
beside their response maps on a test digit) under ``--out`` (default ``experiments/results/digits_cnn``). Needs the
``interop`` extra (flax, scikit-learn).
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


def load_digits(seed: int, test_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as ``[N, 8, 8, 1]`` float32 in [0, 1], split by a seeded permutation."""
    from sklearn.datasets import load_digits as sklearn_digits  # noqa: PLC0415 (the interop extra)

    digits = sklearn_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    order = np.random.default_rng(seed).permutation(len(images))
    test, train = order[:test_size], order[test_size:]
    return images[train], digits.target[train], images[test], digits.target[test]


def make_model(conv: Any, seed: int) -> Any:
    """The CNN; ``conv`` is the convolution its two ``nnx.Conv`` layers call."""
    from flax import nnx  # noqa: PLC0415 (the interop extra)

    class CNN(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.conv1 = nnx.Conv(1, 8, (3, 3), padding="SAME", conv_general_dilated=conv, rngs=rngs)
            self.conv2 = nnx.Conv(8, 16, (3, 3), padding="SAME", conv_general_dilated=conv, rngs=rngs)
            self.head = nnx.Linear(16 * 4 * 4, 10, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:  # [N, 8, 8, 1] -> [N, 10]
            x = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
            x = nnx.avg_pool(x, (2, 2), strides=(2, 2))
            return self.head(x.reshape(x.shape[0], -1))

    return CNN(nnx.Rngs(seed))


def train(conv: Any, data: tuple, args: argparse.Namespace) -> dict[str, Any]:
    """Trains one model; returns its losses, test accuracy, median step time and first-layer kernel."""
    from flax import nnx  # noqa: PLC0415

    x_train, y_train, x_test, y_test = data
    model = make_model(conv, args.seed)
    optimizer = nnx.Optimizer(model, optax.adam(args.learning_rate), wrt=nnx.Param)

    @nnx.jit
    def step(model: Any, optimizer: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        def loss_fn(model: Any) -> jax.Array:
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    batches = np.random.default_rng(args.seed + 1)
    losses = []
    for _ in range(args.steps):
        idx = batches.choice(len(x_train), args.batch_size, replace=False)
        losses.append(float(step(model, optimizer, jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx]))))
    predictions = np.asarray(jnp.argmax(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x_test)), axis=-1))
    x_time, y_time = jnp.asarray(x_train[: args.batch_size]), jnp.asarray(y_train[: args.batch_size])

    def timed_step() -> float:
        """Seconds for one more training step (after the metrics above are taken)."""
        start = time.perf_counter()
        step(model, optimizer, x_time, y_time).block_until_ready()
        return time.perf_counter() - start

    return {
        "losses": losses,
        "test_accuracy": float(np.mean(predictions == y_test)),
        "conv1_kernel": np.asarray(model.conv1.kernel[...]),
        "conv1_bias": np.asarray(model.conv1.bias[...]),
        "timed_step": timed_step,
    }


def interleaved_step_ms(runs: dict[str, dict[str, Any]], reps: int) -> dict[str, float]:
    """Median milliseconds per training step of each run, timed in alternation (so load changes hit both alike)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            times[name].append(run["timed_step"]())
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-reps", type=int, default=200, help="training steps timed per model, alternating")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "digits_cnn"))
    args = parser.parse_args(argv)
    try:
        import flax  # noqa: F401, PLC0415
        import sklearn  # noqa: F401, PLC0415
    except ImportError as err:
        print(f"digits_cnn: needs the interop extra (pip install 'jaxconv[interop]'): {err}", file=sys.stderr)
        return 2
    try:
        out = evidence.prepare_out(args.out)
    except ValueError as err:
        parser.error(str(err))

    data = load_digits(args.seed, args.test_size)
    from jax import lax  # noqa: PLC0415

    runs = {
        "stock": train(lax.conv_general_dilated, data, args),
        "jaxconv": train(jaxconv.conv_general_dilated, data, args),
    }
    stock, ours = runs["stock"], runs["jaxconv"]
    step_ms = interleaved_step_ms(runs, args.timing_reps)
    results = {
        "config": {**{k: v for k, v in vars(args).items() if k != "out"}, "train_images": len(data[0]),
                   "test_images": len(data[2])},
        "machine": f"{jax.default_backend()}, {os.cpu_count()} CPU cores, jax {jax.__version__}",
        **{
            name: {"losses": run["losses"], "test_accuracy": run["test_accuracy"], "median_step_ms": step_ms[name]}
            for name, run in runs.items()
        },
        "accuracy_difference_points": 100 * (ours["test_accuracy"] - stock["test_accuracy"]),
        "step_time_ratio_jaxconv_over_stock": step_ms["jaxconv"] / step_ms["stock"],
        "max_loss_difference": float(np.max(np.abs(np.subtract(ours["losses"], stock["losses"])))),
    }  # fmt: skip
    evidence.write_json(os.path.join(out, "results.json"), results)
    plot_losses(os.path.join(out, "digits_loss.png"), stock["losses"], ours["losses"])
    plot_kernels(os.path.join(out, "digits_kernels.png"), ours["conv1_kernel"], ours["conv1_bias"], data[2][0])

    print(f"{'':<10}{'test acc':>10}{'final loss':>12}{'step ms':>10}")
    for name, run in runs.items():
        print(f"{name:<10}{100 * run['test_accuracy']:>9.2f}%{run['losses'][-1]:>12.4f}{step_ms[name]:>10.3f}")
    print(f"accuracy difference {results['accuracy_difference_points']:+.2f} points; largest loss difference "
          f"{results['max_loss_difference']:.2e}; step time jaxconv / stock = "
          f"{results['step_time_ratio_jaxconv_over_stock']:.2f}x ({results['machine']})")  # fmt: skip
    print(f"wrote {out}")
    return 0


def plot_losses(path: str, stock: list[float], ours: list[float]) -> None:
    fig = evidence.figure(6, 3.5)
    ax = fig.subplots()
    ax.plot(np.arange(1, len(stock) + 1), stock, label="stock Flax (lax.conv_general_dilated)", lw=2.5, alpha=0.6)
    ax.plot(np.arange(1, len(ours) + 1), ours, label="conv_general_dilated=jaxconv.conv_general_dilated", lw=1)
    ax.set(xlabel="step", ylabel="training loss (cross-entropy)", yscale="log", title="digits CNN, same seed")
    ax.legend()
    evidence.save_figure(fig, path)


def plot_kernels(path: str, kernel: np.ndarray, bias: np.ndarray, digit: np.ndarray) -> None:
    """Each learned first-layer 3x3 kernel above its response map (ReLU of conv + bias) on one test digit."""
    responses = np.asarray(jax.nn.relu(jaxconv.conv2d(digit, kernel, bias, padding="SAME")))  # [8, 8, 8]
    channels = kernel.shape[-1]
    fig = evidence.figure(1.3 * (channels + 1), 3.0)
    axes = fig.subplots(2, channels + 1)
    axes[0, 0].imshow(digit[..., 0], cmap="gray_r")
    axes[0, 0].set_title("test digit", fontsize=8)
    axes[1, 0].axis("off")
    for c in range(channels):
        limit = np.abs(kernel[..., 0, c]).max()
        axes[0, c + 1].imshow(kernel[..., 0, c], cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[0, c + 1].set_title(f"kernel {c}", fontsize=8)
        axes[1, c + 1].imshow(responses[..., c], cmap="viridis")
        axes[1, c + 1].set_title("response", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    evidence.save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
