"""The ``jaxconv`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="jaxconv",
        description="Convolution from lax.dynamic_slice + vmap, and a lab that learns a kernel to detect a pattern.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_bench(commands)
    return parser


def _add_bench(commands: argparse._SubParsersAction) -> None:
    from jaxconv import _bench

    bench = commands.add_parser("bench", help="time every conv2d strategy against lax and PyTorch (jit, CPU/GPU)")
    _bench.add_arguments(bench)
    bench.set_defaults(run=_bench.run)


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
