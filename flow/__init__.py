"""qflow: low-bit neural networks from Brevitas to FINN dataflow designs, estimated and verified."""

__version__ = "0.1.0"
