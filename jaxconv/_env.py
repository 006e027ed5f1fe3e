"""The versions that decide a run's numbers, gathered in one place for checkpoints, run directories and benches."""

from __future__ import annotations

import importlib.metadata
import platform


def versions() -> dict[str, str]:
    """The installed versions of jaxconv, jax, jaxlib, optax and numpy, and Python's (``"absent"`` if missing).

    Examples:
      >>> from jaxconv._env import versions
      >>> sorted(versions())
      ['jax', 'jaxconv', 'jaxlib', 'numpy', 'optax', 'python']
    """
    out = {}
    for name in ("jaxconv", "jax", "jaxlib", "optax", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    out["python"] = platform.python_version()
    return out


__all__ = ["versions"]
