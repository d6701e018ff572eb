"""``python -m rinfer.server [flags]``: the same as ``rinfer serve``."""

import sys

from rinfer.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
