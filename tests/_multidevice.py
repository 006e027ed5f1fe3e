"""Runs a script in a fresh Python whose JAX sees ``devices`` forced CPU devices.

The device count is fixed when JAX starts, so multi-device tests run their checks in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence


def run_on_cpu_devices(
    args: Sequence[str], devices: int = 8, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``python *args`` with ``devices`` CPU devices; returns the finished process (text output captured)."""
    child_env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices), **(env or {})}
    return subprocess.run(
        [sys.executable, *args], env=child_env, capture_output=True, text=True, timeout=timeout, check=False
    )


class Checks:
    """Named checks in a multi-device child: prints ``ok NAME`` or ``FAIL NAME`` with its traceback, and counts."""

    def __init__(self) -> None:
        self.failures = 0

    def __call__(self, name: str, fn: Callable[[], object]) -> None:
        try:
            fn()
            print(f"ok   {name}")
        except Exception:  # report every check, not only the first failure
            self.failures += 1
            print(f"FAIL {name}\n{traceback.format_exc()}")
