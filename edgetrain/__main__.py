"""``python -m edgetrain`` runs the command-line tool (see :mod:`edgetrain.cli`)."""
import sys

from .cli import main

sys.exit(main())
