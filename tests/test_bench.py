"""Smoke test of the benchmark harness on its quick grid (timings are not asserted: no timed tests)."""

import json

from jaxconv import cli


def test_bench_quick_writes_table_json_and_plot(tmp_path, capsys):
    assert cli.main(["bench", "--quick", "--reps", "1", "--warmup", "1", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "forward (ms)" in printed and "forward+backward (ms)" in printed
    assert "auto <= lax on every point" in printed
    result = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert result["environment"]["jax"]
    for record in result["records"]:
        for mode in ("fwd_ms", "fwd_bwd_ms"):
            assert {"auto", "window", "shift", "direct", "xla", "lax"} <= set(record[mode])
            assert all(ms > 0 for ms in record[mode].values())
        assert all(err < 1e-4 for err in record["max_abs_err"].values())
        assert record["temp_bytes"]["auto"]["fwd"] is None or record["temp_bytes"]["auto"]["fwd"] >= 0
