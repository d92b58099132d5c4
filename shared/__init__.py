"""Helpers shared by ``sim``, ``workloads`` and ``dse`` (standard library only, so ``sim`` can
use them without importing torch or the other packages)."""
