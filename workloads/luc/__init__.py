"""Layer-wise unified compression (LUC): per-layer sparsity and bit-width from measured
sensitivity, applied by pruning and fake quantization."""
from workloads.luc.policy import LayerPolicy, Policy

__all__ = ["LayerPolicy", "Policy"]
