"""``python -m workloads.luc``: see ``workloads.luc.cli``."""
import sys

from workloads.luc.cli import main

if __name__ == "__main__":
    sys.exit(main())
