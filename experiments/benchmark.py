"""Benchmark every conv2d strategy against lax.conv_general_dilated and PyTorch; same options as `jaxconv bench`."""

import sys

from jaxconv import cli


def main() -> int:
    return cli.main(["bench", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
