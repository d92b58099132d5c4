"""Layer-wise unified compression (LUC): per-layer sparsity and bit-width from measured
sensitivity, applied by pruning and fake quantization."""
from workloads.luc.compress import compress_model
from workloads.luc.policy import LayerPolicy, Policy
from workloads.luc.report import CompressionReport

__all__ = ["CompressionReport", "LayerPolicy", "Policy", "compress_model"]
