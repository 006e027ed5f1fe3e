"""Benchmark every conv2d strategy against lax.conv_general_dilated and PyTorch; same options as `jaxconv bench`."""

import argparse
import sys

from jaxconv import _bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    _bench.add_arguments(parser)
    return _bench.run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
