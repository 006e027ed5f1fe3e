"""Smoke test: ``experiments/scaling.py`` on tiny images and 2 forced CPU devices writes its JSON and PNG."""

from __future__ import annotations

import json
from pathlib import Path

from _multidevice import run_on_cpu_devices

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "scaling.py"


def test_scaling_writes_json_and_png(tmp_path):
    args = ["--out", str(tmp_path), "--sizes", "16", "32", "--big", "48", "--device-size", "32", "--tile", "16"]
    args += ["--kernel", "3", "--repeats", "1", "--device-budget-mp", "0.002"]
    result = run_on_cpu_devices([str(SCRIPT), *args], devices=2, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "scaling.json").read_text())
    assert report["device_count"] == 2 and "mean little" in report["note"]
    assert [row["side"] for row in report["by_size"]] == [16, 32, 48]
    assert [row["fits_one_device"] for row in report["by_size"]] == [True, True, False]
    assert "conv2d_1_device_seconds" not in report["by_size"][-1]  # the big image goes only out of core
    assert [row["devices"] for row in report["by_devices"]] == [1, 2]
    assert (tmp_path / "scaling.png").stat().st_size > 0
