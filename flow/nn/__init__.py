"""The networks' side: datasets, training, QONNX export, and the quantization techniques behind one registry."""
