"""Recipes and what is built from them: qflow run (train, then build), qflow compare sweeps, qflow search and the result tables."""
