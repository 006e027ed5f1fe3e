"""False-alarm audit: what do the detectors find in images that hold no planted pattern at all?

    python experiments/false_alarms.py                       # about 20 s on a 2-core CPU
    python experiments/false_alarms.py --images 500 --snr-db 10 --out runs/fa

Trains a detector on the usual task (planted copies), then runs it and the matched filter on pure background
(``instances=0``) and counts detections (logit > 0) per image and per megapixel.

1. Binary background: random 0/1 pixels contain the pattern by accident (about ``density^k (1-density)^(n-k)`` per
   window). Every detection should be such an exact occurrence: each detection's window is compared with the pattern
   pixel by pixel (from :func:`jaxconv.lab.patches`) and with the targets (which mark every exact occurrence), so
   "false alarms" = detections that are not exact occurrences (expected 0), "misses" = occurrences not detected.
2. Gaussian background: white noise, so every detection is a false alarm. A linear detector's score on white noise is
   exactly ``N(b, s^2 |k|^2)`` per window, so its false-alarm rate at logit > 0 is ``Q(-b / (s |k|))``; for the
   matched filter that is ``Q(t*)`` with ``t* = d'/2 + log((1 - pi)/pi) / d'`` (see :mod:`jaxconv.lab._theory`). The
   measured rate is compared with that prediction for both detectors.

Writes ``results.json`` and ``false_alarms.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxconv
from jaxconv import evidence


def _q(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def sample_noise(task: jaxconv.PlantedPatternTask, key: jax.Array, num_images: int, chunk: int = 250) -> tuple:
    """``num_images`` pure-background images of ``task``'s kind, with their target maps, as NumPy arrays."""
    background = jaxconv.PlantedPatternTask(task.pattern, image_shape=task.image_shape, instances=0,
                                            background=task.background, density=task.density,
                                            noise_std=task.noise_std, amplitude=task.amplitude)  # fmt: skip
    images, targets = [], []
    for i in range(-(-num_images // chunk)):
        batch = background.sample(jax.random.fold_in(key, i), chunk)
        images.append(np.asarray(batch.images))
        targets.append(np.asarray(batch.targets))
    return np.concatenate(images)[:num_images], np.concatenate(targets)[:num_images]


def logits_of(params: dict, images: np.ndarray, chunk: int = 250) -> np.ndarray:
    return np.concatenate([np.asarray(jaxconv.logit_map(params, images[i : i + chunk]))
                           for i in range(0, len(images), chunk)])  # fmt: skip


def exact_matches(images: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """``[N, Ho, Wo]``: the window at each position equals the pattern exactly (from :func:`jaxconv.lab.patches`)."""
    windows = jax.vmap(lambda im: jaxconv.lab.patches(im, pattern.shape))(jnp.asarray(images[..., 0]))
    return np.all(np.asarray(windows) == pattern, axis=(-2, -1))


def binary_audit(task: jaxconv.PlantedPatternTask, detectors: dict, key: jax.Array, num_images: int) -> tuple:
    images, targets = sample_noise(task, key, num_images)
    exact = exact_matches(images, task.pattern_array)
    p = task.pattern_array
    per_window = task.density ** float(p.sum()) * (1 - task.density) ** float(p.size - p.sum())
    ho, wo = task.output_shape
    megapixels = num_images * task.image_shape[0] * task.image_shape[1] / 1e6
    results = {
        "images": num_images,
        "megapixels": megapixels,
        "targets_equal_exact_matches": bool(np.array_equal(targets > 0.5, exact)),
        "exact_occurrences": int(exact.sum()),
        "exact_occurrences_per_image": float(exact.sum() / num_images),
        "expected_occurrences_per_image": per_window * ho * wo,
        "detectors": {},
    }
    logits = {}
    for name, params in detectors.items():
        z = logits_of(params, images)
        logits[name] = z
        detected = z > 0
        results["detectors"][name] = {
            "detections": int(detected.sum()),
            "detections_per_image": float(detected.sum() / num_images),
            "detections_per_megapixel": float(detected.sum() / megapixels),
            "false_alarms": int((detected & (targets < 0.5)).sum()),
            "false_alarms_not_exact": int((detected & ~exact).sum()),
            "missed_occurrences": int((~detected & exact).sum()),
            "max_logit_off_pattern": float(z[~exact].max()),
            "min_logit_on_pattern": float(z[exact].min()) if exact.any() else None,
        }
    return results, images[0, :, :, 0], {k: v[0] for k, v in logits.items()}, exact[0]


def gaussian_audit(task: jaxconv.PlantedPatternTask, detectors: dict, key: jax.Array, num_images: int) -> tuple:
    images, targets = sample_noise(task, key, num_images)
    ho, wo = task.output_shape
    windows = num_images * ho * wo
    megapixels = num_images * task.image_shape[0] * task.image_shape[1] / 1e6
    results = {
        "images": num_images,
        "megapixels": megapixels,
        "windows": windows,
        "targets_all_zero": bool((targets == 0).all()),
        "d_prime": jaxconv.theory.d_prime(task),
        "snr_db": jaxconv.theory.snr_db(task),
        "prevalence": jaxconv.theory.positive_prevalence(task),
        "detectors": {},
    }
    d, prior = results["d_prime"], results["prevalence"]
    results["matched_filter_threshold_t_star"] = d / 2 + math.log((1 - prior) / prior) / d
    logits = {}
    for name, params in detectors.items():
        z = logits_of(params, images)
        logits[name] = z
        kernel = np.asarray(params["kernel"], np.float64).ravel()
        bias = float(np.asarray(params["bias"])[0])
        predicted = _q(-bias / (task.noise_std * float(np.linalg.norm(kernel))))
        count = int((z > 0).sum())
        rate = count / windows
        results["detectors"][name] = {
            "false_alarms": count,
            "false_alarms_per_image": count / num_images,
            "false_alarms_per_megapixel": count / megapixels,
            "false_alarm_rate_per_window": rate,
            "predicted_rate_per_window": predicted,
            "predicted_per_image": predicted * ho * wo,
            # a binomial standard error on the count, for judging the gap
            "count_std_predicted": math.sqrt(windows * predicted * (1 - predicted)),
            "logit_mean": float(z.mean()),
            "logit_std": float(z.std()),
        }
    return results, images[0, :, :, 0], {k: v[0] for k, v in logits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="seed", choices=list(jaxconv.lab.PATTERNS))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=400, help="training steps for each learned detector")
    parser.add_argument("--images", type=int, default=2000, help="pure-noise images per background")
    parser.add_argument("--snr-db", type=float, default=14.0, help="the gaussian training task's SNR")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output directory (default runs/false_alarms-<timestamp>)")
    args = parser.parse_args(argv)
    try:
        out = evidence.prepare_out(args.out or evidence.default_out("false_alarms"))
    except ValueError as err:
        parser.error(str(err))

    shape = (args.image_size, args.image_size)
    key_binary, key_gaussian = jax.random.split(jaxconv.lab.stream(args.seed, "experiment"))
    binary = jaxconv.PlantedPatternTask(args.pattern, image_shape=shape)
    unit = jaxconv.PlantedPatternTask(args.pattern, image_shape=shape, background="gaussian")
    gaussian = jaxconv.PlantedPatternTask(args.pattern, image_shape=shape, background="gaussian",
                                          amplitude=jaxconv.theory.amplitude_for_snr_db(unit, args.snr_db))  # fmt: skip
    shown = {}
    runs = {}
    for name, task, key in [("binary", binary, key_binary), ("gaussian", gaussian, key_gaussian)]:
        fitted = jaxconv.fit(task, steps=args.steps, seed=args.seed, eval_images=500)
        detectors = {"learned": fitted.params, "matched filter": jaxconv.matched_filter(task)}
        if name == "binary":
            result, image, logits, exact = binary_audit(task, detectors, key, args.images)
            shown[name] = (image, logits, exact)
        else:
            result, image, logits = gaussian_audit(task, detectors, key, args.images)
            shown[name] = (image, logits, None)
        result["learned_on_planted_task"] = {k: fitted.metrics[k] for k in ("f1", "average_precision",
                                                                             "kernel_cosine")}  # fmt: skip
        runs[name] = result
    results = {"config": {**vars(args), "out": out, "tasks": {"binary": binary.to_dict(),
                                                              "gaussian": gaussian.to_dict()}}, **runs}  # fmt: skip
    evidence.write_json(os.path.join(out, "results.json"), results)
    plot(os.path.join(out, "false_alarms.png"), shown, runs)

    b = runs["binary"]
    print(f"binary background, {b['images']} pure-noise images ({b['megapixels']:.2f} Mpx): "
          f"{b['exact_occurrences_per_image']:.2f} accidental exact occurrences per image "
          f"(expected {b['expected_occurrences_per_image']:.2f}); targets == exact matches: "
          f"{b['targets_equal_exact_matches']}")  # fmt: skip
    for name, r in b["detectors"].items():
        print(f"  {name:<15} {r['detections_per_image']:.2f} detections/image ({r['detections_per_megapixel']:.0f}/Mpx)"
              f", false alarms {r['false_alarms']} (not exact: {r['false_alarms_not_exact']}), "
              f"missed occurrences {r['missed_occurrences']}")  # fmt: skip
    g = runs["gaussian"]
    print(f"gaussian background at {g['snr_db']:.1f} dB (d' {g['d_prime']:.2f}), {g['images']} pure-noise images, "
          f"{g['windows']} windows; every detection is a false alarm:")  # fmt: skip
    for name, r in g["detectors"].items():
        print(f"  {name:<15} {r['false_alarms']} false alarms = {r['false_alarms_per_image']:.3f}/image "
              f"({r['false_alarms_per_megapixel']:.0f}/Mpx), rate {r['false_alarm_rate_per_window']:.2e} per window; "
              f"predicted {r['predicted_rate_per_window']:.2e} "
              f"({r['predicted_rate_per_window'] * g['windows']:.0f} +- {r['count_std_predicted']:.0f})")  # fmt: skip
    print(f"wrote {out}")
    return 0


def plot(path: str, shown: dict, runs: dict) -> None:
    fig = evidence.figure(12, 6.6)
    axes = fig.subplots(2, 3)
    for row, name in enumerate(("binary", "gaussian")):
        image, logits, exact = shown[name]
        axes[row, 0].imshow(image, cmap="gray_r", interpolation="nearest")
        axes[row, 0].set_title(f"{name} background, no planted copy", fontsize=9)
        for ax, (det, z) in zip(axes[row, 1:], logits.items(), strict=True):
            limit = float(np.abs(z).max()) or 1.0
            ax.imshow(z, cmap="RdBu_r", vmin=-limit, vmax=limit)
            ii, jj = np.nonzero(z > 0)
            ax.scatter(jj, ii, s=40, facecolors="none", edgecolors="lime", linewidths=1.5, label="logit > 0")
            if exact is not None:
                ei, ej = np.nonzero(exact)
                ax.scatter(ej, ei, s=8, color="black", marker="x", label="exact occurrence")
            r = runs[name]["detectors"][det]
            if name == "binary":
                stats = f"{r['detections_per_image']:.2f} det/image, {r['false_alarms']} false alarms"
            else:
                stats = (f"{r['false_alarms_per_image']:.3f} FA/image "
                         f"(predicted {r['predicted_per_image']:.3f})")  # fmt: skip
            ax.set_title(f"{det}: logits\n{stats}", fontsize=9)
            ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("detections on pure noise (first image; counts over all images)")
    evidence.save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
