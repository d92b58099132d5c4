"""Early exits that work: tuned-lens translators before the shared norm and tied head, their
distillation on cached hidden states, and the scoring of exits, votes and early-exit decisions.

- ``translator``: the affine (optionally low-rank) map, installed on a model per exit layer;
- ``states``: hidden states of a split at chosen layers, cached on disk;
- ``distill``: KL distillation to the final layer (and a least-squares warm start);
- ``scoring``: per-position stats, perplexity, expected calibration error, calibrated votes;
- ``study``: the whole measurement behind ``python -m workloads.exits``.
"""
