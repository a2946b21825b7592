"""A PyTorch network as verification's first stage, able to run again on a sample with its quantizers watched.

>>> import numpy as np, torch
>>> ref = torch_reference(torch.nn.Linear(4, 3), np.ones((2, 4), np.float32))
>>> ref.name, ref.logits.shape, ref.labels.shape, ref.record(np.array([1])).outputs.shape
('pytorch', (2, 3), (2,), (1, 3))
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from flow.compat.brevitas import run_recording_quantizer_inputs
from flow.core.checks import Recorded, StageOutputs
from flow.nn.train import plain_tensor, predict_logits


def torch_reference(model: nn.Module, inputs: np.ndarray, name: str = "pytorch") -> StageOutputs:
    """``model``'s outputs on ``inputs`` (its own domain: what it is called with), labels when it scores
    classes, and ``record``: the run on some of them again, with every activation quantizer's input
    (:func:`flow.compat.brevitas.run_recording_quantizer_inputs`), for :mod:`flow.sim.forced`."""
    x = np.asarray(inputs, dtype=np.float32)
    scores = predict_logits(model, x)
    flat = scores.reshape(len(x), -1)

    def record(indices: np.ndarray) -> Recorded:
        was_training = model.training
        model.eval()
        try:
            y, seen = run_recording_quantizer_inputs(model, torch.from_numpy(x[np.asarray(indices)]))
        finally:
            model.train(was_training)
        return Recorded(seen, plain_tensor(y).float().cpu().numpy().reshape(len(indices), -1))

    labels = flat.argmax(axis=1) if scores.ndim == 2 and scores.shape[1] > 1 else None
    return StageOutputs(name, logits=flat, labels=labels, record=record)
