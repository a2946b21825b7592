"""Every workaround for the internals of finn-plus, qonnx, Brevitas and Optuna, one module per package; each has a test showing it is still needed."""
