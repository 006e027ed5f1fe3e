"""The lab on real photographs: does the learned kernel find the whitened matched filter?

    python experiments/real_photos.py                          # a few minutes on a loaded 2-core CPU
    python experiments/real_photos.py --steps 200 --eval-images 250 --out runs/photos

PREDICTION (written before measuring). The background is a crop of a photograph, and natural images have most of
their power at low spatial frequencies (a power spectrum close to ``1/f^2``): neighbouring pixels are strongly
correlated. For a pattern added to Gaussian noise of covariance ``S`` the optimal linear detector is not the
pattern itself (the plain matched filter, optimal only in white noise) but the *whitened* matched filter
``S^-1 p``, which discounts the directions the background already fills — here the smooth, low-frequency ones —
and keeps the pattern's sharp detail. Training by gradient descent on the detection loss seeks the best linear
discriminant of the training draws, so the learned kernel should approach the whitened matched filter
(cosine to it close to 1, clearly above its cosine to the plain one), and its held-out AP should be close to the
whitened filter's and above the plain matched filter's. ``match_template`` (zero-normalised cross-correlation)
removes each window's mean and divides by its std: that undoes the brightness and contrast changes but does not
whiten, so it should land between the plain and the whitened filter. The zero-mean matched filter ``p - mean(p)``
(the template ``match_template`` correlates with, without its normalisation) is measured too: it removes only
the lowest frequency, the part of the whitening that brightness changes alone would ask for.

What is run. Photographs bundled in packages (nothing downloaded): the training task crops those of
``--train-photos``, the held-out task ``--held-out-photos`` (different photographs: held-out numbers never see a
training pixel), each the grey centre ``--photo-size`` square. Each image: a random crop, the pattern added at
random places with amplitude ``--amplitude``, then a random gain (``--contrast``) and offset (``--brightness``)
and white noise ``--noise-std``. The background's autocovariance is measured (by the Fourier transform: the
inverse transform of its power spectrum) on ``--spectrum-images`` training crops without patterns; the
whitened matched filter is built from it (``jaxconv.theory.whitened_matched_filter``) and each linear detector's
predicted d' under the Gaussian model (``jaxconv.theory.linear_snr``) is recorded beside its measured d' (the
gap between the mean score on planted windows and on the rest, in units of the rest's std), with AP, over
``--eval-images`` held-out images — and again on the same held-out scenes at a fixed exposure (gain 1, offset 0),
which separates what the exposure changes cost each detector from what the photographs do. The spectrum's
power-law exponent is measured too (``spectrum_slope``).

Writes ``results.json`` and ``real_photos.png`` (the four kernels, a held-out image and the detectors' maps)
under ``--out`` (default ``experiments/results/real_photos``). Needs the ``images`` and ``interop`` extras.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import jax
import numpy as np

import jaxconv
from jaxconv import evidence, theory
from jaxconv.lab import average_precision, held_out_scores, kernel_cosine, stream


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pattern", default="ring", help="a name from jaxconv.lab.PATTERNS (ring)")
    parser.add_argument(
        "--train-photos", nargs="+", default=["camera", "astronaut", "coffee", "china", "motorcycle_left"]
    )
    parser.add_argument("--held-out-photos", nargs="+", default=["chelsea", "rocket", "flower"])
    parser.add_argument("--photo-size", type=int, default=288)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--amplitude", type=float, default=0.3)
    parser.add_argument("--noise-std", type=float, default=0.02)
    parser.add_argument("--contrast", type=float, nargs=2, default=[0.5, 1.5])
    parser.add_argument("--brightness", type=float, nargs=2, default=[-0.2, 0.2])
    parser.add_argument("--steps", type=int, default=1000, help="training steps (learning rate decayed over them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spectrum-images", type=int, default=500)
    parser.add_argument("--eval-images", type=int, default=1000, help="held-out images, a multiple of 250")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "real_photos"))
    return parser.parse_args(argv)


def scores(detector: dict, task: jaxconv.PlantedPatternTask, chunks: int) -> tuple[np.ndarray, ...]:
    """Held-out images, logits and targets of ``detector`` over ``chunks`` chunks of 250 images."""
    parts = [held_out_scores(detector, task, num_images=250, seed=0, chunk=c) for c in range(chunks)]
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def judged(z: np.ndarray, t: np.ndarray) -> dict[str, float]:
    positive = t > 0.5
    rest = z[~positive]
    return {
        "average_precision": average_precision(z, t),
        "measured_d_prime": float((z[positive].mean() - rest.mean()) / rest.std()),
    }


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    evidence.prepare_out(args.out)
    start = time.perf_counter()
    shape = (args.photo_size, args.photo_size)
    task = jaxconv.PlantedPatternTask(
        args.pattern, image_shape=args.image_size, background="photo", amplitude=args.amplitude,
        noise_std=args.noise_std, contrast=tuple(args.contrast), brightness=tuple(args.brightness),
        photos=evidence.bundled_photos(args.train_photos, shape),
    )  # fmt: skip
    held_out = dataclasses.replace(task, photos=evidence.bundled_photos(args.held_out_photos, shape))
    p = task.pattern_array

    backgrounds = dataclasses.replace(task, instances=0).sample(stream(args.seed, "experiment"), args.spectrum_images)
    autocov = theory.autocovariance(backgrounds.images, p.shape)
    slope = theory.spectrum_slope(backgrounds.images)

    result = jaxconv.fit(task, steps=args.steps, decay_steps=args.steps, seed=args.seed, eval_images=0)
    learned = np.asarray(result.params["kernel"][:, :, 0, 0])
    whitened = theory.whitened_matched_filter(p, autocov)
    maps: dict = {}
    kernels = {"learned": learned, "matched_filter": p, "zero_mean_matched_filter": p - p.mean(),
               "whitened_matched_filter": whitened}  # fmt: skip

    # The same detectors on the held-out photographs at a fixed exposure (gain 1, offset 0): what is left of
    # match_template's lead there is owed to the photographs themselves, not to the exposure changes.
    conditions = {"held_out": held_out, "fixed_exposure": dataclasses.replace(held_out, contrast=1.0, brightness=0.0)}
    chunks = max(1, args.eval_images // 250)
    detectors: dict = {name: {} for name in [*kernels, "match_template"]}
    for condition, held in conditions.items():
        for name, kernel in kernels.items():
            params = {"kernel": np.asarray(kernel, np.float32)[:, :, None, None], "bias": np.zeros(1, np.float32)}
            images, z, t = scores(params, held, chunks)
            detectors[name][condition] = judged(z, t)
            if condition == "held_out":
                maps[name] = z[0]
        ncc = np.asarray(jaxconv.match_template(images[..., 0], p))
        detectors["match_template"][condition] = judged(ncc, t)
        if condition == "held_out":
            maps["match_template"], example = ncc[0], (images[0, :, :, 0], t[0])
    for name, kernel in kernels.items():
        detectors[name]["predicted_d_prime"] = args.amplitude * theory.linear_snr(kernel, p, autocov)
        detectors[name]["kernel"] = np.asarray(kernel).tolist()

    pairs = [("learned", name) for name in kernels if name != "learned"]
    pairs += [(name, "whitened_matched_filter") for name in ("matched_filter", "zero_mean_matched_filter")]
    cosines = {
        f"{a}_vs_{b}": {"plain": cosine(kernels[a], kernels[b]), "mean_removed": kernel_cosine(kernels[a], kernels[b])}
        for a, b in pairs
    }
    results = {
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": f"2-core AMD EPYC CPU (shared with other jobs), no GPU; jax {jax.__version__}",
        "task": task.to_dict(),
        "held_out_photos_sha256": held_out.photos.digest,
        "spectrum_slope": slope,
        "autocovariance": autocov.tolist(),
        "detectors": detectors,
        "cosines": cosines,
        "training_steps": len(result.history),
        "final_loss": result.history[-1]["loss"],
        "wall_s": round(time.perf_counter() - start, 1),
    }
    evidence.write_json(os.path.join(args.out, "results.json"), results)
    figure(os.path.join(args.out, "real_photos.png"), kernels, *example, maps)
    for name, d in detectors.items():
        line = "  ".join(
            f"{c}: AP {d[c]['average_precision']:.3f} d' {d[c]['measured_d_prime']:.2f}" for c in conditions
        )
        print(f"{name:26s} {line}")
    for name, c in cosines.items():
        print(f"{name:45s} cos {c['plain']:.3f} (mean removed {c['mean_removed']:.3f})")
    return 0


def figure(path: str, kernels: dict, image: np.ndarray, targets: np.ndarray, maps: dict) -> None:
    """Top: the kernels; bottom: a held-out image (planted copies circled) and each detector's map on it."""
    columns = len(maps) + 1
    fig = evidence.figure(3 * columns, 6)
    for i, (name, kernel) in enumerate(kernels.items()):
        evidence.show_kernel(fig.add_subplot(2, columns, i + 1), np.asarray(kernel), name.replace("_", " "))
    ax = fig.add_subplot(2, columns, columns + 1)
    ax.imshow(image, cmap="gray")
    rows, cols = np.nonzero(targets > 0.5)
    ax.scatter(cols + 1, rows + 1, s=120, facecolors="none", edgecolors="red")
    ax.set_title("held-out image", fontsize=10)
    for i, (name, m) in enumerate(maps.items()):
        ax = fig.add_subplot(2, columns, columns + 2 + i)
        ax.imshow(m, cmap="magma")
        ax.set_title(name.replace("_", " "), fontsize=10)
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    evidence.save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
