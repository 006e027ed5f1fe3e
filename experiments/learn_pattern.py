"""Learn a kernel that detects a planted pattern: ``jaxconv train`` as a script, with the same options.

python experiments/learn_pattern.py --pattern cross --steps 600 --out runs/cross
"""

import sys

from jaxconv.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
