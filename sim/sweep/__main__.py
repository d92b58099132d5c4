"""``python -m sim.sweep``: see ``sim.sweep.cli``."""
import sys

from sim.sweep.cli import main

sys.exit(main())
