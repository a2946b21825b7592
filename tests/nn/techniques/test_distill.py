"""Knowledge distillation: the loss by hand, the teacher, and a distilled student through FINN."""

import doctest
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flow.builder.pipeline import build
from flow.core.config import build_config
from flow.core.errors import ConfigError
from flow.nn.reference import torch_reference
from flow.nn.data import load_dataset
from flow.nn.export import export_qonnx
from flow.nn.techniques import distill
from flow.nn.techniques.distill import (
    distillation_loss,
    make_teacher,
    train_teacher,
    wider_kwargs,
)
from flow.nn.train import TrainConfig, evaluate, train
from models import build_model


class Fixed(nn.Module):
    """A 'teacher' returning fixed logits (ignores its input), with one parameter."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits[: x.shape[0]]


STUDENT = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
TEACHER = torch.tensor([[1.0, 2.0, 0.0], [-1.0, 0.5, 2.5]])
LABELS = torch.tensor([0, 2])
IMAGES = torch.zeros(2, 1, 2, 2)


def _softmax(row, t):
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def test_doctests():
    assert doctest.testmod(distill, optionflags=doctest.ELLIPSIS).failed == 0


def test_alpha_zero_is_cross_entropy():
    loss = distillation_loss(Fixed(TEACHER), temperature=4.0, alpha=0.0)
    assert torch.allclose(loss(STUDENT, LABELS, IMAGES), F.cross_entropy(STUDENT, LABELS))


@pytest.mark.parametrize("t, alpha", [(1.0, 1.0), (4.0, 0.7), (2.5, 0.3)])
def test_loss_matches_a_hand_computation(t, alpha):
    kl = 0.0
    for s_row, t_row in zip(STUDENT.tolist(), TEACHER.tolist()):
        p_t, p_s = _softmax(t_row, t), _softmax(s_row, t)
        kl += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
    kl /= len(STUDENT)  # batch mean of KL(teacher || student)
    ce = -sum(math.log(_softmax(row, 1.0)[y]) for row, y in zip(STUDENT.tolist(), LABELS.tolist())) / len(STUDENT)
    expected = alpha * t * t * kl + (1 - alpha) * ce
    got = distillation_loss(Fixed(TEACHER), temperature=t, alpha=alpha)(STUDENT, LABELS, IMAGES)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_student_equal_to_teacher_has_zero_soft_loss_and_gradient():
    student = TEACHER.clone().requires_grad_(True)
    loss = distillation_loss(Fixed(TEACHER), temperature=3.0, alpha=1.0)(student, LABELS, IMAGES)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert student.grad.abs().max().item() < 1e-6


def test_teacher_is_frozen_in_eval_mode():
    teacher = Fixed(TEACHER).train()
    loss_fn = distillation_loss(teacher, 4.0, 0.5)
    assert not teacher.training and not teacher.logits.requires_grad
    student = STUDENT.clone().requires_grad_(True)
    teacher.train()  # even if someone flips it back, the loss evaluates it in eval mode
    loss_fn(student, LABELS, IMAGES).backward()
    assert not teacher.training and teacher.logits.grad is None and student.grad is not None


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"temperature": -1.0}, "temperature must be > 0"),
    ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    ({"alpha": -0.1}, r"alpha must be in \[0, 1\]"),
])
def test_bad_settings_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        distillation_loss(Fixed(TEACHER), **kwargs)


def test_teachers_are_float_twins_same_or_twice_as_wide():
    same = make_teacher("tfc", "float", hidden=[16, 24])
    assert [same.layers[n].linear.out_features for n in ("fc0", "fc1", "fc2")] == [16, 24, 10]
    assert not any("Quant" in type(m).__name__ for m in same.modules())
    wide = make_teacher("tfc", "wider", hidden=[16, 24], weight_bits=1, act_bits=1)
    assert [wide.layers[n].linear.out_features for n in ("fc0", "fc1", "fc2")] == [32, 48, 10]
    cnv = build_model("cnv", in_shape=(1, 8, 8), convs=[(8, False), (8, True)], fc=[16])
    assert wider_kwargs(cnv) == {"convs": [(16, False), (16, True)], "fc": [32]}
    with pytest.raises(ConfigError, match="teacher must be one of float, wider, cnn"):
        make_teacher("tfc", "huge")


def test_distilled_student_trains_compiles_and_verifies(tmp_path):
    train_set, test_set = load_dataset("digits", "train"), load_dataset("digits", "test")
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.02)
    torch.manual_seed(0)
    teacher = make_teacher("tfc", "float", in_shape=(1, 8, 8), hidden=[32, 32])
    train_teacher(teacher, train_set, cfg, progress=False)
    assert evaluate(teacher, test_set) > 0.85 and not teacher.training
    student = build_model("tfc", in_shape=(1, 8, 8), hidden=[32, 32], weight_bits=2, act_bits=2)
    result = train(student, train_set, cfg, progress=False, loss_fn=distillation_loss(teacher, 4.0, 0.7))
    assert result.history[-1] < result.history[0]
    acc = evaluate(student, test_set)
    assert acc > 0.5
    onnx = tmp_path / "kd.onnx"
    export_qonnx(student, onnx, (1, 8, 8))
    x = test_set.images[:50].astype(np.float32)
    built = build(onnx, build_config(target="pynq-z1", target_fps=10000, verify_samples=50), tmp_path / "out",
                  verify_inputs=x, reference=torch_reference(student, x), accuracy=acc)
    assert built.report.verification.passed


def test_standardized_soft_term_ignores_the_students_logit_scale():
    a = distill.kd_loss(STUDENT, TEACHER, LABELS, temperature=2.0, alpha=1.0, standardized=True)
    b = distill.kd_loss(10 * STUDENT, TEACHER, LABELS, temperature=2.0, alpha=1.0, standardized=True)
    plain = distill.kd_loss(10 * STUDENT, TEACHER, LABELS, temperature=2.0, alpha=1.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-5) and plain.item() > 2 * a.item()


class Counting(nn.Module):
    """A float teacher that counts the images it has seen."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        return self.net(x / 16.0)


def test_cached_distillation_runs_the_teacher_once_and_matches_the_per_batch_loss():
    ds = load_dataset("digits", "train")
    teacher = Counting()
    cached = distill.CachedDistillation(teacher, temperature=3.0, alpha=0.6, standardized=True)
    student = build_model("tfc", in_shape=(1, 8, 8), hidden=[16], weight_bits=2, act_bits=2)
    train(student, ds, TrainConfig(epochs=2, batch_size=64, lr=0.02, threads=1), progress=False, loss_fn=cached)
    assert teacher.seen == len(ds)  # once over the training set, not once per step
    x, y = torch.from_numpy(ds.images[:32]).float(), torch.from_numpy(ds.labels[:32]).long()
    s = torch.randn(32, 10)
    per_batch = distillation_loss(teacher, 3.0, 0.6, standardized=True)(s, y, x)
    assert cached(s, y, x, cached.targets(ds)[:32]).item() == pytest.approx(per_batch.item(), rel=1e-5)


def test_cnn_teacher_fits_the_students_images_and_refuses_tiny_ones():
    t = make_teacher("tfc", "cnn", weight_bits=1, act_bits=1)
    assert isinstance(t, distill.SmallCNN) and t(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert not any("Quant" in type(m).__name__ for m in t.modules())
    with pytest.raises(ConfigError, match="teacher 'cnn' needs images of at least 12x12 pixels"):
        make_teacher("tfc", "cnn", in_shape=(1, 8, 8))


def test_live_teacher_sees_every_training_batch():
    ds = load_dataset("digits", "train")
    teacher = Counting()
    job_cfg = TrainConfig(epochs=2, batch_size=64, lr=0.02, threads=1, max_shift=1.0)
    student = build_model("tfc", in_shape=(1, 8, 8), hidden=[16], weight_bits=2, act_bits=2)
    train(student, ds, job_cfg, progress=False, loss_fn=distillation_loss(teacher, 2.0, 0.5))
    assert teacher.seen >= 2 * (len(ds) - 1)  # every (augmented) batch of both epochs


def test_distill_options_choose_cached_or_live_teacher_logits():
    opts = distill.DistillOptions(teacher="cnn", cache_logits=False, standardize=True, temperature=1.0, alpha=0.5)
    assert distill.Distill().label(opts) == "KD(cnn, T=1, a=0.5, std, live)"
    assert distill.Distill().label(distill.DistillOptions()) == "KD(float, T=4, a=0.7)"
