"""``python -m nn_tracker`` runs the CLI."""

import sys

from nn_tracker.cli import main

sys.exit(main())
