"""QAT: starts exactly at the PTQ point, trains through straight-through rounding, recovers
accuracy a short fine-tune can recover, and leaves the original quantizer untouched."""

from __future__ import annotations

import pytest
import torch

from haq import HaqError
from haq.data import load_data
from haq.evaluate import build_setup
from haq.evaluate.evaluator import LocalEvaluator
from haq.quant.qat import QATLayer, finetune, lsq_weight
from haq.quant.quantizers import fake_quant_act, fake_quant_weight, weight_scales


def test_lsq_weight_starts_on_the_ptq_grid_and_has_gradients() -> None:
    w = torch.randn(8, 4, 3, 3)
    scale = weight_scales(w, 4).clone().requires_grad_(True)
    w_fq = fake_quant_weight(w, 4)
    wt = w.clone().requires_grad_(True)
    out = lsq_weight(wt, scale, 4, "channel", 128)
    assert torch.allclose(out, w_fq, atol=1e-6)
    out.pow(2).sum().backward()
    assert wt.grad is not None and scale.grad is not None and scale.grad.abs().sum() > 0


def test_activation_fake_quant_is_straight_through_inside_its_range() -> None:
    x = torch.tensor([-1.0, 0.1, 0.37, 0.9, 3.0], requires_grad=True)
    y = fake_quant_act(x, 0.01, 10, 7)  # grid covers [-0.1, 1.17]
    assert torch.equal(y.detach(), fake_quant_act(x.detach(), 0.01, 10, 7))
    y.sum().backward()
    assert x.grad is not None and x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


@pytest.fixture(scope="module")
def digits():  # noqa: ANN201 - an EvalSetup
    return build_setup("digits_cnn", data="digits", calib_data="digits:calib", calib_limit=64)


def test_finetune_recovers_a_low_bit_config_and_keeps_the_original(digits) -> None:
    q = digits.quantizer
    train = load_data("digits:calib", digits.loaded.preprocess)
    before = LocalEvaluator(q, digits.data, reuse_prefixes=False).evaluate("w2a8").metrics
    r = finetune(q, "w2a8", train, epochs=3, batch_size=32, say=None)
    after = LocalEvaluator(r.quantizer, digits.data, reuse_prefixes=False).evaluate("w2a8").metrics
    assert after.top1 > before.top1 + 5, (before.top1, after.top1)
    again = LocalEvaluator(q, digits.data, reuse_prefixes=False).evaluate("w2a8").metrics
    assert again.top1 == before.top1  # the original quantizer still holds its PTQ weights
    tuned = r.quantizer.apply("w2a8").conv2
    assert torch.equal(tuned.w_int, tuned.w_int.round()) and tuned.w_int.abs().max() <= 1
    assert len(r.losses) == 3 and r.steps == 3 * -(-len(train) // 32)


def test_finetune_refuses_unlabelled_data_and_float_configs(digits) -> None:
    q = digits.quantizer
    train = load_data("digits:calib", digits.loaded.preprocess)
    unlabelled = type(train)(train.x, None, train.classes, "unlabelled", train.indices)
    with pytest.raises(HaqError, match="labelled"):
        finetune(q, "w4a8", unlabelled, say=None)
    with pytest.raises(HaqError, match="nothing to fine-tune"):
        finetune(q, "fp32", train, say=None)


def test_qat_layer_learned_matches_its_forward() -> None:
    from haq.quant import Quantizer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    x = torch.randn(8, 3, 6, 6)
    layer = Quantizer(net, x[:1], calibration_images=x).apply("w3a8")[0]
    qat = QATLayer(layer)
    with torch.no_grad():
        qat.weight.add_(0.01 * torch.randn_like(qat.weight))
    w_fq, w_int, scale, _ = qat.learned()
    assert torch.allclose(qat.quantized_weight().detach(), w_fq, atol=1e-6)
    assert torch.allclose(w_int * scale.reshape(-1, 1, 1, 1), w_fq, atol=1e-6)
