"""Evidence from a run: the learned-vs-matched-filter table, the run directory's files, and its figures.

Figures use matplotlib's object API (``matplotlib.figure.Figure``, rendered by Agg), imported only when a
figure is drawn: no pyplot, no global backend state, and ``import jaxconv`` stays light.
"""

from __future__ import annotations

import datetime
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxconv._checks import fail
from jaxconv._files import write_atomic
from jaxconv.lab._data import PlantedPatternTask
from jaxconv.lab._detector import Params, window_shape
from jaxconv.lab._metrics import held_out_scores

TABLE_COLUMNS = (("precision", "precision"), ("recall", "recall"), ("F1", "f1"), ("AP", "average_precision"))


def format_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """A fixed-width table of detectors (rows) by precision, recall, F1, AP and kernel cosine (``-`` for a
    detector with no one kernel: ``"local"``, ``"dense"``).

    Args:
      rows: ``{name: evaluate(...) dict}``.

    Returns:
      The table, one line per detector under a header line.

    Examples:
      >>> from jaxconv.evidence._report import format_table
      >>> metrics = {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "average_precision": 0.75, "kernel_cosine": 0.9}
      >>> print(format_table({"learned": metrics}))
      detector      precision   recall       F1       AP  kernel cos
      learned           1.000    0.500    0.667    0.750       0.900
    """
    head = f"{'detector':<14}" + "".join(f"{title:>9}" for title, _ in TABLE_COLUMNS) + f"{'kernel cos':>12}"
    lines = [head]
    for name, m in rows.items():
        cells = "".join(f"{m[key]:>9.3f}" for _, key in TABLE_COLUMNS)
        cosine = m["kernel_cosine"]
        lines.append(f"{name:<14}{cells}{'-' if cosine is None else f'{cosine:.3f}':>12}")
    return "\n".join(lines)


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as indented JSON (atomically: a temporary file, then a rename)."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_history(path: str, history: Iterable[Mapping[str, Any]]) -> None:
    """Writes one JSON object per line (``history.jsonl``)."""
    write_atomic(path, "".join(json.dumps(dict(h)) + "\n" for h in history))


def write_params(path: str, params: Params) -> None:
    """Writes the detector's arrays (``kernel`` and ``bias`` for a conv detector) to an ``.npz`` file."""
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {name: np.asarray(value) for name, value in params.items()}
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def default_out(name: str = "") -> str:
    """A fresh run directory name: ``runs/[NAME-]YYYYmmdd-HHMMSS`` (with ``-2``, ``-3``... if taken)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join("runs", f"{name}-{stamp}" if name else stamp)
    out, n = base, 1
    while os.path.exists(out):
        n += 1
        out = f"{base}-{n}"
    return out


def prepare_out(path: str) -> str:
    """Creates the run directory ``path`` and checks that it is writable.

    Raises:
      ValueError: naming ``--out``, when the directory cannot be created or written.
    """
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as err:
        raise fail(
            "prepare_out", "path", "a folder that can be created and written", f"{path} ({err.strerror or err})"
        ) from None
    return path


def figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` (object API, Agg, constrained layout) of ``width`` x ``height`` inches."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def save_figure(fig: Any, path: str) -> None:
    """Saves ``fig`` as PNG at ``path`` atomically (a temporary file, then a rename)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())


def show_kernel(ax: Any, kernel: np.ndarray, title: str) -> None:
    limit = float(np.abs(kernel).max()) or 1.0
    image = ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if kernel.size <= 64:
        for (i, j), v in np.ndenumerate(kernel):
            color = "white" if abs(v) > 0.6 * limit else "black"
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=9, color=color)
    ax.figure.colorbar(image, ax=ax, shrink=0.7)


def plot_kernels(path: str, task: PlantedPatternTask, learned: Params, baseline: Params, cosine: float) -> None:
    """Saves a PNG: the pattern, the learned kernel, and the matched filter, side by side."""
    fig = figure(10, 3.2)
    axes = fig.subplots(1, 3)
    pattern = task.pattern_array
    axes[0].imshow(pattern, cmap="gray_r", vmin=min(0.0, float(pattern.min())))
    axes[0].set_title("planted pattern (1 = black)", fontsize=10)
    if pattern.size <= 64:
        for (i, j), v in np.ndenumerate(pattern):
            ax_color = "white" if v > 0.5 * float(pattern.max()) else "black"
            axes[0].text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=9, color=ax_color)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    kernel = np.asarray(learned["kernel"])[:, :, 0, 0]
    show_kernel(axes[1], kernel, f"learned kernel (bias {float(learned['bias'][0]):.2f}, cos {cosine:.3f})")
    mf = np.asarray(baseline["kernel"])[:, :, 0, 0]
    show_kernel(axes[2], mf, f"matched filter (bias {float(baseline['bias'][0]):.2f})")
    save_figure(fig, path)


def plot_detections(path: str, task: PlantedPatternTask, params: Params, *, num_images: int = 6, seed: int = 0) -> None:
    """Saves a PNG of held-out images with the detector's hits (green), false alarms (red) and misses (orange)."""
    from matplotlib.patches import Rectangle

    images, logits, targets = held_out_scores(params, task, num_images=num_images, seed=seed)
    kh, kw = window_shape(params, task.image_shape)
    fig = figure(2.4 * num_images, 2.9)
    axes = np.atleast_1d(fig.subplots(1, num_images))
    for n, ax in enumerate(axes):
        ax.imshow(images[n, :, :, 0], cmap="gray_r", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        hit, truth = logits[n] > 0, targets[n] > 0.5
        counts = []
        for mask, color, label in (
            (hit & truth, "tab:green", "hit"),
            (hit & ~truth, "tab:red", "false"),
            (~hit & truth, "tab:orange", "missed"),
        ):
            for i, j in np.argwhere(mask):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), kw, kh, fill=False, edgecolor=color, linewidth=1.6))
            counts.append(f"{int(mask.sum())} {label}")
        ax.set_title(", ".join(counts), fontsize=8)
    fig.suptitle("held-out images: detections (logit > 0) in green, false alarms red, misses orange", fontsize=10)
    save_figure(fig, path)


def plot_history(path: str, history: Sequence[Mapping[str, Any]]) -> None:
    """Saves a PNG of the training loss per step (log scale) with a running mean."""
    steps = np.array([h["step"] for h in history])
    loss = np.array([h["loss"] for h in history], dtype=np.float64)
    fig = figure(6, 3.4)
    ax = fig.subplots()
    ax.plot(steps, loss, color="tab:blue", alpha=0.35, linewidth=0.8, label="loss per step")
    window = max(1, len(loss) // 50)
    if window > 1:
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color="tab:blue", linewidth=1.8, label=f"mean of {window}")
    if np.all(loss[np.isfinite(loss)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("training curve", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


__all__ = [
    "default_out",
    "prepare_out",
    "figure",
    "save_figure",
    "format_table",
    "write_json",
    "write_history",
    "write_params",
    "plot_kernels",
    "plot_detections",
    "plot_history",
]
