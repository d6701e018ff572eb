"""``python -m rinfer ...``: the ``rinfer`` command."""

import sys

from rinfer.cli import main

sys.exit(main())
