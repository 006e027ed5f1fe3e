"""The ``jaxconv`` command line.

``jaxconv train`` learns a kernel that detects a planted pattern and writes a run directory; ``jaxconv bench``
times the convolution (:mod:`jaxconv.evidence._bench`). Every flag is
checked by its argparse ``type=`` function or right after parsing, so bad input ends with exit status 2 and
one line naming the flag — never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

PEER_TIMEOUT_S = 60
"""``--peer-timeout``'s default: seconds without a heartbeat before a process counts as lost."""

TASK_FLAGS = {
    "pattern": "--pattern",
    "image_shape": "--image-size",
    "instances": "--instances",
    "background": "--background",
    "density": "--density",
    "noise_std": "--noise-std",
    "amplitude": "--amplitude",
}
"""``jaxconv train``'s flag for each :class:`~jaxconv.lab.PlantedPatternTask` argument."""

GROUP_OF = {
    "eval_images": "output",
    "eval_seed": "output",
    "checkpoint_every": "checkpoints and numerical faults",
    "keep": "checkpoints and numerical faults",
    "max_nonfinite": "checkpoints and numerical faults",
}
"""The ``--help`` section of a :class:`~jaxconv.lab.TrainConfig` field's flag (default: training)."""


NO_CACHE_ENV = "JAXCONV_NO_COMPILE_CACHE"
"""Set to ``1`` to keep ``jaxconv train`` from using its persistent compilation cache (as ``--no-compile-cache``)."""
COMPILE_CACHE_HELP = "$XDG_CACHE_HOME/jaxconv/jax (~/.cache/jaxconv/jax)"


def compile_cache_dir(env: Mapping[str, str]) -> str:
    """Where ``jaxconv train`` keeps compiled programs: the user's cache directory, never the test suite's.

    Examples:
      >>> from jaxconv.cli import compile_cache_dir
      >>> compile_cache_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}), compile_cache_dir({"HOME": "/h"})
      ('/c/jaxconv/jax', '/h/.cache/jaxconv/jax')
    """
    root = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(root, "jaxconv", "jax")


def _use_compile_cache(args: argparse.Namespace) -> str | None:
    """Turns on JAX's persistent compilation cache in :func:`compile_cache_dir` (the three compiles of a default
    run are the same every time), unless ``--no-compile-cache``, ``$JAXCONV_NO_COMPILE_CACHE`` or the user's own
    JAX cache setting says otherwise; returns the folder in use, or ``None``."""
    import jax

    own = getattr(jax.config, "jax_compilation_cache_dir", None)
    if own or args.no_compile_cache or os.environ.get(NO_CACHE_ENV, "") not in ("", "0"):
        return own or None
    folder = compile_cache_dir(os.environ)
    jax.config.update("jax_compilation_cache_dir", folder)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``prog: error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _int_at_least(low: int) -> Callable[[str], int]:
    """A flag's ``type=``: an int ``>= low`` (the library's own check, said as argparse says it)."""
    from jaxconv._checks import Allowed

    return _knob_type(f"int>={low}", Allowed("int", low=low))


def _float_where(allowed: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """A flag's ``type=``: a finite number for which ``ok`` holds, ``allowed`` in words."""
    from jaxconv._checks import Allowed

    return _knob_type("number", Allowed("number", describe=allowed, ok=ok))


def _pair(text: str, seps: str, low: int, what: str) -> tuple[int, int]:
    parts = text
    for sep in seps:
        parts = parts.replace(sep, " ")
    try:
        values = [int(p) for p in parts.split()]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < low:
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
    return values[0], values[1]


def parse_size(text: str) -> tuple[int, int]:
    """``--image-size``/``--kernel-size``: ``N`` or ``HxW`` (ints >= 1)."""
    return _pair(text, "xX", 1, "N or HxW with ints >= 1, e.g. 32 or 24x40")


def parse_instances(text: str) -> tuple[int, int]:
    """``--instances``: ``N`` or ``MIN,MAX`` (ints >= 0)."""
    return _pair(text, ",", 0, "N or MIN,MAX with ints >= 0, e.g. 1,3")


def parse_columns(text: str) -> tuple[int, int]:
    """``--train-columns``: ``LO,HI`` (ints >= 0; the config checks ``LO < HI <= Wo``)."""
    if text.count(",") != 1:
        raise argparse.ArgumentTypeError(f"must be LO,HI with ints >= 0, e.g. 0,14; got {text!r}")
    return _pair(text, ",", 0, "LO,HI with ints >= 0, e.g. 0,14")


def parse_pattern(text: str) -> Any:
    """``--pattern``: a name from ``PATTERNS`` or rows of 0/1 digits separated by commas (``110,100``)."""
    from jaxconv.lab._data import PATTERNS

    if text in PATTERNS:
        return text
    rows = text.split(",")
    if not all(rows) or not all(set(r) <= {"0", "1"} for r in rows) or len({len(r) for r in rows}) != 1:
        raise argparse.ArgumentTypeError(
            f"must be one of {', '.join(PATTERNS)} or rows of 0/1 digits of equal length, e.g. 110,100; got {text!r}"
        )
    return tuple(tuple(int(c) for c in row) for row in rows)


def parse_address(text: str) -> str:
    """``--coordinator``: ``HOST:PORT`` with a port in ``[1, 65535]`` (``[::1]:PORT`` for an IPv6 host), or ``auto``."""
    if text == "auto":
        return text
    host, sep, port = text.rpartition(":")
    if not (sep and host and port.isdigit() and 1 <= int(port) <= 65535):
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, a port in [1, 65535], e.g. 10.0.0.1:1234; got {text!r}")
    return text


def _knob_type(name: str, allowed: Any) -> Callable[[str], Any]:
    """The argparse ``type=`` that checks a flag's text as ``allowed`` (a :class:`jaxconv._checks.Allowed`, e.g.
    a :class:`~jaxconv.lab.TrainConfig` field's) does, its error one line: ``must be ...; got '...'``."""

    def parse(text: str) -> Any:
        try:
            return allowed.check("jaxconv train", name, allowed.parse(text))
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {allowed.describe}; got {text!r}") from None

    parse.__name__ = name
    return parse


def knob_flags() -> dict[str, str]:
    """``{TrainConfig field: its jaxconv train flag}`` — one flag per field but the task (whose flags are
    :data:`TASK_FLAGS`).

    Examples:
      >>> from jaxconv.cli import knob_flags
      >>> knob_flags()["batch_size"], knob_flags()["kernel_shape"]
      ('--batch-size', '--kernel-size')
    """
    from jaxconv.lab import TrainConfig

    fields = [f for f in dataclasses.fields(TrainConfig) if f.name != "task"]
    return {f.name: f.metadata.get("flag") or "--" + f.name.replace("_", "-") for f in fields}


def _add_config_flags(parser: argparse.ArgumentParser, groups: dict[str, Any]) -> None:
    from jaxconv.lab import TrainConfig

    flags = knob_flags()
    for field in dataclasses.fields(TrainConfig):
        if field.name == "task":
            continue
        allowed, default = field.metadata["allowed"], field.default
        options: dict[str, Any] = {"default": default, "dest": field.name}
        if field.metadata.get("cli") == "size":
            options.update(type=parse_size, metavar="N|HxW")
        elif field.metadata.get("cli") == "columns":
            options.update(type=parse_columns, metavar="LO,HI")
        elif allowed.kind == "choice":
            options["choices"] = allowed.choices
        else:
            options.update(
                type=_knob_type(field.name, allowed),
                metavar={"int_or_auto": "auto|N", "int": "N"}.get(allowed.kind, "X"),
            )
        group = groups[GROUP_OF.get(field.name, "training")]
        group.add_argument(flags[field.name], help=f"{field.metadata['help']} ({default})", **options)


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from jaxconv.lab import PlantedPatternTask
    from jaxconv.lab._data import BACKGROUNDS
    from jaxconv.lab._preempt import EXIT_PEER_LOST, EXIT_PREEMPTED

    d = {f.name: f.default for f in dataclasses.fields(PlantedPatternTask)}
    task = parser.add_argument_group("task")
    task.add_argument("--pattern", type=parse_pattern, default=d["pattern"], help="a name or rows like 110,100")
    task.add_argument("--image-size", type=parse_size, default=d["image_shape"], metavar="N|HxW", help="(32)")
    task.add_argument(
        "--instances",
        type=parse_instances,
        default=d["instances"],
        metavar="N|MIN,MAX",
        help="planted copies per image (1,3)",
    )
    # A photo background needs its photographs as an array: it is made in Python, not on the command line.
    choices = [b for b in BACKGROUNDS if b != "photo"]
    task.add_argument("--background", choices=choices, default=d["background"], help="(binary)")
    task.add_argument(
        "--density",
        type=_float_where("a number in [0, 1]", lambda v: 0 <= v <= 1),
        default=d["density"],
        help="binary background: P(pixel = 1) (0.3)",
    )
    positive = _float_where("a number > 0", lambda v: v > 0)
    task.add_argument(
        "--noise-std", type=positive, default=d["noise_std"], help="gaussian background's noise std (1.0)"
    )
    task.add_argument(
        "--amplitude", type=positive, default=d["amplitude"], help="gaussian background's pattern amplitude (1.0)"
    )
    titles = ("training", "output", "checkpoints and numerical faults")
    groups = {title: parser.add_argument_group(title) for title in titles}
    _add_config_flags(parser, groups)
    out = groups["output"]
    out.add_argument("--out", metavar="DIR", default=None, help="run directory (runs/<timestamp>)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    out.add_argument(
        "--no-compile-cache",
        action="store_true",
        help=f"do not keep compiled programs in {COMPILE_CACHE_HELP} for the next run (also: {NO_CACHE_ENV}=1); "
        "JAX_COMPILATION_CACHE_DIR, if set, is used instead",
    )
    safety = groups["checkpoints and numerical faults"]
    safety.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest usable checkpoint in OUT/checkpoints (needs --out)",
    )
    safety.add_argument(
        "--debug-nans",
        action="store_true",
        help="turn on JAX's NaN checking (raises at the first NaN, with its traceback)",
    )
    parser.epilog = (
        f"Checkpoints go to OUT/checkpoints/ckpt-<step>.npz. SIGTERM or SIGINT: one after the dispatch in flight, "
        f"then exit status {EXIT_PREEMPTED}; a lost peer (multi-host): exit status {EXIT_PEER_LOST}."
    )
    _add_scale_arguments(
        parser.add_argument_group("devices and hosts (data parallel: the same result to float32 rounding)")
    )


def _add_scale_arguments(scale: Any) -> None:
    from jaxconv.lab._preempt import EXIT_PEER_LOST

    scale.add_argument(
        "--coordinator",
        type=parse_address,
        default=None,
        metavar="HOST:PORT|auto",
        help="multi-host: process 0's address (auto: let JAX detect SLURM, Open MPI, ...); calls "
        "jax.distributed.initialize and trains one model over every process's devices; process 0 alone writes OUT",
    )
    # (flag, lowest value, default, metavar, help): the integer flags of devices and hosts
    flags = [
        ("--devices", 1, None, "N", "shard each batch over this process's first N devices; --batch-size must be a "
         "multiple of the total device count (one device)"),
        ("--num-processes", 1, None, "P", "multi-host: how many processes (needed with --coordinator HOST:PORT)"),
        ("--process-id", 0, None, "I", "multi-host: this process's rank in [0, P) (needed with HOST:PORT)"),
        ("--peer-timeout", 1, PEER_TIMEOUT_S, "SECONDS", "multi-host: a process silent this long counts as lost and "
         f"the others exit with status {EXIT_PEER_LOST} ({PEER_TIMEOUT_S})"),
    ]  # fmt: skip
    for flag, low, default, metavar, text in flags:
        scale.add_argument(flag, type=_int_at_least(low), default=default, metavar=metavar, help=text)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, one subparser per command.

    Examples:
      >>> from jaxconv.cli import build_parser
      >>> args = build_parser().parse_args(["train", "--steps", "5", "--pattern", "110,100"])
      >>> args.steps, args.pattern, args.image_size
      (5, ((1, 1, 0), (1, 0, 0)), (32, 32))
    """
    parser = _Parser(
        prog="jaxconv",
        description="Convolution from lax.dynamic_slice + vmap, and a lab that learns a kernel to detect a pattern.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="learn a kernel that detects a planted pattern",
        description="Learn, by backpropagation through conv2d, a kernel and bias that detect a planted pattern; "
        "compare with the matched filter on held-out images; write a run directory.",
    )
    _add_train_arguments(train)
    train.set_defaults(run=run_train, parser=train)
    _add_bench(commands)
    return parser


def _vector_width(text: str) -> int:
    """``--vector-width``: a vector register width XLA:CPU can prefer, in bits."""
    if text not in ("128", "256", "512"):
        raise argparse.ArgumentTypeError(f"must be 128, 256 or 512; got {text!r}")
    return int(text)


def _strategies(text: str) -> tuple[str, ...]:
    from jaxconv.evidence._bench import JAXCONV_STRATEGIES

    names = tuple(dict.fromkeys(text.split(",")))
    if not set(names) <= set(JAXCONV_STRATEGIES) or "auto" not in names:
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated list of {', '.join(JAXCONV_STRATEGIES)} that includes auto; got {text!r}"
        )
    return names


def _add_bench(commands: argparse._SubParsersAction) -> None:
    from jaxconv.evidence._bench import GRIDS, JAXCONV_STRATEGIES

    bench = commands.add_parser(
        "bench",
        help="time every conv2d strategy against lax and PyTorch (jit, CPU/GPU)",
        description="Time every conv2d strategy, lax.conv_general_dilated and PyTorch's conv2d in rounds of a "
        "fresh random order; print medians, the run's validity (identical programs must time alike) and the "
        "floors; write bench.json and bench.png. Threads: XLA and torch use the cores the process may run on "
        "(set them with taskset).",
    )
    bench.add_argument(
        "--grid",
        choices=(*GRIDS, "template"),
        default="main",
        help="main: the CPU grid; gpu: sizes for a GPU; local: locally connected layers against lax's; template: "
        "match_template against scikit-image and OpenCV (the images extra; --strategies and torch do not apply) (main)",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="a tiny version of the grid (smoke test), 2 rounds (conv grids: blocks of 2 calls)",
    )
    bench.add_argument(
        "--reps",
        type=_int_at_least(1),
        default=None,
        metavar="R",
        help="timed rounds per point, each contender one block of calls per round (21; quick: 2)",
    )
    bench.add_argument(
        "--block",
        type=_int_at_least(1),
        default=None,
        metavar="B",
        help="calls per contender and round: the first is recorded apart, then untimed calls run for 30 ms, then "
        "B-1 timed calls whose median is the round's sample (warm calls, as in a training loop); not with --grid "
        "template, which times one call a round (5; quick: 2)",
    )
    bench.add_argument(
        "--warmup", type=_int_at_least(0), default=2, metavar="W", help="untimed rounds before timing (2)"
    )
    bench.add_argument(
        "--seed", type=_int_at_least(0), default=0, help="seed of the rounds' random order, recorded in bench.json (0)"
    )
    bench.add_argument(
        "--only", type=_int_at_least(0), nargs="+", default=None, metavar="I", help="indices into the grid to run (all)"
    )
    bench.add_argument(
        "--strategies",
        type=_strategies,
        default=JAXCONV_STRATEGIES,
        metavar="S,S,...",
        help=f"conv2d strategies to time, auto among them ({','.join(JAXCONV_STRATEGIES)})",
    )
    bench.add_argument(
        "--vector-width",
        type=_vector_width,
        default=None,
        metavar="BITS",
        help="also time auto compiled for XLA:CPU vectors of BITS (128, 256 or 512; compiler_options "
        "xla_cpu_prefer_vector_width, per program), as the contender auto_vwBITS (off)",
    )
    bench.add_argument(
        "--out", type=Path, default=Path("runs/bench"), metavar="DIR", help="directory for bench.json/png (runs/bench)"
    )
    bench.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    bench.add_argument("--no-plot", action="store_true", help="skip the PNG")
    bench.set_defaults(run=run_bench, parser=bench)


def run_bench(args: argparse.Namespace) -> int:
    """Runs ``jaxconv bench`` with parsed ``args`` (``--only`` checked against the grid, ``--block`` refused with the
    template grid); returns the exit status."""
    from jaxconv.evidence import _bench

    fail = (getattr(args, "parser", None) or build_parser()).error
    if args.grid == "template" and args.block is not None:
        fail(f"argument --block: --grid template times one call a round (as its committed results); got {args.block}")
    if args.grid == "template" and args.vector_width is not None:
        fail(f"argument --vector-width: --grid template times no conv2d contender; got {args.vector_width}")
    if args.grid == "template":
        from jaxconv.evidence import _template_bench

        size = len(_template_bench.template_grid(args.quick))
    else:
        size = len(_bench.grid_for(args.grid, args.quick))
    bad = [i for i in args.only or () if i >= size]
    if bad:
        which = f"--grid {args.grid}" + (" --quick" if args.quick else "")
        fail(f"argument --only: indices must be in [0, {size - 1}] ({which} has {size} points); got {bad[0]}")
    if args.out.exists() and not args.out.is_dir():
        fail(f"argument --out: must be a directory; got the file {str(args.out)!r}")
    if args.grid == "template":
        return _template_bench.run(args)
    return _bench.run(args)


def _flag_message(err: Exception) -> str:
    """A library error about one argument, said as argparse says it: ``argument --flag: must be ...; got ...``."""
    flag = {**TASK_FLAGS, **knob_flags(), "devices": "--devices", "path": "--out"}.get(getattr(err, "argument", ""))
    if flag is None:
        return " ".join(str(err).split())
    return f"argument {flag}: must be {err.allowed}; got {err.given!r}"  # type: ignore[attr-defined]


def _train_devices(per_process: int | None, multihost: bool) -> Any:
    """What ``fit(devices=...)`` gets: ``None``, ``N``, or under ``--coordinator`` every process's first ``N``."""
    if not multihost:
        return per_process
    import jax

    from jaxconv._checks import fail

    if per_process is None:
        return jax.devices()
    local = len(jax.local_devices())
    if per_process > local:
        raise fail("jaxconv train", "devices", f"an int in [1, {local}] (this process's devices)", per_process)
    chosen = []
    for process in range(jax.process_count()):
        chosen += [d for d in jax.devices() if d.process_index == process][:per_process]
    return chosen


def _start_distributed(args: argparse.Namespace, fail: Callable[[str], NoReturn]) -> bool:
    """Checks the multi-host flags and calls ``jax.distributed.initialize`` under ``--coordinator``; False if it
    failed (the error printed)."""
    import jax

    from jaxconv.lab._preempt import distributed_options

    if args.coordinator is None and (args.num_processes, args.process_id) != (None, None):
        fail("argument --coordinator: --num-processes and --process-id need --coordinator HOST:PORT (or auto)")
    if args.coordinator not in (None, "auto") and None in (args.num_processes, args.process_id):
        fail("argument --coordinator: --coordinator HOST:PORT needs --num-processes and --process-id")
    if None not in (args.num_processes, args.process_id) and args.process_id >= args.num_processes:
        fail(f"argument --process-id: must be < --num-processes ({args.num_processes}); got {args.process_id}")
    if args.coordinator is None:
        return True
    try:  # before anything touches a device; "auto": JAX detects SLURM, Open MPI, TPU pods, ...
        address = None if args.coordinator == "auto" else args.coordinator
        jax.distributed.initialize(
            address, args.num_processes, args.process_id, **distributed_options(args.peer_timeout)
        )
    except Exception as err:  # a coordinator that cannot be reached, no cluster detected, ...
        print(f"jaxconv train: error: jax.distributed.initialize: {' '.join(str(err).split())}", file=sys.stderr)
        return False
    return True


def _config_from(args: argparse.Namespace) -> Any:
    """The run's :class:`~jaxconv.lab.TrainConfig`, from the task flags and one flag per config field."""
    from jaxconv.lab import PlantedPatternTask, TrainConfig

    task = PlantedPatternTask(**{name: getattr(args, flag[2:].replace("-", "_")) for name, flag in TASK_FLAGS.items()})
    return TrainConfig(task, **{name: getattr(args, name) for name in knob_flags()})


def _prepare_run(args: argparse.Namespace, fail: Callable[[str], NoReturn]) -> tuple[Any, Any, str, bool]:
    """``(config, devices, out, writer)`` for ``jaxconv train``, every flag checked (exit 2 naming it)."""
    import jax
    import numpy as np

    from jaxconv.evidence import _report
    from jaxconv.lab._checkpoint import list_checkpoints

    try:
        config = _config_from(args)
        if args.eval_images < 1:
            raise ValueError(
                f"argument --eval-images: must be an int >= 1 (the report scores them); got {args.eval_images}"
            )
        if args.resume and args.out is None:
            raise ValueError("argument --resume: needs --out DIR, the run directory to continue")
        devices = _train_devices(args.devices, args.coordinator is not None)
        if devices is not None:
            from jaxconv.lab._fit import batch_mesh

            batch_mesh(devices, config.batch_size)
        writer = args.coordinator is None or jax.process_index() == 0
        out = _report.prepare_out(args.out or _report.default_out()) if writer else (args.out or "")
    except (ValueError, TypeError) as err:
        fail(_flag_message(err))
    taken = writer and not args.resume and bool(list_checkpoints(os.path.join(out, "checkpoints")))
    if jax.process_count() > 1:  # only process 0 sees OUT: the others learn its verdict rather than wait for it
        from jax.experimental import multihost_utils

        taken = bool(multihost_utils.broadcast_one_to_all(np.int32(taken)))
    if taken:
        held = out if writer else "process 0's --out"
        fail(f"argument --out: {held} already holds checkpoints; pass --resume to continue it, or another --out")
    return config, devices, out, writer


def _train_with_progress(args: argparse.Namespace, config: Any, devices: Any, out: str, writer: bool) -> Any:
    """Runs ``fit`` with a progress bar and one-line warnings; returns its result (fit's exceptions propagate)."""
    import jax
    from tqdm import tqdm

    from jaxconv.lab import fit

    bar = tqdm(
        total=None if config.steps == "auto" else config.steps,
        disable=args.no_progress or not writer,
        desc=f"train -> {out}",
        unit="step",
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def progress(state: Any, losses: Any) -> None:
        bar.update(int(state.step) - bar.n)
        bar.set_postfix(loss=f"{float(losses[-1]):.4f}")

    def one_line_warning(message: Any, category: Any, *_: Any, **__: Any) -> None:
        bar.clear()
        print(f"jaxconv train: warning: {message}", file=sys.stderr)

    with bar, warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.showwarning = one_line_warning
        warnings.simplefilter("always")
        if args.debug_nans:
            stack.enter_context(jax.debug_nans(True))
        return fit(
            config=config if writer else dataclasses.replace(config, eval_images=0),
            checkpoint_dir=os.path.join(out, "checkpoints"),
            resume=args.resume,
            callback=progress,
            devices=devices,
        )


def run_train(args: argparse.Namespace) -> int:
    """Runs ``jaxconv train`` with parsed ``args``; returns the exit status."""
    started = time.perf_counter()
    from jaxconv._env import versions
    from jaxconv.evidence import _report
    from jaxconv.lab import CheckpointError, NonFiniteError, PeerLostError, Preempted
    from jaxconv.lab._preempt import EXIT_PEER_LOST, EXIT_PREEMPTED

    fail = (getattr(args, "parser", None) or build_parser()).error
    _use_compile_cache(args)
    if not _start_distributed(args, fail):
        return 1
    config, devices, out, writer = _prepare_run(args, fail)
    if writer:
        count = 1 if devices is None else (devices if isinstance(devices, int) else len(devices))
        run = {"train": config.to_dict(), "devices": count, "num_processes": args.num_processes or 1}
        _report.write_json(os.path.join(out, "config.json"), {**run, "versions": versions()})
    try:
        result = _train_with_progress(args, config, devices, out, writer)
    except CheckpointError as err:
        fail(f"argument --resume: {err}")
    except NonFiniteError as err:
        print(f"jaxconv train: error: {err}", file=sys.stderr)
        return 1
    except Preempted as err:
        print(f"jaxconv train: {err}; continue with --resume", file=sys.stderr)
        return EXIT_PREEMPTED
    except PeerLostError as err:
        print(f"jaxconv train: error: {err}; no checkpoint written after it", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # Leave now: at a normal exit JAX's runtime would wait for the lost process at its shutdown barrier.
        os._exit(EXIT_PEER_LOST)
    if writer:
        _report_run(args, config, result, out, time.perf_counter() - started)
    return 0


def _report_run(args: argparse.Namespace, config: Any, result: Any, out: str, wall: float) -> None:
    """Writes the run directory's metrics, history, params and figures, and prints the table."""
    from jaxconv.evidence import _report
    from jaxconv.lab import evaluate, matched_filter

    task = config.task
    if result.resumed_from:
        print(f"resumed from step {result.resumed_from}", file=sys.stderr)
    baseline = matched_filter(task, config.kernel_shape)
    baseline_metrics = evaluate(baseline, task, num_images=config.eval_images, seed=config.eval_seed)
    timing = {k: round(v, 4) for k, v in result.timing.items()}
    metrics = {**result.metrics, "matched_filter": baseline_metrics, "timing": timing}
    _report.write_json(os.path.join(out, "metrics.json"), metrics)
    _report.write_history(os.path.join(out, "history.jsonl"), result.history)
    _report.write_params(os.path.join(out, "final_params.npz"), result.params)
    if not args.no_figures:
        cosine = result.metrics["kernel_cosine"]
        if config.model == "conv":  # the other detectors have no one kernel to show beside the matched filter
            _report.plot_kernels(os.path.join(out, "kernel.png"), task, result.params, baseline, cosine)
        _report.plot_detections(os.path.join(out, "detections.png"), task, result.params)
        _report.plot_history(os.path.join(out, "training.png"), result.history)
    print(_report.format_table({"learned": result.metrics, "matched filter": baseline_metrics}))
    if result.skipped_steps:
        print(f"{result.skipped_steps} steps skipped: non-finite loss or gradient")
    print(
        f"{config.eval_images} held-out images, {result.metrics['tp'] + result.metrics['fn']} pattern positions; "
        f"trained steps {result.resumed_from + 1}-{len(result.history)}{_auto_note(result.validation)} "
        f"in {timing['wall_s']:.2f} s, of which {timing['compile_s']:.2f} s compiling; "
        f"steady state {timing['steps_per_s']:.0f} steps/s, {timing['images_per_s']:.0f} images/s; wall {wall:.1f} s"
    )
    print(f"wrote {out}")


def _auto_note(validation: dict[str, Any] | None) -> str:
    if validation is None:
        return ""
    if validation["average_precision"] is not None:  # gaussian: trained to the end of the learning-rate decay
        return (
            f" (auto: learning rate decayed to 0; threshold calibrated on the validation draw by "
            f"{validation['bias_shift']:+.3f}, its AP {validation['average_precision']:.3f})"
        )
    if validation["errors"]:
        return f" (auto: stopped with {validation['errors']} errors on the validation draw)"
    return f" (auto: validation draw separated; bias calibrated by {validation['bias_shift']:+.3f})"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxconv`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
