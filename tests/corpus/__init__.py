"""The bring-your-own-model conformance corpus: Brevitas networks exported the ways FINN users export them.

Built in code, small and fast (:mod:`tests.corpus.cases` lists every case): every
``brevitas_examples.bnn_pynq`` configuration exported as FINN's documentation does, a
MobileNet-v1 slice from ``brevitas_examples.imagenet_classification``, the structures FINN's
default flow cannot map (:mod:`tests.corpus.structures`), a 4-bit CNN with MaxPool, MLPs
with TopK and ArgMax heads, float biases, float inputs, ``dynamo=True`` exports, old opsets
and a shape-stripped export. ``tests/builder/test_conformance.py`` builds and verifies each
with ``--fps`` and ``--auto``; ``benchmarks/conformance.py`` runs FINN's builder beside qflow
on the same files.
"""
