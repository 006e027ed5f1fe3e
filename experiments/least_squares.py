"""The exact least-squares kernel as an oracle: gradient descent on the squared error converges to it.

    python experiments/least_squares.py                      # about 6 s on a 2-core CPU
    python experiments/least_squares.py --train-images 50 --steps 500 --out runs/ls

A regression-style target: the 0/1 target map itself (1 where the pattern's top-left corner is). The response is
linear in the kernel, so the kernel+bias with the least mean squared error on a training set has a closed form
(:func:`jaxconv.lab.least_squares_kernel`: the patch matrix ``[N * Ho * Wo, KH * KW]`` plus a ones column, then
``lstsq``). A kernel trained from random weights by full-batch gradient descent (optax Adam) on the same images
and the same MSE is compared with it along the way: its distance to the oracle, its training MSE, and at the end
both kernels' MSE on held-out images (and the matched filter's cosine to each).

Writes ``results.json``, ``least_squares_kernels.png`` and ``least_squares_convergence.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import typing
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxconv
from jaxconv import evidence


def mse(params: dict, images: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.mean((jaxconv.logit_map(params, images) - targets) ** 2)


def train(init: dict, images: jax.Array, targets: jax.Array, oracle: dict, steps: int, lr: float) -> tuple:
    """Full-batch Adam on the MSE; per step the training MSE and the distance of (kernel, bias) to the oracle."""
    optimizer = optax.adam(lr)
    flat_oracle = jnp.concatenate([oracle["kernel"].ravel(), oracle["bias"]])

    def step(carry: tuple, _: None) -> tuple:
        params, opt_state = carry
        loss, grads = jax.value_and_grad(mse)(params, images, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        distance = jnp.linalg.norm(jnp.concatenate([params["kernel"].ravel(), params["bias"]]) - flat_oracle)
        return (params, opt_state), (loss, distance)

    run = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), None, length=steps))
    (params, _), (losses, distances) = run(init)
    return params, np.asarray(losses), np.asarray(distances)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="seed", choices=list(jaxconv.lab.PATTERNS))
    parser.add_argument("--background", default="binary", choices=typing.get_args(jaxconv.lab.Background))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=200)
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--steps", type=int, default=2000, help="full-batch gradient-descent steps")
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output directory (default runs/least_squares-<timestamp>)")
    args = parser.parse_args(argv)
    try:
        out = evidence.prepare_out(args.out or evidence.default_out("least_squares"))
    except ValueError as err:
        parser.error(str(err))

    task = jaxconv.PlantedPatternTask(args.pattern, image_shape=(args.image_size, args.image_size),
                                      background=args.background)  # fmt: skip
    kernel_shape = task.pattern_array.shape
    key_train, key_test, key_init = jax.random.split(jax.random.key(args.seed), 3)
    train_set, test_set = task.sample(key_train, args.train_images), task.sample(key_test, args.test_images)

    start = time.perf_counter()
    oracle = jaxconv.lab.least_squares_kernel(train_set.images, train_set.targets, kernel_shape)
    oracle["kernel"].block_until_ready()
    solve_s = time.perf_counter() - start
    init = jaxconv.init_params(key_init, kernel_shape)
    start = time.perf_counter()
    trained, losses, distances = train(init, train_set.images, train_set.targets, oracle, args.steps,
                                       args.learning_rate)  # fmt: skip
    train_s = time.perf_counter() - start
    oracle_norm = float(jnp.linalg.norm(jnp.concatenate([oracle["kernel"].ravel(), oracle["bias"]])))
    zero = {"kernel": jnp.zeros_like(oracle["kernel"]), "bias": jnp.full((1,), float(train_set.targets.mean()))}

    def row(params: dict) -> dict:
        return {
            "kernel": np.asarray(params["kernel"])[:, :, 0, 0].tolist(),
            "bias": float(params["bias"][0]),
            "train_mse": float(mse(params, train_set.images, train_set.targets)),
            "test_mse": float(mse(params, test_set.images, test_set.targets)),
            "kernel_cosine_to_pattern": jaxconv.lab.kernel_cosine(params["kernel"], task.pattern_array),
        }

    results: dict[str, Any] = {
        "config": {**vars(args), "out": out, "task": task.to_dict()},
        "least_squares": {**row(oracle), "solve_s": solve_s},
        "gradient_descent": {
            **row(trained),
            "train_s": train_s,
            "final_distance_to_oracle": float(distances[-1]),
            "final_relative_distance": float(distances[-1]) / oracle_norm,
        },  # fmt: skip
        "constant_predictor": row(zero),
        "curve": [
            {"step": int(s) + 1, "train_mse": float(losses[s]), "distance_to_oracle": float(distances[s])}
            for s in np.unique(np.geomspace(1, args.steps, 60).astype(int) - 1)
        ],  # fmt: skip
    }
    evidence.write_json(os.path.join(out, "results.json"), results)
    plot_kernels(os.path.join(out, "least_squares_kernels.png"), task, oracle, trained, results)
    plot_convergence(os.path.join(out, "least_squares_convergence.png"), losses, distances, results)

    print(f"target: the 0/1 target map, {args.train_images} training images ({train_set.targets.size} positions), "
          f"{args.test_images} held-out images")  # fmt: skip
    print(f"{'':<20}{'train MSE':>12}{'test MSE':>12}{'cos(pattern)':>14}{'bias':>9}")
    for name in ("least_squares", "gradient_descent", "constant_predictor"):
        r = results[name]
        print(f"{name:<20}{r['train_mse']:>12.6f}{r['test_mse']:>12.6f}{r['kernel_cosine_to_pattern']:>14.4f}"
              f"{r['bias']:>9.4f}")  # fmt: skip
    gd = results["gradient_descent"]
    print(
        f"gradient descent after {args.steps} steps: distance to the oracle {gd['final_distance_to_oracle']:.2e} "
        f"({gd['final_relative_distance']:.2e} relative); lstsq {solve_s:.2f} s, descent {train_s:.2f} s"
    )
    print(f"wrote {out}")
    return 0


def plot_kernels(path: str, task: jaxconv.PlantedPatternTask, oracle: dict, trained: dict, results: dict) -> None:
    fig = evidence.figure(10, 3.0)
    axes = fig.subplots(1, 3)
    for ax, (name, params, key) in zip(axes, [("least squares (exact)", oracle, "least_squares"),
                                              ("gradient descent", trained, "gradient_descent"),
                                              ("matched filter", jaxconv.matched_filter(task), None)],
                                       strict=True):  # fmt: skip
        title = f"{name}\nbias {float(params['bias'][0]):.3f}"
        if key:
            title += f", test MSE {results[key]['test_mse']:.5f}"
        evidence.show_kernel(ax, np.asarray(params["kernel"])[:, :, 0, 0], title)
    evidence.save_figure(fig, path)


def plot_convergence(path: str, losses: np.ndarray, distances: np.ndarray, results: dict) -> None:
    fig = evidence.figure(11, 3.6)
    left, right = fig.subplots(1, 2)
    steps = np.arange(1, len(losses) + 1)
    left.loglog(steps, losses - results["least_squares"]["train_mse"] + 1e-12, color="tab:blue")
    left.set_xlabel("step")
    left.set_ylabel("train MSE - least-squares MSE")
    left.set_title("excess training MSE of gradient descent (float32 floor below 1e-8)", fontsize=9)
    right.loglog(steps, distances, color="tab:red")
    right.set_xlabel("step")
    right.set_ylabel("|(kernel, bias) - oracle|")
    right.set_title("distance to the least-squares solution")
    evidence.save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
