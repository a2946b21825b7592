"""Folding (PE/SIMD parallelism): FINN's folding rules, the exact cost model, the option selector, the resource-constrained optimizer and the fold step."""
