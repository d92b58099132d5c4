"""``python -m workloads.luc``: see ``workloads.luc.cli``."""
import sys

from workloads.luc.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
