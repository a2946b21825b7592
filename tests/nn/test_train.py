"""flow.nn.train on sklearn's digits (embedded, 8x8): learning, determinism, config checks, checkpoints."""

from __future__ import annotations

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from brevitas.quant import Int8WeightPerTensorFloat, Uint8ActPerTensorFloat
from torch import nn

from flow.core.errors import ConfigError, ModelFileError
from flow.nn.augment import ShiftRotate
from flow.nn.data import load_dataset
from flow.nn.train import (
    TrainConfig,
    TrainResult,
    evaluate,
    load_checkpoint,
    make_scheduler,
    predict_logits,
    save_checkpoint,
    train,
)


class Scale(nn.Module):
    def forward(self, x):
        return x / 255.0


def float_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(Scale(), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def quant_mlp(seed=0, bits=4):
    torch.manual_seed(seed)
    return nn.Sequential(
        Scale(), nn.Flatten(),
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=bits, return_quant_tensor=True),
        qnn.QuantLinear(64, 32, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits),
        nn.BatchNorm1d(32),
        qnn.QuantReLU(bit_width=bits, return_quant_tensor=True),
        qnn.QuantLinear(32, 10, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits),
    )


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def test_float_mlp_learns_digits(digits):
    tr, te = digits
    model = float_mlp()
    chance = evaluate(model, te)
    result = train(model, tr, TrainConfig(epochs=4, batch_size=32, lr=0.02), progress=False)
    assert isinstance(result, TrainResult) and result.epochs == 4 and len(result.history) == 4
    assert result.history[-1] < result.history[0] and result.final_loss == result.history[-1]
    acc = evaluate(model, te)
    assert acc > 0.8 and acc > chance + 0.5
    assert not model.training


def test_brevitas_quant_mlp_learns_digits(digits):
    tr, te = digits
    model = quant_mlp()
    train(model, tr, TrainConfig(epochs=4, batch_size=64, lr=0.02), progress=False)
    assert evaluate(model, te) > 0.8


def test_same_seed_gives_identical_weights(digits):
    tr, _ = digits
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.01, seed=7, max_train_samples=500)
    a, b = quant_mlp(), quant_mlp()
    ra = train(a, tr, cfg, progress=False)
    rb = train(b, tr, cfg, progress=False)
    assert ra.history == rb.history
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    c = quant_mlp()
    train(c, tr, TrainConfig(epochs=2, batch_size=64, lr=0.01, seed=8, max_train_samples=500), progress=False)
    assert not torch.equal(a[3].weight, c[3].weight)


def test_constant_schedule_zero_epochs_and_threads_restored(digits):
    tr, _ = digits
    before = torch.get_num_threads()
    model = float_mlp()
    w0 = model[2].weight.detach().clone()
    r = train(model, tr, TrainConfig(epochs=0, threads=1), progress=False)
    assert r.epochs == 0 and r.history == [] and np.isnan(r.final_loss)
    assert torch.equal(model[2].weight, w0)
    r = train(model, tr, TrainConfig(epochs=1, schedule="constant", threads=1, max_train_samples=129), progress=False)
    assert len(r.history) == 1 and torch.get_num_threads() == before


def test_progress_bar_shows_epochs_and_loss_only_when_asked(digits, capsys):
    tr, _ = digits
    train(float_mlp(), tr.subset(64), TrainConfig(epochs=1, batch_size=32), progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "2/2" in err and "loss " in err
    train(float_mlp(), tr.subset(64), TrainConfig(epochs=1, batch_size=32), progress=False)
    assert capsys.readouterr().err == ""


def test_loss_override_is_used(digits):
    tr, _ = digits
    calls = []

    def loss_fn(logits, labels, images):
        calls.append((logits.shape, labels.shape, images.shape))
        return nn.functional.cross_entropy(logits, labels) * 0.5

    train(float_mlp(), tr.subset(100), TrainConfig(epochs=1, batch_size=50), progress=False, loss_fn=loss_fn)
    assert calls == [((50, 10), (50,), (50, 1, 8, 8))] * 2


def test_predict_logits_and_evaluate_agree(digits):
    _, te = digits
    model = float_mlp().train()
    logits = predict_logits(model, te.images, batch_size=100)
    assert logits.shape == (len(te), 10) and logits.dtype == np.float32
    assert model.training  # mode restored
    assert evaluate(model, te, batch_size=7) == pytest.approx(float((logits.argmax(1) == te.labels).mean()))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": -1}, "epochs must be >= 0, got -1"),
        ({"epochs": 1.5}, "epochs must be >= 0"),
        ({"batch_size": 0}, "batch_size must be > 0, got 0"),
        ({"lr": 0}, "lr must be > 0"),
        ({"lr": float("nan")}, "lr must be > 0"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"max_train_samples": 0}, "max_train_samples must be > 0"),
        ({"threads": 0}, "threads must be > 0"),
        ({"optimizer": "sgd"}, "optimizer must be one of adam"),
        ({"schedule": "linear"}, "schedule must be one of onecycle, cosine, constant"),
        ({"max_shift": -1.0}, "max_shift must be a number from 0 to 8"),
        ({"max_degrees": 90}, "max_degrees must be a number from 0 to 45"),
        ({"seed": "x"}, "seed must be an integer"),
    ],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_checkpoint_round_trip(tmp_path, digits):
    tr, te = digits
    model = quant_mlp()
    train(model, tr, TrainConfig(epochs=1, batch_size=64, max_train_samples=300), progress=False)
    path = tmp_path / "ckpt" / "model.pt"
    save_checkpoint(model, path)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    fresh = load_checkpoint(quant_mlp(seed=5), path)
    np.testing.assert_array_equal(predict_logits(fresh, te.images), predict_logits(model, te.images))


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_checkpoint(float_mlp(), tmp_path / "nope.pt")
    evil = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Payload()}, evil)
    with pytest.raises(ModelFileError, match="cannot be loaded safely"):
        load_checkpoint(float_mlp(), evil)
    other = tmp_path / "other.pt"
    save_checkpoint(nn.Linear(3, 2), other)
    with pytest.raises(ModelFileError, match="does not fit"):
        load_checkpoint(float_mlp(), other)


def test_augmentation_warps_training_batches_only_and_is_seeded():
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 8:20, 12:16] = 255.0
    aug = ShiftRotate(max_shift=2.0, max_degrees=10.0)
    a, b = aug(x, torch.Generator().manual_seed(3)), aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 255.0
    assert abs(float(a.sum()) - float(x.sum())) / float(x.sum()) < 0.1  # shifted and turned, not erased
    assert torch.equal(ShiftRotate()(x, torch.Generator()), x)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=0.1)
    sched = make_scheduler(opt, TrainConfig(lr=0.1, schedule="cosine"), total=100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = lrs.index(max(lrs))
    assert peak == 4 and max(lrs) == pytest.approx(0.1)  # 5% warm-up
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:])) and lrs[-1] < 0.001


def test_augmented_training_differs_from_plain_and_is_deterministic():
    ds = load_dataset("digits", "train")

    def run(**kw):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        train(model, ds, TrainConfig(epochs=1, batch_size=64, lr=0.01, threads=1, **kw), progress=False)
        return model[1].weight.detach().clone()

    plain, aug1, aug2 = run(), run(max_shift=1.0, max_degrees=10.0), run(max_shift=1.0, max_degrees=10.0)
    assert torch.equal(aug1, aug2) and not torch.equal(plain, aug1)
