"""The benchmark harness: its statistics and floors on synthetic records (which must PASS, FAIL or be INVALID as
built), its FLOP count against a brute-force count, its random order, its flags, and a smoke run of each grid.
Timings are never asserted (no timed tests)."""

import dataclasses
import json
import math
import mmap
import platform
import random
import subprocess
import sys

import numpy as np
import pytest

from jaxconv import cli
from jaxconv.evidence import _bench
from jaxconv.evidence._bench import Point


def _noise(rng, n, scale=1.0, spread=0.05):
    return [scale * math.exp(rng.gauss(0.0, spread)) for _ in range(n)]


def _record(point, times, programs, auto_strategy="direct", seed=0, rounds=31, spread=0.05):
    """A record as ``bench_point`` writes it, with per-round samples ``time * lognormal noise`` per contender."""
    rng = random.Random(seed)
    samples = {mode: {name: _noise(rng, rounds, t, spread) for name, t in times[mode].items()} for mode in _bench.MODES}
    return {
        "point": dataclasses.asdict(point),
        "label": point.label,
        "flops": point.flops,
        "auto_strategy": auto_strategy,
        "ms": {mode: {n: float(np.median(s)) for n, s in samples[mode].items()} for mode in _bench.MODES},
        "samples_ms": samples,
        "program": programs,
        "failed": {},
    }


# Programs: auto == direct (same id), xla == lax, each pair distinct from the other.
PROGRAMS = {mode: {"auto": 0, "direct": 0, "xla": 1, "lax": 1, "torch": None} for mode in _bench.MODES}
FEW = Point(8, 32, 32, 1, 8, 3)
HEAVY = Point(8, 32, 32, 64, 64, 3)
DEPTHWISE = Point(8, 32, 32, 32, 32, 3, groups=32)
FIRST = Point(16, 64, 64, 3, 32, 3)


def _times(auto, lax, torch, direct=None, xla=None):
    return {
        mode: {"auto": auto[i], "direct": direct[i] if direct else auto[i], "xla": xla[i] if xla else lax[i],
               "lax": lax[i], "torch": torch[i]}
        for i, mode in enumerate(_bench.MODES)
    }  # fmt: skip


def _floor(results, prefix):
    (hit,) = [(passed, detail) for name, passed, detail in results if name.startswith(prefix)]
    return hit


def test_good_run_is_valid_and_passes_every_floor():
    peak = 100.0
    heavy_ms = HEAVY.flops / (0.9 * peak * 1e9) * 1e3  # auto at 90% of the peak
    records = [
        _record(FEW, _times((1.0, 3.0), (2.0, 4.0), (2.0, 5.0)), PROGRAMS, seed=1),
        _record(HEAVY, _times((heavy_ms, 9.0), (heavy_ms * 1.2, 10.0), (heavy_ms * 2, 20.0)), PROGRAMS, seed=2),
        _record(DEPTHWISE, _times((1.0, 3.0), (5.0, 9.0), (1.5, 2.5)), PROGRAMS, seed=3),
    ]
    verdict, checks = _bench.validity(records)
    assert verdict == "VALID", checks
    assert len(checks) == 12  # per point and mode: auto/direct and xla/lax
    results = _bench.floors(records, peak)
    assert all(passed for _, passed, _ in results), results
    names = [name for name, _, _ in results]
    assert sum(n.startswith("auto <= lax") for n in names) == 2
    assert sum(n.startswith("geomean auto/torch") for n in names) == 2
    assert any("depthwise" in n for n in names) and any("matmul peak" in n for n in names)


def test_identical_programs_that_time_apart_make_the_run_invalid():
    # auto and direct are one program, but auto was timed 1.3x slower in every round: an ordering/load artefact.
    records = [_record(FEW, _times((1.3, 3.0), (2.0, 4.0), (2.0, 5.0), direct=(1.0, 3.0)), PROGRAMS)]
    verdict, checks = _bench.validity(records)
    assert verdict == "INVALID"
    bad = [c for c in checks if not c["agree"]]
    assert [(c["mode"], c["pair"]) for c in bad] == [("fwd", ["auto", "direct"])]
    assert bad[0]["interval"][0] > 1.0


def test_different_programs_may_differ_without_invalidating():
    programs = {mode: {"auto": 0, "direct": 1, "xla": 2, "lax": 3} for mode in _bench.MODES}
    records = [_record(FEW, _times((1.3, 3.0), (2.0, 4.0), (2.0, 5.0), direct=(1.0, 3.0), xla=(3, 6)), programs)]
    verdict, checks = _bench.validity(records)
    assert checks == [] and verdict == "UNDETERMINED"  # nothing to check the noise with


def test_too_few_rounds_is_undetermined_not_valid():
    records = [_record(FEW, _times((1.0, 3.0), (2.0, 4.0), (2.0, 5.0)), PROGRAMS, rounds=4)]
    verdict, checks = _bench.validity(records)
    assert verdict == "UNDETERMINED" and all(c["agree"] is None for c in checks)
    assert _bench.rounds_needed(checks[0]["confidence"]) > 4


def test_auto_slower_than_lax_fails_strictly():
    records = [_record(FEW, _times((1.0, 4.2), (2.0, 4.0), (2.0, 9.0)), PROGRAMS, spread=0.01)]
    passed, detail = _floor(_bench.floors(records, 100.0), "auto <= lax on every point (fwd_bwd)")
    assert not passed and FEW.label in detail and "1.05x" in detail
    assert _floor(_bench.floors(records, 100.0), "auto <= lax on every point (fwd)")[0]


def test_auto_identical_to_lax_is_judged_by_validity_not_the_strict_floor():
    programs = {mode: {"auto": 1, "direct": 0, "xla": 1, "lax": 1} for mode in _bench.MODES}
    noisy = _times((2.02, 4.04), (2.0, 4.0), (2.0, 5.0), xla=(2.01, 4.0))
    records = [_record(FEW, noisy, programs, auto_strategy="xla", seed=5)]
    passed, detail = _floor(_bench.floors(records, 100.0), "auto <= lax on every point (fwd)")
    assert passed and "identical program as lax" in detail
    assert _bench.validity(records)[0] == "VALID"


def test_geomean_depthwise_and_peak_floors_fail_when_they_should():
    peak = 100.0
    heavy_ms = HEAVY.flops / (0.6 * peak * 1e9) * 1e3  # 60% of the peak
    records = [
        _record(FEW, _times((1.0, 3.0), (2.0, 4.0), (1.2, 3.3)), PROGRAMS, seed=1),  # 0.83 / 0.91 of torch
        _record(HEAVY, _times((heavy_ms, 9.0), (heavy_ms, 10.0), (heavy_ms, 10.0)), PROGRAMS, seed=2),
        _record(DEPTHWISE, _times((1.0, 4.0), (5.0, 9.0), (1.5, 2.5)), PROGRAMS, seed=3),  # 1.6x torch
    ]
    results = _bench.floors(records, peak)
    assert not _floor(results, "geomean auto/torch <= 0.8 (fwd_bwd")[0]
    passed, detail = _floor(results, f"{DEPTHWISE.label}: depthwise")
    assert not passed and abs(float(detail) - 1.6) < 0.05
    passed, detail = _floor(results, f"{HEAVY.label}: auto fwd >= 70%")
    assert not passed and abs(float(detail.rstrip("%")) - 60) < 3


def test_first_layer_floor_holds_each_point_and_mode_to_its_own_ratio():
    assert FIRST.first_layer and not FEW.first_layer and not HEAVY.first_layer and not DEPTHWISE.first_layer
    stem = Point(2, 32, 32, 3, 64, 7, stride=2)
    records = [
        _record(FIRST, _times((1.1, 3.0), (2.0, 4.0), (1.0, 2.0)), PROGRAMS, seed=1),  # 1.1x torch fwd, 1.5x fwd_bwd
        _record(stem, _times((1.0, 3.0), (2.0, 4.0), (3.0, 9.0)), PROGRAMS, seed=2),  # far ahead: the geomean passes
    ]
    results = _bench.floors(records, 100.0)
    assert _floor(results, f"{FIRST.label}: first layer auto/torch <= 1.2 (fwd)")[0]
    passed, detail = _floor(results, f"{FIRST.label}: first layer auto/torch <= 1.2 (fwd_bwd)")
    assert not passed and abs(float(detail) - 1.5) < 0.05
    assert _floor(results, "geomean auto/torch <= 0.8 (fwd_bwd")[0]
    assert all(_floor(results, f"{stem.label}: first layer auto/torch <= 1.2 ({m})")[0] for m in _bench.MODES)


@pytest.mark.parametrize("warm_s", [0.0, 0.030])
def test_warm_calls_outlast_threads_the_previous_contender_left_spinning(monkeypatch, warm_s):
    clock = [0.0]  # a fake clock, so that what a sample sees is exact
    monkeypatch.setattr(_bench.time, "perf_counter", lambda: clock[0])
    spinning_until = [0.0]

    def spinner():  # like an OpenMP team: its threads stay busy for 9.5 ms after the call returns
        clock[0] += 0.001
        spinning_until[0] = clock[0] + 0.0095

    def other():  # 1 ms alone, 5 ms while the spinner's threads take its cores
        clock[0] += 0.005 if clock[0] < spinning_until[0] else 0.001

    fns = {"spinner": spinner, "other": other}
    after: dict[str, list[str | None]] = {}
    opts = dict(warmup=1, rounds=8, rng=random.Random(0), block=3, warm_s=warm_s, after=after)
    samples = _bench.interleaved(fns, **opts)
    assert {len(a) for a in after.values()} == {8} and "spinner" in after["other"]
    bias = _bench.after_neighbour(samples, after, "spinner")
    if warm_s:  # the timed calls begin 30 ms into the block: the spinning has stopped
        assert samples["other"] == pytest.approx([1.0] * 8) and bias == {"other": pytest.approx(1.0)}
    else:  # timed from the second call: right after the spinner, 5 ms and 1 ms, their median 3
        assert max(samples["other"]) == pytest.approx(3.0) and bias["other"] == pytest.approx(3.0)


def test_warm_calls_are_untimed_and_last_at_least_warm_s(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(_bench.time, "perf_counter", lambda: clock[0])
    calls = [0]

    def thunk():  # the first call of the run 8 ms, every later one 2 ms
        clock[0] += 0.008 if calls[0] == 0 else 0.002
        calls[0] += 1

    firsts: dict[str, list[float]] = {}
    samples = _bench.interleaved({"a": thunk}, warmup=0, rounds=1, rng=random.Random(0), block=3, warm_s=0.020,
                                 firsts=firsts)  # fmt: skip
    # 8 ms, then 2 ms calls until 20 ms have passed (six more), then 2 timed calls
    assert calls[0] == 1 + 6 + 2 and samples == {"a": pytest.approx([2.0])} and firsts == {"a": pytest.approx([8.0])}


def test_a_block_times_warm_calls_its_first_call_kept_apart(monkeypatch):
    clock = [0.0]  # a fake clock: each call advances it by the thunk's duration, so the samples are exact
    monkeypatch.setattr(_bench.time, "perf_counter", lambda: clock[0])
    calls = {"a": 0, "b": 0}

    def thunk(name, durations):
        clock[0] += durations[calls[name] % 3] / 1e3  # call i of a block of 3 lasts durations[i] ms
        calls[name] += 1

    fns = {"a": lambda: thunk("a", (20.0, 1.0, 3.0)), "b": lambda: thunk("b", (8.0, 4.0, 4.0))}
    firsts: dict[str, list[float]] = {}
    samples = _bench.interleaved(fns, warmup=1, rounds=2, rng=random.Random(0), block=3, firsts=firsts)
    assert calls == {"a": 9, "b": 9}
    approx = pytest.approx
    assert samples == {"a": approx([2.0, 2.0]), "b": approx([4.0, 4.0])}  # the median of the last two, not all three
    assert firsts == {"a": approx([20.0, 20.0]), "b": approx([8.0, 8.0])}  # timed rounds only
    untouched: dict[str, list[float]] = {}
    _bench.interleaved(fns, warmup=0, rounds=2, rng=random.Random(0), firsts=untouched)
    assert untouched == {}  # one call a round: it is the sample, there is no first call apart


def _fresh_pages():  # 256 pages mapped and written: one minor page fault each, whatever malloc's state
    pages = mmap.mmap(-1, 256 * mmap.PAGESIZE)
    pages[:: mmap.PAGESIZE] = b"\1" * 256
    pages.close()


@pytest.mark.parametrize("block", [1, 3])
def test_page_faults_are_counted_per_timed_call(block):
    pytest.importorskip("resource")
    faults: dict[str, list[float]] = {}
    fns = {"touches": _fresh_pages, "idle": lambda: None}
    _bench.interleaved(fns, warmup=1, rounds=4, rng=random.Random(0), block=block, faults=faults)
    assert set(faults) == set(fns) and all(len(f) == 4 and min(f) >= 0 for f in faults.values())
    assert min(faults["touches"]) >= 200 > 50 > max(faults["idle"])


_LIBC = """
import ctypes, resource, sys, threading
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
"""  # the start of the allocator scripts below, each run in a fresh process

_FAULTS_PER_BLOCK = (
    _LIBC
    + """

def block(size=8 << 20):  # like a call's output and workspace: allocated, written, freed, every call
    blocks = [libc.malloc(size) for _ in range(2)]
    for p in blocks:
        libc.memset(p, 1, size)
    for p in blocks:
        libc.free(p)

def faults_per_block(times=5):
    block()  # the first block's pages fault in any state
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        block()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / times

fresh = faults_per_block()
from jaxconv.evidence._bench import settle_allocator
print(fresh, settle_allocator(), faults_per_block())
"""
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mmap threshold")
def test_settled_allocator_stops_repeated_large_blocks_from_faulting():
    """In a fresh process a call that allocates, writes and frees two 8 MiB blocks (4096 pages) faults them in
    again every time (glibc trims the freed top of its heap, or maps them afresh); after ``settle_allocator`` the
    same calls reuse memory."""
    out = subprocess.run([sys.executable, "-c", _FAULTS_PER_BLOCK], capture_output=True, text=True, check=True)
    fresh, settled, after = out.stdout.split()
    assert float(fresh) > 3000 and settled == "True" and float(after) < 50, out.stdout


_THREAD_FAULTS_PER_BLOCK = (
    _LIBC
    + """
if sys.argv[1] == "settled":
    from jaxconv.evidence._bench import settle_allocator
    settle_allocator()
else:  # the thresholds alone, as the bench fixed them before it fixed the arenas
    libc.mallopt(-3, 32 << 20), libc.mallopt(-1, 1 << 30)
result = []

def worker():  # like XLA's threads: long-lived buffers fill the thread's first heap, then a 20 MiB output per call
    live = [libc.malloc(15 << 20) for _ in range(3)]
    for p in live:
        libc.memset(p, 1, 15 << 20)
    counts = []
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        p = libc.malloc(20 << 20)
        libc.memset(p, 1, 20 << 20)
        libc.free(p)
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    result.append(sum(counts[1:]) / 5)  # the first call's pages fault in any state

thread = threading.Thread(target=worker)
thread.start()
thread.join()
print(result[0])
"""
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's arenas")
def test_settled_allocator_keeps_a_threads_large_blocks_from_faulting():
    """A thread's output that does not fit its arena's first heap goes to a new 64 MiB heap, unmapped when freed, so it
    faults in again every call (5120 pages for 20 MiB) whatever the thresholds; on one arena it is reused."""
    faults = {}
    for state in ("thresholds", "settled"):
        out = subprocess.run([sys.executable, "-c", _THREAD_FAULTS_PER_BLOCK, state], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        faults[state] = float(out.stdout)
    assert faults["thresholds"] > 4000 and faults["settled"] < 50, faults


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's arenas")
@pytest.mark.parametrize("value, noted", [(None, True), ("8", True), ("1", False)])
def test_the_bench_says_when_threads_may_not_share_one_arena(monkeypatch, value, noted):
    if value is None:
        monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    else:
        monkeypatch.setenv("MALLOC_ARENA_MAX", value)
    note = _bench.arena_note()
    assert (note is not None) == noted and (note is None or "MALLOC_ARENA_MAX=1 jaxconv bench" in note)


def test_auto_out_of_memory_fails_the_lax_floor():
    record = _record(FEW, _times((1.0, 3.0), (2.0, 4.0), (2.0, 5.0)), PROGRAMS)
    for mode in _bench.MODES:
        del record["samples_ms"][mode]["auto"], record["ms"][mode]["auto"], record["program"][mode]["auto"]
    record["failed"] = {"auto": {"fwd": "OOM", "fwd_bwd": "OOM"}}
    passed, detail = _floor(_bench.floors([record], 100.0), "auto <= lax on every point (fwd)")
    assert not passed and "OOM" in detail
    assert "OOM" in _bench.format_grid([record], 100.0)


@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.99, 0.999])
@pytest.mark.parametrize("n", [7, 21, 40])
def test_median_interval_ranks_are_the_tightest_with_the_coverage(n, confidence):
    values = list(range(1, n + 1))
    lo, hi = _bench.median_interval(values, confidence)
    k = lo  # values are their own ranks
    assert hi == n + 1 - k
    below = sum(math.comb(n, j) for j in range(k)) / 2**n  # P(X < k), X ~ Binomial(n, 1/2)
    if n >= _bench.rounds_needed(confidence):
        assert 1 - 2 * below >= confidence  # coverage of [x_(k), x_(n+1-k)]
        tighter = sum(math.comb(n, j) for j in range(k + 1)) / 2**n
        assert k == n // 2 or 1 - 2 * tighter < confidence


@pytest.mark.parametrize(
    "point",
    [
        Point(1, 3, 3, 1, 1, 3),
        Point(2, 9, 7, 2, 3, 5, stride=2),
        Point(1, 8, 8, 4, 4, 3, dilation=3, groups=2),
        Point(1, 6, 6, 1, 1, 4),
    ],  # fmt: skip
)
def test_flops_count_only_taps_on_the_image(point):
    (top, _), (left, _) = point.padding
    ho, wo = point.out_hw
    taps = 0
    for i in range(ho):
        for j in range(wo):
            for a in range(point.k):
                for b in range(point.k):
                    r, c = i * point.stride + a * point.dilation - top, j * point.stride + b * point.dilation - left
                    taps += 0 <= r < point.h and 0 <= c < point.w
    assert point.flops == 2 * point.n * point.o * (point.c // point.groups) * taps


def test_rounds_are_in_a_fresh_seeded_random_order():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abcde"}
    _bench.interleaved(fns, warmup=1, rounds=6, rng=random.Random(3))
    orders = [tuple(calls[i : i + 5]) for i in range(0, len(calls), 5)]
    assert len(orders) == 7 and all(sorted(o) == list("abcde") for o in orders)
    assert len(set(orders)) > 3
    again = []
    fns = {name: (lambda name=name: again.append(name)) for name in "abcde"}
    _bench.interleaved(fns, warmup=1, rounds=6, rng=random.Random(3))
    assert again == calls
    blocks = []  # in blocks: the same orders (the same draws), each call repeated in a row
    fns = {name: (lambda name=name: blocks.append(name)) for name in "abcde"}
    _bench.interleaved(fns, warmup=1, rounds=6, rng=random.Random(3), block=3)
    assert blocks == [name for name in calls for _ in range(3)]


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--reps", "0"], "--reps"),
        (["--reps", "x"], "--reps"),
        (["--warmup", "-1"], "--warmup"),
        (["--only", "99"], "--only"),
        (["--quick", "--only", "2"], "--only"),
        (["--only", "-1"], "--only"),
        (["--seed", "-3"], "--seed"),
        (["--block", "0"], "--block"),
        (["--grid", "template", "--block", "2"], "--block"),
        (["--vector-width", "384"], "--vector-width"),
        (["--grid", "template", "--vector-width", "512"], "--vector-width"),
        (["--grid", "tpu"], "--grid"),
        (["--strategies", "direct,xla"], "--strategies"),
        (["--strategies", "auto,fast"], "--strategies"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err


def test_vector_width_adds_auto_compiled_for_wider_vectors_as_its_own_program(tmp_path, capsys):
    argv = ["bench", "--quick", "--only", "0", "--reps", "2", "--warmup", "0", "--strategies", "auto,xla"]
    assert cli.main([*argv, "--vector-width", "512", "--no-plot", "--no-torch", "--out", str(tmp_path)]) == 0
    assert "auto_vw512" in capsys.readouterr().out
    result = json.loads((tmp_path / "bench.json").read_text())
    record = result["records"][0]
    assert result["vector_width"] == 512 and set(result["vector_width_ratios"][record["label"]]) == set(_bench.MODES)
    for mode in _bench.MODES:  # the same optimised HLO as auto, but not counted as the identical program
        assert len(record["samples_ms"][mode]["auto_vw512"]) == 2
        assert record["program"][mode]["auto_vw512"] != record["program"][mode]["auto"]
        assert record["max_abs_err"]["auto_vw512"] < 1e-4


def test_bench_quick_writes_table_json_and_plot(tmp_path, capsys):
    assert cli.main(["bench", "--quick", "--reps", "2", "--warmup", "1", "--seed", "7", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "2 calls per contender a round" in printed  # the header: --quick's block
    assert "forward (ms)" in printed and "forward+backward (ms)" in printed
    assert "auto <= lax on every point" in printed and "UNDETERMINED" in printed
    result = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert result["seed"] == 7 and result["validity"] == "UNDETERMINED" and len(result["matmul_gflops"]) == 5
    assert result["timing_policy"]["warm_s"] == _bench.WARM_S > 0
    assert result["block"] == 2 and "median of the last 1" in result["timing_policy"]["sample"]
    env = result["environment"]
    assert env["jax"] and env["xla_cpu_threads"] >= 1 and len(result["loadavg"]["start"]) == 3
    for record in result["records"]:
        for mode in ("fwd", "fwd_bwd"):
            assert {"auto", "window", "shift", "direct", "xla", "fft", "lax"} <= set(record["ms"][mode])
            assert all(len(s) == 2 and min(s) > 0 for s in record["samples_ms"][mode].values())
            assert set(record["first_call_ms"][mode]) == set(record["ms"][mode])
            assert all(len(s) == 2 and min(s) > 0 for s in record["first_call_samples_ms"][mode].values())
            assert set(record["page_faults_per_call"][mode]) == set(record["ms"][mode])
            assert min(record["page_faults_per_call"][mode].values()) >= 0
            assert record["program"][mode]["auto"] == record["program"][mode][record["auto_strategy"]]
        assert all(err < 1e-4 for err in record["max_abs_err"].values())
        assert record["memory"]["auto"]["fwd"]["temp_bytes"] >= 0
        assert record["block"] == 2


@pytest.mark.slow  # the gpu grid; the main grid's quick run is the fast tier's bench
def test_bench_gpu_grid_quick_runs_on_cpu(tmp_path, capsys):
    argv = ["bench", "--grid", "gpu", "--quick", "--only", "3", "--reps", "1", "--warmup", "0", "--no-plot"]
    argv += ["--strategies", "auto,direct,xla"]
    assert cli.main([*argv, "--no-torch", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["grid"] == "gpu" and [r["label"] for r in result["records"]] == ["1x64x64 1->1 k3"]
    assert set(result["records"][0]["ms"]["fwd"]) == {"auto", "direct", "xla", "lax"}


@pytest.mark.slow  # the local grid; the main grid's quick run is the fast tier's bench
def test_bench_local_grid_quick_times_jaxconv_against_lax(tmp_path, capsys):
    argv = ["bench", "--grid", "local", "--quick", "--reps", "1", "--warmup", "0", "--no-plot", "--no-torch"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["grid"] == "local" and all(r["label"].endswith(" local") for r in result["records"])
    for record in result["records"]:
        assert set(record["ms"]["fwd"]) == set(record["ms"]["fwd_bwd"]) == {"auto", "lax"}
        assert record["max_abs_err"]["auto"] < 1e-4  # the same numbers as lax's own local op


@pytest.mark.slow  # the template grid; the main grid's quick run is the fast tier's bench
def test_bench_template_grid_quick_runs(tmp_path, capsys):
    pytest.importorskip("skimage")
    pytest.importorskip("cv2")
    argv = ["bench", "--grid", "template", "--quick", "--reps", "2", "--warmup", "0", "--seed", "3"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    assert "jaxconv's medians of per-round ratios" in capsys.readouterr().out
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["grid"] == "template" and result["seed"] == 3 and result["environment"]["opencv_threads"] >= 1
    assert [r["label"] for r in result["records"]] == ["1x32^2 t8", "2x24^2 t5"]
    for record in result["records"]:
        assert set(record["ms"]) == {"jaxconv", "skimage", "opencv"}
        assert all(len(s) == 2 and min(s) > 0 for s in record["samples_ms"].values())
        assert record["max_abs_err"]["jaxconv"] < 1e-4 and record["max_abs_err"]["opencv"] < 1e-3
