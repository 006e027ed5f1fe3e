"""experiments/accelerator_check.py: its priority order, and its runner on small suites written here — every
failure's whole message kept, a test past its limit failed (or killed, and the rest run), no test started past the
budget — and, behind --runslow, its whole dry run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxconv.evidence._bench import FAMILY_CONFIDENCE, GRID, rounds_needed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "accelerator_check.py")
_spec = importlib.util.spec_from_file_location("accelerator_check_under_test", SCRIPT)
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


def test_priority_puts_the_convolution_first_then_the_lab_in_the_listed_order():
    listed = [(name, path) for name, paths in check.PRIORITY for path in paths]
    for _, path in listed:  # a renamed file would silently fall to the last tier
        assert os.path.exists(os.path.join(ROOT, path)), path
    suite = sorted(
        os.path.relpath(os.path.join(folder, f), ROOT).replace(os.sep, "/")
        for top in ("tests", "jaxconv")
        for folder, _, files in os.walk(os.path.join(ROOT, top))
        for f in files
        if f.endswith(".py") and (top == "jaxconv" or f.startswith("test_"))
    )
    ids = [f"{path}::case{i}" for path in suite for i in range(2)]
    shuffled = [ids[i] for i in np.random.default_rng(0).permutation(len(ids))]
    ordered = sorted(shuffled, key=check.priority)
    tiers = [check.tier(i) for i in ordered]
    assert tiers == sorted(tiers, key=["conv", "lab", "rest"].index)
    assert ordered[0].startswith("tests/test_conv.py::") and check.tier("tests/test_cli.py::x") == "rest"
    assert check.tier("jaxconv/conv/_conv.py::jaxconv.conv._conv.conv2d") == "conv"
    assert check.tier("jaxconv/lab/_fit.py::jaxconv.lab._fit.fit") == "lab"
    # within a listed file pytest's order stays (a stable sort); files follow PRIORITY's list
    first_of = {}
    for i in ordered:
        first_of.setdefault(i.split("::")[0], len(first_of))
    files = [p for _, p in listed if not p.endswith("/")]
    assert [f for f in first_of if f in files] == files
    for path in suite:
        cases = [i for i in ordered if i.startswith(path + "::")]
        assert cases == sorted(cases, key=lambda i: shuffled.index(i)), path


def _suite(tmp_path, source):
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(source))
    return tmp_path


FAILING = """
    import signal, time

    def test_fails_with_a_long_message():
        print("captured " + "o" * 5000)
        assert 0, "x" * 5000 + " END"

    def test_passes():
        pass

    def test_runs_past_its_limit():
        time.sleep(600)

    def test_hangs_where_no_signal_reaches():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(600)

    def test_after_the_kill():
        pass
"""


def test_whole_messages_per_test_limit_and_a_kill_then_the_rest(tmp_path):
    suite = _suite(tmp_path, FAILING)
    result = check.run_tests(["test_suite.py"], tmp_path / "out", budget_s=120, test_limit_s=1, cwd=suite, grace_s=1)
    failures = {f["id"].split("::")[1]: f for f in result["failures"]}
    assert result["counts"] == {"passed": 2, "failed": 3, "skipped": 0, "not_reached": 0}
    assert set(failures) == {"test_fails_with_a_long_message", "test_runs_past_its_limit",
                             "test_hangs_where_no_signal_reaches"}  # fmt: skip
    long = failures["test_fails_with_a_long_message"]
    assert "x" * 5000 + " END" in long["message"] and long["phases"] == ["call"]
    assert any("captured " + "o" * 5000 in text for _, text in long["sections"])
    assert "over the per-test limit of 1 s" in failures["test_runs_past_its_limit"]["message"]
    hung = failures["test_hangs_where_no_signal_reaches"]
    assert hung["outcome"] == "timed_out" and "in test_hangs_where_no_signal_reaches" in hung["message"]  # the dump
    assert [a["killed"] for a in result["attempts"]] == ["timed_out", None]  # killed, then the rest ran


def test_a_test_that_takes_its_pytest_down_is_a_failure_and_the_rest_run(tmp_path):
    suite = _suite(tmp_path, """
        import os

        def test_before():
            pass

        def test_dies():
            print("last words", flush=True)
            os._exit(3)  # as a segfault in compiled code would

        def test_after():
            pass
    """)  # fmt: skip
    result = check.run_tests(["test_suite.py"], tmp_path / "out", budget_s=120, test_limit_s=60, cwd=suite)
    assert result["counts"] == {"passed": 2, "failed": 1, "skipped": 0, "not_reached": 0}
    (died,) = result["failures"]
    assert died["id"] == "test_suite.py::test_dies" and died["outcome"] == "crashed"
    assert "last words" in died["message"]
    assert [a["returncode"] for a in result["attempts"]] == [3, 0]


def test_a_pytest_that_cannot_run_is_a_failure(tmp_path):
    suite = _suite(tmp_path, "def test_never(:\n    pass\n")
    result = check.run_tests(["test_suite.py", "--no-such-option"], tmp_path / "out", budget_s=60, test_limit_s=60,
                             cwd=suite)  # fmt: skip
    (broke,) = result["failures"]
    assert broke["id"] == "pytest" and "--no-such-option" in broke["message"] and result["total"] == 0


BUDGET = """
    import time

    def test_first():
        pass

    def test_waits_for_the_deadline(request):
        time.sleep(max(0.0, request.config.getoption("--check-deadline") - time.time()) + 0.2)

    def test_second():
        pass

    def test_third():
        pass
"""


def test_no_test_starts_past_the_budget(tmp_path):
    suite = _suite(tmp_path, BUDGET)
    result = check.run_tests(["test_suite.py"], tmp_path / "out", budget_s=3, test_limit_s=60, cwd=suite)
    names = [i.split("::")[1] for i in result["not_reached"]]
    # The tests after the deadline are not reached, in order (all of them if pytest took the budget to start).
    assert names[-2:] == ["test_second", "test_third"] and result["counts"]["failed"] == 0
    assert result["counts"]["passed"] + len(names) == result["total"] == 4
    assert [(a["killed"], a["dead"]) for a in result["attempts"]] == [(None, [])]  # stopped by itself


def test_bench_rounds_shrink_with_the_time_left_but_still_decide_validity():
    reps = [check.bench_reps(left, 200.0) for left in (0.0, 50.0, 150.0, 200.0, 900.0)]
    assert reps == sorted(reps) and reps[0] == check.REPS_MIN and reps[-1] == reps[-2] == check.REPS_MAX
    most_pairs = 3 * 2 * len(GRID)  # auto/resolved, xla/lax, auto/lax; forward and forward+backward; every point
    assert rounds_needed(1 - (1 - FAMILY_CONFIDENCE) / most_pairs) <= check.REPS_MIN


@pytest.mark.slow  # the dry run itself: three test files, a 20-step train, one point of each bench grid (~1-2 min)
def test_dry_run(tmp_path):
    done = subprocess.run(
        [sys.executable, SCRIPT, "--dry-run", "--budget", "400", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    text = (tmp_path / check.RESULTS_NAME).read_text()
    assert str(tmp_path) not in text and ROOT not in text  # paths relative: the JSON can be committed
    results = json.loads(text)
    tests = results["tests"]
    assert tests["counts"]["failed"] == 0 and tests["counts"]["passed"] == tests["total"] > 10
    assert list(tests["tiers"]) == ["conv", "lab", "rest"]  # run in priority order, given in reverse
    assert results["train"]["status"] == "ok" and results["train"]["steps"] == 20
    assert 0 <= results["train"]["f1"] <= 1
    for grid in ("gpu", "main"):
        bench = results["bench"][grid]
        assert bench["status"] == "ok" and bench["validity"] == "UNDETERMINED"  # 2 rounds decide nothing
        assert (tmp_path / bench["json"]).exists()
    assert results["device"]["backend"] == "cpu" and results["device"]["versions"]["jax"]
    assert done.stdout.strip().splitlines()[-1].startswith(results["summary"])
