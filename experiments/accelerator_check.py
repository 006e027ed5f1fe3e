"""One prepared check on whatever accelerator JAX sees: versions, the suite, the main job and the speed table.

    python experiments/accelerator_check.py                 # on a GPU: within 8 minutes, results under $OUT or runs/
    python experiments/accelerator_check.py --dry-run       # the same on the CPU, tiny: under 2 minutes

Steps, each in subprocesses (this process never holds the device), the results JSON rewritten atomically after each
so a check cut off still leaves what it did:

1. the device, the driver (``nvidia-smi``), jax/jaxlib, the CUDA runtime JAX reports, and the CUDA packages;
2. the test suite in priority order (:data:`PRIORITY`: the convolution's conformance and gradient tests, then the
   lab, then the rest) in one pytest run with this file as its plugin (``-p accelerator_check``): the plugin orders
   the tests, writes each start and each report (``longreprtext``: the whole message, and the captured output) as
   a JSON line, fails a test that runs past the per-test limit (``SIGALRM``), and starts no test past the deadline.
   A test that does not come back to Python is killed with its pytest after the limit and a grace, recorded with
   the end of the log (pytest's faulthandler dump of every thread), and pytest starts again on the tests not yet run;
3. ``jaxconv train`` on its defaults: F1, steps, wall time (its ``metrics.json`` and ``history.jsonl``);
4. ``jaxconv bench`` on the GPU grid and the main grid, rounds sized to the time left, each ``bench.json``;
5. one summary line: tests passed/failed/not reached, train F1 and wall, bench validity.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS_NAME = "accelerator_check.json"

PRIORITY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("conv", ("tests/test_conv.py", "tests/test_grad.py", "tests/test_vjp.py", "tests/test_conv_nd.py",
              "tests/test_conv_transpose.py", "tests/test_general.py", "tests/test_padding_reach.py",
              "tests/test_conv_fuzz.py", "tests/test_api.py", "tests/test_errors.py", "jaxconv/conv/")),
    ("lab", ("tests/test_data.py", "tests/test_train.py", "tests/test_metrics.py", "tests/test_oracle.py",
             "tests/test_theory.py", "tests/test_anatomy.py", "tests/test_tiled.py", "tests/test_checkpoint.py",
             "tests/test_multi.py", "jaxconv/lab/", "tests/test_preempt.py", "tests/test_data_parallel.py",
             "tests/test_multihost.py")),
)  # fmt: skip
"""Tiers in the order they run, each a list of test files (or folders, ending in ``/``) in order; every other
test is in the tier ``"rest"``, after them, in pytest's order. (The multi-device tests force CPU devices: last in
the lab.)"""

DRY_RUN_TESTS = ("jaxconv/_env.py", "jaxconv/lab/_streams.py", "tests/test_errors.py")
"""The dry run's suite: one file of each tier, given in reverse priority (the plugin puts them in order)."""
DRY_RUN_TRAIN = ("--steps", "20", "--steps-per-dispatch", "10", "--image-size", "12", "--batch-size", "8",
                 "--eval-images", "20", "--no-figures")  # fmt: skip
BENCH_GRIDS = (("gpu", "auto,window,xla"), ("main", "auto,window,direct,xla"))
"""``(grid, strategies)`` in the order they run: the GPU grid first (sized for the device); ``shift`` left out (the
H200 runs in BENCHMARKS.md: slower than ``window`` everywhere)."""
REPS_MAX = 21
"""``jaxconv bench``'s default rounds, given when the bench has its whole reserve left."""
REPS_MIN = 12
"""The fewest rounds given: the H200 runs' 12, which decide validity on the main grid (its family-wise confidence
over at most 66 identical-program pairs needs 12 rounds)."""
KILL_GRACE_S = 15.0
"""Seconds past the per-test limit (or the deadline) before a pytest that has not moved on is killed."""
MAX_ATTEMPTS = 5
"""pytest starts at most (each after a kill, on the tests not yet run)."""
PROGRESS_EVERY_S = 30.0
"""Seconds between the progress lines printed while the tests run."""
LOG_TAIL = 20_000
"""Characters of a pytest log kept as the message of a test that was killed or crashed (the log is kept whole)."""


# -------------------------------------------------------------------------------------------------------------------
# Priority order.


def priority(nodeid: str) -> tuple[int, int]:
    """``(tier, file)`` ranks of a test's node id under :data:`PRIORITY` (a stable sort keeps pytest's order within
    a file): a file listed in the ``i``-th tier at position ``j`` gets ``(i, j)``, an unlisted one the last tier."""
    path = nodeid.split("::")[0]
    for i, (_, files) in enumerate(PRIORITY):
        for j, pattern in enumerate(files):
            if path == pattern or (pattern.endswith("/") and path.startswith(pattern)):
                return i, j
    return len(PRIORITY), 0


def tier(nodeid: str) -> str:
    """The name of a test's tier: ``"conv"``, ``"lab"`` or ``"rest"``."""
    i, _ = priority(nodeid)
    return PRIORITY[i][0] if i < len(PRIORITY) else "rest"


# -------------------------------------------------------------------------------------------------------------------
# The pytest plugin (active only with --check-events): order, events, per-test limit, deadline.

_config: Any = None  # set when pytest runs with --check-events
_current: str | None = None  # the test this process is running (its reports are this process's to record)
_events: Any = None


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("accelerator check")
    group.addoption("--check-events", metavar="DIR", help="write this process's events to DIR/events-PID.jsonl")
    group.addoption("--check-deadline", type=float, metavar="T", help="time.time() after which no test starts")
    group.addoption("--check-test-limit", type=float, metavar="S", help="fail a test still running after S seconds")
    group.addoption("--check-only", metavar="FILE", help="run only the node ids listed in FILE, one a line")


def pytest_configure(config: Any) -> None:
    global _config
    if config.getoption("--check-events"):
        _config = config


def _emit(record: dict[str, Any]) -> None:
    global _events
    if _events is None:
        _events = open(Path(_config.getoption("--check-events")) / f"events-{os.getpid()}.jsonl", "a")  # noqa: SIM115
    _events.write(json.dumps(record) + "\n")
    _events.flush()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    if _config is None:
        return
    only = config.getoption("--check-only")
    if only:
        keep = set(Path(only).read_text().splitlines())
        dropped = [item for item in items if item.nodeid not in keep]
        items[:] = [item for item in items if item.nodeid in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
    items.sort(key=lambda item: priority(item.nodeid))
    _emit({"collected": [item.nodeid for item in items]})


def pytest_collectreport(report: Any) -> None:
    if _config is not None and report.failed:
        _emit({"collect_error": report.nodeid, "longrepr": report.longreprtext})


def _over_limit(limit: float) -> Any:
    def handler(signum: int, frame: Any) -> None:
        pytest.fail(f"accelerator check: over the per-test limit of {limit:g} s")

    return handler


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: Any, nextitem: Any) -> bool | None:
    global _current
    if _config is None:
        return None
    deadline = _config.getoption("--check-deadline")
    if deadline is not None and time.time() >= deadline:
        _emit({"not_reached": item.nodeid})
        return True  # handled: not run
    _current = item.nodeid
    _emit({"start": item.nodeid, "t": time.time()})
    limit = _config.getoption("--check-test-limit")
    if limit and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGALRM, _over_limit(limit))
        signal.setitimer(signal.ITIMER_REAL, limit)
    return None


def pytest_runtest_logreport(report: Any) -> None:
    if _config is None or report.nodeid != _current:
        return  # xdist's controller: the worker that ran the test records it
    record = {"report": report.nodeid, "when": report.when, "outcome": report.outcome, "duration": report.duration}
    if report.failed:
        record["longrepr"] = report.longreprtext
        record["sections"] = [list(s) for s in report.sections]
    _emit(record)


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    if _config is not None and _current == nodeid and threading.current_thread() is threading.main_thread():
        signal.setitimer(signal.ITIMER_REAL, 0)


# -------------------------------------------------------------------------------------------------------------------
# Running the suite: one pytest (xdist workers on an accelerator), watched; started again after a kill.


class Events:
    """The plugin's event lines under a folder, read incrementally (a line is read once it is complete)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._offsets: dict[Path, int] = {}
        self.order: list[str] = []
        self.started: dict[str, float] = {}
        self.reports: dict[str, list[dict[str, Any]]] = {}
        self.not_reached: set[str] = set()
        self.collect_errors: dict[str, str] = {}

    def poll(self) -> None:
        """Reads the lines written since the last poll."""
        for path in sorted(self.folder.glob("events-*.jsonl")):
            with open(path, "rb") as f:
                f.seek(self._offsets.get(path, 0))
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            self._offsets[path] = self._offsets.get(path, 0) + len(complete)
            for line in complete.decode().splitlines():
                self._add(json.loads(line))

    def _add(self, event: dict[str, Any]) -> None:
        if "collected" in event and not self.order:  # the first pytest's: every later one collects a subset
            self.order = event["collected"]
        elif "start" in event:
            self.started[event["start"]] = event["t"]
        elif "report" in event:
            self.reports.setdefault(event["report"], []).append(event)
        elif "not_reached" in event:
            self.not_reached.add(event["not_reached"])
        elif "collect_error" in event:
            self.collect_errors[event["collect_error"]] = event["longrepr"]

    def finished(self, nodeid: str) -> bool:
        """Whether the test's teardown was reported (the last phase, run whatever happened before)."""
        return any(r["when"] == "teardown" for r in self.reports.get(nodeid, ()))

    def in_flight(self) -> dict[str, float]:
        """``{node id: start time}`` of the tests started and not finished."""
        return {i: t for i, t in self.started.items() if not self.finished(i)}


def _tail(path: Path) -> str:
    text = path.read_text(errors="replace")
    return text if len(text) <= LOG_TAIL else f"[... {len(text) - LOG_TAIL} characters before]\n" + text[-LOG_TAIL:]


def _pytest_command(
    paths: Sequence[str], folder: Path, deadline: float, limit: float, grace: float, workers: int
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "accelerator_check",
        *paths,
        "-q",
        "--tb=long",
        "-rN",
        "--capture=tee-sys",
    ]
    command += ["--continue-on-collection-errors", "-o", f"faulthandler_timeout={limit + grace / 2:g}"]
    command += ["--check-events", str(folder), "--check-deadline", repr(deadline), "--check-test-limit", f"{limit:g}"]
    return command + (["-n", str(workers), "--dist", "load"] if workers > 1 else [])


def _watch(
    proc: subprocess.Popen[bytes], events: Events, deadline: float, limit: float, grace: float
) -> tuple[str | None, list[str]]:
    """Waits for pytest, killing it (its whole process group) when a test runs past ``limit + grace`` or the run past
    ``deadline + grace``; returns ``(why it was killed or None, the tests it was killed on)``."""
    shown = time.time()
    while proc.poll() is None:
        time.sleep(0.25)
        events.poll()
        now = time.time()
        if now - shown >= PROGRESS_EVERY_S:
            shown = now
            done = sum(map(events.finished, events.started))
            print(
                f"  tests: {done} finished, {len(events.in_flight())} running, {deadline - now:.0f} s left", flush=True
            )
        running = events.in_flight()
        hung = [i for i, t in running.items() if now - t > limit + grace]
        why = "timed_out" if hung else ("interrupted" if now > deadline + grace else None)
        if why is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            events.poll()
            return why, hung if hung else sorted(events.in_flight())
    events.poll()
    return None, []


def run_tests(
    paths: Sequence[str],
    folder: Path,
    *,
    budget_s: float,
    test_limit_s: float,
    workers: int = 1,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    grace_s: float = KILL_GRACE_S,
) -> dict[str, Any]:
    """Runs the tests under ``paths`` in priority order until ``budget_s`` has passed; returns their verdict.

    Each pytest's output goes to ``folder/pytest-<attempt>.log`` and the plugin's events to ``folder``. Returns
    ``{"counts", "tiers", "failures" (each with its whole message), "not_reached", "interrupted", "attempts",
    "wall_s", ...}`` (see :func:`verdict`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    start = time.time()
    deadline = start + budget_s
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), child_env.get("PYTHONPATH")]))
    events = Events(folder)
    dead: dict[str, tuple[str, str]] = {}  # node id: (timed_out | crashed | interrupted, message)
    attempts: list[dict[str, Any]] = []
    selection: list[str] = []
    while len(attempts) < MAX_ATTEMPTS:
        command = _pytest_command(paths, folder, deadline, test_limit_s, grace_s, workers)
        if selection:
            only = folder / f"remaining-{len(attempts) + 1}.txt"
            only.write_text("\n".join(selection) + "\n")
            command += ["--check-only", str(only)]
        log = folder / f"pytest-{len(attempts) + 1}.log"
        done_before = len(dead) + sum(map(events.finished, events.order)) + len(events.not_reached)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, cwd=cwd, env=child_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            killed, victims = _watch(proc, events, deadline, test_limit_s, grace_s)
        # pytest exited by itself: a test it had started and never finished crashed it (or its xdist worker)
        why = killed or "crashed"
        victims = victims if killed else sorted(events.in_flight())
        message = f"{why} (pytest log {log.name}, its end):\n{_tail(log)}"
        for nodeid in victims:
            dead[nodeid] = (why, message)
            events.started.pop(nodeid, None)
        events.started = {}  # whatever else was running was interrupted by the kill, and runs again
        attempts.append({"log": log.name, "returncode": proc.returncode, "killed": killed, "dead": victims})
        done = set(dead) | events.not_reached | {i for i in events.order if events.finished(i)}
        selection = [i for i in events.order if i not in done]
        progress = len(done) > done_before
        if not selection or not progress or why == "interrupted" or time.time() >= deadline:
            break
    result = verdict(events, dead, budget_s=budget_s)
    result.update(attempts=attempts, workers=workers, test_limit_s=test_limit_s, wall_s=round(time.time() - start, 1))
    if not attempts[-1]["killed"] and (selection or not events.order):  # pytest itself broke (a bad option, ...)
        why = f"pytest exited with status {attempts[-1]['returncode']}, {len(selection)} tests not run; its log's end"
        message = f"{why}:\n{_tail(folder / attempts[-1]['log'])}"
        result["failures"].append({"id": "pytest", "tier": "rest", "outcome": "crashed", "message": message})
        result["counts"]["failed"] += 1
    return result


def verdict(events: Events, dead: dict[str, tuple[str, str]], *, budget_s: float) -> dict[str, Any]:
    """Each test's outcome, in priority order: ``passed``, ``skipped``, ``failed`` (any phase; also ``timed_out`` and
    ``crashed``: killed after the limit, or died with its pytest) or ``not_reached`` (never started, or
    ``interrupted``: running when the budget ran out); counts overall and per tier, every failure's whole message."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "not_reached": 0}
    tiers: dict[str, dict[str, int]] = {}
    failures: list[dict[str, Any]] = []
    not_reached: list[str] = []
    interrupted: list[str] = []
    for nodeid in events.order:
        reports = events.reports.get(nodeid, [])
        failed = [r for r in reports if r["outcome"] == "failed"]
        if failed:
            outcome = "failed"
            failures.append(
                {
                    "id": nodeid,
                    "tier": tier(nodeid),
                    "outcome": "failed" if all(r["when"] == "call" for r in failed) else "error",
                    "phases": [r["when"] for r in failed],
                    "duration_s": round(sum(r["duration"] for r in reports), 3),
                    "message": "\n\n".join(r["longrepr"] for r in failed),
                    "sections": [s for r in failed for s in r["sections"]],
                }
            )
        elif events.finished(nodeid):
            outcome = "skipped" if any(r["outcome"] == "skipped" for r in reports) else "passed"
        elif nodeid in dead and dead[nodeid][0] != "interrupted":
            outcome = "failed"
            failures.append(
                {"id": nodeid, "tier": tier(nodeid), "outcome": dead[nodeid][0], "message": dead[nodeid][1]}
            )
        else:
            outcome = "not_reached"
            (interrupted if nodeid in dead else not_reached).append(nodeid)
        counts[outcome] += 1
        by_tier = tiers.setdefault(tier(nodeid), {k: 0 for k in counts})
        by_tier[outcome] += 1
    for nodeid, text in events.collect_errors.items():
        failures.append({"id": nodeid, "tier": tier(nodeid), "outcome": "collection error", "message": text})
        counts["failed"] += 1
    return {
        "budget_s": budget_s,
        "total": len(events.order),
        "counts": counts,
        "tiers": tiers,
        "failures": failures,
        "not_reached": not_reached,
        "interrupted": interrupted,
    }


# -------------------------------------------------------------------------------------------------------------------
# The device, the main job and the bench.

_DEVICE_INFO = """
import json, jax
devices = jax.devices()
print(json.dumps({"backend": jax.default_backend(), "devices": [f"{d.platform}: {d.device_kind}" for d in devices],
                  "platform_version": devices[0].client.platform_version,
                  "environment": jax.print_environment_info(return_string=True)}))
"""


def device_info(env: dict[str, str]) -> dict[str, Any]:
    """What JAX sees (in a child process), the driver (``nvidia-smi``), and the installed versions that matter."""
    from jaxconv.evidence import versions

    info: dict[str, Any] = {"versions": versions()}
    info["cuda_packages"] = {
        d.metadata["Name"]: d.version
        for d in importlib.metadata.distributions()
        if re.match(r"(jax[-_]cuda|nvidia[-_])", d.metadata["Name"] or "", re.I)
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", _DEVICE_INFO], capture_output=True, text=True, env=env, timeout=120
        )
        if done.returncode == 0:
            info.update(json.loads(done.stdout.strip().splitlines()[-1]))
        else:
            info["error"] = done.stdout + done.stderr
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
            smi = subprocess.run(query, capture_output=True, text=True, timeout=30)
            info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
            header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
            found = re.search(r"CUDA Version:\s*([\d.]+)", header)
            info["driver_cuda"] = found.group(1) if found else None
    except subprocess.TimeoutExpired as err:
        info["error"] = f"{' '.join(err.cmd[:2])}: no answer in {err.timeout:.0f} s"
    return info


def _jaxconv(args: Sequence[str], folder: Path, *, timeout_s: float, env: dict[str, str]) -> dict[str, Any]:
    """Runs ``jaxconv ARGS --out FOLDER`` from ``folder``'s parent; returns its ``command``, ``status`` (``"ok"``:
    exit status 0, ``"failed"``, or ``"timed out after N s"``), ``wall_s``, ``returncode`` and ``output``."""
    command = [sys.executable, "-m", "jaxconv", *args, "--out", folder.name]
    result: dict[str, Any] = {"command": ["jaxconv", *command[3:]]}
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=folder.parent)
    except subprocess.TimeoutExpired as err:
        output = "".join(o.decode() if isinstance(o, bytes) else o for o in (err.stdout, err.stderr) if o)
        return {**result, "status": f"timed out after {timeout_s:.0f} s", "output": output}
    status = "ok" if done.returncode == 0 else "failed"
    wall = round(time.perf_counter() - start, 2)
    return {
        **result,
        "status": status,
        "wall_s": wall,
        "returncode": done.returncode,
        "output": done.stdout + done.stderr,
    }


def run_train(folder: Path, *, extra: Sequence[str], timeout_s: float, env: dict[str, str]) -> dict[str, Any]:
    """``jaxconv train`` (its defaults, and ``extra``) into ``folder``: status, F1, steps, wall time."""
    result = _jaxconv(["train", "--no-progress", *extra], folder, timeout_s=timeout_s, env=env)
    if result["status"] != "ok":
        return result
    metrics = json.loads((folder / "metrics.json").read_text())
    steps = len((folder / "history.jsonl").read_text().splitlines())
    result.update(f1=metrics["f1"], steps=steps, matched_filter_f1=metrics["matched_filter"]["f1"])
    result["train_s"] = metrics["timing"]["wall_s"]
    return result


def bench_reps(remaining_s: float, reserve_s: float) -> int:
    """Rounds for the bench: :data:`REPS_MAX` with its whole reserve left, fewer in proportion, at least
    :data:`REPS_MIN` (timing on a GPU is milliseconds a round; compiling is what the reserve pays for)."""
    share = remaining_s / reserve_s if reserve_s > 0 else 1.0
    return max(REPS_MIN, min(REPS_MAX, int(REPS_MAX * share)))


def run_bench(
    folder: Path, grid: str, strategies: str, *, extra: Sequence[str], timeout_s: float, env: dict[str, str]
) -> dict[str, Any]:
    """``jaxconv bench --grid GRID`` into ``folder``: status, validity, floors passed, and where its JSON is."""
    args = ["bench", "--grid", grid, "--strategies", strategies, *extra]
    result = _jaxconv(args, folder, timeout_s=timeout_s, env=env)
    if result["status"] != "ok":
        return result
    bench = json.loads((folder / "bench.json").read_text())
    floors = bench["floors"]
    result.update(validity=bench["validity"], rounds=bench["rounds"], json=f"{folder.name}/bench.json")
    result["floors_passed"] = f"{sum(f['pass'] for f in floors)}/{len(floors)}"
    return result


# -------------------------------------------------------------------------------------------------------------------
# The check.


def summary(results: dict[str, Any]) -> str:
    """The closing line: device, tests passed/failed/not reached, train F1 and wall, each bench's validity."""
    device = results.get("device", {})
    parts = [f"accelerator check on {', '.join(device.get('devices', ['?']))}"]
    tests = results.get("tests")
    if tests:
        c = tests["counts"]
        parts.append(
            f"tests {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped, "
            f"{c['not_reached']} not reached of {tests['total']} ({tests['wall_s']:.0f} s)"
        )
    train = results.get("train")
    if train:
        if train["status"] == "ok":
            parts.append(f"train F1 {train['f1']:.3f} in {train['steps']} steps, wall {train['wall_s']:.1f} s")
        else:
            parts.append(f"train {train['status']}")
    for grid, bench in results.get("bench", {}).items():
        shown = bench["validity"] if bench["status"] == "ok" else bench["status"]
        parts.append(f"bench {grid} {shown}" + (f" ({bench['rounds']} rounds)" if bench["status"] == "ok" else ""))
    return "; ".join(parts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="results folder ($OUT if set, else runs/accel-<time>)")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny: a few test files, train, bench")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole check (480; dry run 110)")
    parser.add_argument("--train-reserve", type=float, default=None, help="seconds kept for train (60; dry 30)")
    parser.add_argument("--bench-reserve", type=float, default=None, help="seconds kept for the bench (200; dry 40)")
    parser.add_argument("--test-limit", type=float, default=None, help="seconds one test may run (120; dry 60)")
    parser.add_argument("--workers", type=int, default=None, help="pytest-xdist workers (CPUs/2, at most 8; dry 2)")
    parser.add_argument("--tests", nargs="+", default=None, metavar="PATH", help="test paths (the suite)")
    parser.add_argument("--skip", nargs="+", default=(), choices=("tests", "train", "bench"), help="steps to skip")
    return parser


def _defaults(args: argparse.Namespace) -> None:
    dry = args.dry_run
    for name, full, tiny in (
        ("budget", 480.0, 110.0),
        ("train_reserve", 60.0, 30.0),
        ("bench_reserve", 200.0, 40.0),
        ("test_limit", 120.0, 60.0),
        ("workers", max(1, min(8, (os.cpu_count() or 2) // 2)), 2),
    ):
        if getattr(args, name) is None:
            setattr(args, name, tiny if dry else full)
    if importlib.util.find_spec("xdist") is None and args.workers > 1:
        print("pytest-xdist is not installed (the [dev] extra): the tests run in one process")
        args.workers = 1
    if args.tests is None:
        args.tests = list(DRY_RUN_TESTS) if dry else []
    if args.out is None:
        args.out = (
            Path(os.environ["OUT"])
            if os.environ.get("OUT")
            else ROOT / "runs" / ("accel-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
        )


def _save(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Writes the results atomically, the checkout's and the results folder's paths made relative (commitable)."""
    from jaxconv.evidence import write_json

    text = json.dumps(results)
    for folder in (args.out, ROOT):
        text = text.replace(json.dumps(str(folder) + os.sep)[1:-1], "")
    write_json(str(args.out / RESULTS_NAME), json.loads(text))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _defaults(args)
    start = time.monotonic()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # Every process of the check (pytest's workers, the subprocesses tests start, train, bench) shares one device:
    # each allocates what it needs instead of 75% of the memory up front.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if args.dry_run:
        env["JAX_PLATFORMS"] = "cpu"
    results: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "budget_s": args.budget,
        "device": device_info(env),
    }
    device = results["device"]
    print(f"device: {', '.join(device.get('devices', ['JAX failed to start: see ' + RESULTS_NAME]))}")
    print(f"driver: {device.get('nvidia_smi', 'no nvidia-smi')}; CUDA (driver) {device.get('driver_cuda', '-')}")
    versions = device["versions"]
    print(f"jax {versions['jax']}, jaxlib {versions['jaxlib']}; runtime: {device.get('platform_version', '-')}")
    print(f"CUDA packages: {', '.join(f'{k} {v}' for k, v in device['cuda_packages'].items()) or 'none'}", flush=True)
    if device.get("backend") == "cpu" and not args.dry_run:
        print("warning: JAX sees only the CPU (is jax[cuda12] installed?); the check runs there")
    _save(args, results)

    def left() -> float:
        return args.budget - (time.monotonic() - start)

    if "tests" not in args.skip:
        reserve = args.train_reserve * ("train" not in args.skip) + args.bench_reserve * ("bench" not in args.skip)
        budget = max(left() - reserve - KILL_GRACE_S, 1.0)
        print(f"tests: {budget:.0f} s, {args.workers} workers, {args.test_limit:g} s a test ...", flush=True)
        results["tests"] = run_tests(
            args.tests, args.out / "tests", budget_s=budget, test_limit_s=args.test_limit, workers=args.workers,
            env=env,
        )  # fmt: skip
        for failure in results["tests"]["failures"]:
            print(f"  {failure['outcome']}: {failure['id']}")
        print(f"tests: {results['tests']['counts']}; every failure's message in {RESULTS_NAME}", flush=True)
        _save(args, results)
    if "train" not in args.skip:
        timeout = max(left() - args.bench_reserve * ("bench" not in args.skip), args.train_reserve)
        print(f"train: at most {timeout:.0f} s ...", flush=True)
        extra = DRY_RUN_TRAIN if args.dry_run else ()
        results["train"] = run_train(args.out / "train", extra=extra, timeout_s=timeout, env=env)
        print(f"train: {results['train']['status']}", flush=True)
        _save(args, results)
    if "bench" not in args.skip:
        results["bench"] = {}
        reps = bench_reps(left(), args.bench_reserve)
        for i, (grid, strategies) in enumerate(BENCH_GRIDS):
            timeout = max(left() / (len(BENCH_GRIDS) - i), 10.0)
            extra = ("--quick", "--only", "0", "--reps", "2") if args.dry_run else ("--reps", str(reps))
            print(f"bench --grid {grid}: at most {timeout:.0f} s ...", flush=True)
            bench = run_bench(args.out / f"bench-{grid}", grid, strategies, extra=extra, timeout_s=timeout, env=env)
            results["bench"][grid] = bench
            print(f"bench --grid {grid}: {bench.get('validity', bench['status'])}", flush=True)
            _save(args, results)
    results["wall_s"] = round(time.monotonic() - start, 1)
    results["summary"] = summary(results)
    _save(args, results)
    print(f"{results['summary']}; {results['wall_s']:.0f} s; wrote {args.out / RESULTS_NAME}")
    failed = results.get("tests", {}).get("counts", {}).get("failed", 0)
    broken = [s for s in [results.get("train"), *results.get("bench", {}).values()] if s and s["status"] != "ok"]
    return 1 if failed or broken or "error" in device else 0


if __name__ == "__main__":
    sys.exit(main())
