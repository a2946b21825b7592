"""Simulation: the batched executor of every flow stage, verification of each stage against the one before, and RTL simulation of the generated hardware."""
