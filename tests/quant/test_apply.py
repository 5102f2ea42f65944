import pytest
import torch
from torch import nn

from haq import BitConfig, HaqError, Precision
from haq.quant import QuantConv2d, Quantizer, QuantLinear, QuantSettings


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, Quantizer, torch.Tensor]:
    net = _net()
    x = torch.randn(64, 3, 12, 12)
    return net, Quantizer(net, x[:1], calibration_images=x[:32]), x[32:]


def test_layers_and_names(setup) -> None:
    _, q, _ = setup
    assert q.layer_names == ["0", "3", "6", "11"]
    assert [s.kind for s in q.layers] == ["conv", "dwconv", "conv", "linear"]


def test_user_model_untouched(setup) -> None:
    net, q, x = setup
    before = {k: v.clone() for k, v in net.state_dict().items()}
    q.apply("w4a4")(x)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(net[1], nn.BatchNorm2d)


def test_fp32_matches_float(setup) -> None:
    net, q, x = setup
    torch.testing.assert_close(q.apply("fp32")(x), net(x), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_error_grows_as_bits_shrink(setup) -> None:
    net, q, x = setup
    ref = net(x)
    errs = [float((q.apply(f"w{b}a{b}")(x) - ref).pow(2).mean()) for b in (16, 8, 4, 2)]
    assert errs == sorted(errs) and errs[0] < 1e-6 and errs[-1] > 100 * errs[1]


def test_mixed_config_places_layers(setup) -> None:
    _, q, _ = setup
    model = q.apply(BitConfig({"0": "fp32", "3": "w8a8", "6": "w4a32", "11": "w8a8"}))
    assert isinstance(model[0], nn.Conv2d) and not isinstance(model[0], QuantConv2d)
    assert isinstance(model[3], QuantConv2d) and model[3].precision == Precision(8, 8)
    assert model[6].a_scale is None and model[6].precision.weight_only
    assert isinstance(model[11], QuantLinear)
    w_int = model[3].w_int
    assert torch.equal(w_int, torch.round(w_int)) and w_int.abs().max() <= 127


def test_configs_reuse_calibration_and_weights(setup) -> None:
    _, q, x = setup
    calib = q.calibration
    q.apply("w6a8")
    cached = dict(q._weights)
    m2 = q.apply(BitConfig({"0": "w6a8", "3": "w6a8", "6": "w6a4", "11": "w6a8"}))
    assert q.calibration is calib
    assert q._weights.keys() == cached.keys()
    assert m2[3].weight is cached[("3", 6)][0]  # same tensor, not re-quantized


def test_activation_bits_need_calibration() -> None:
    net = _net()
    q = Quantizer(net, torch.randn(1, 3, 12, 12))
    q.apply("w8a32")  # weight-only works without data
    with pytest.raises(HaqError, match="calibration"):
        q.apply("w8a8")


def test_unknown_layer_rejected(setup) -> None:
    _, q, _ = setup
    with pytest.raises(HaqError, match="does not have"):
        q.apply(BitConfig({"nope": "w8a8"}, default="w8a8"))


def test_bias_correction_removes_mean_shift() -> None:
    net = _net()
    x = torch.randn(256, 3, 12, 12)
    ref = net(x)
    shifts = {}
    for bc in (False, True):
        q = Quantizer(
            net, x[:1], QuantSettings(ptq="bias-correction" if bc else "none"), calibration_images=x
        )
        out = q.apply("w3a32")(x)
        shifts[bc] = float((out - ref).mean(dim=0).abs().mean())
    assert shifts[True] < 0.7 * shifts[False]


@pytest.mark.parametrize("observer", ["minmax", "percentile", "mse"])
@pytest.mark.parametrize("granularity", ["channel", "tensor", "group"])
def test_settings_combinations_run(observer: str, granularity: str) -> None:
    net = _net()
    x = torch.randn(16, 3, 12, 12)
    q = Quantizer(
        net,
        x[:1],
        QuantSettings(observer=observer, granularity=granularity, group_size=8),
        calibration_images=x,
    )
    out = q.apply("w8a8")(x)
    assert torch.isfinite(out).all()
    assert (out.argmax(1) == net(x).argmax(1)).float().mean() > 0.8


def test_bad_settings() -> None:
    with pytest.raises(HaqError):
        QuantSettings(observer="entropy")
    with pytest.raises(HaqError):
        QuantSettings(granularity="row")


@torch.no_grad()
def test_integer_layers_requantize_outputs_and_absorb_relu(setup) -> None:
    _, q, x = setup
    assert q.relu_after == {"0", "3", "6"}
    model = q.apply(BitConfig({"0": "w8a8", "3": "w8a32", "6": "w16a16", "11": "w8a8"}))
    assert model[0].out_zero_point == 0  # ReLU absorbed: the grid starts at 0
    assert model[3].out_scale is None and model[6].out_scale is None  # no int8 kernel
    assert model[11].out_scale is not None and model[11].out_zero_point > 0  # logits are signed
    y = model[0](x)
    k = y / model[0].out_scale
    assert torch.allclose(k, torch.round(k), atol=1e-3) and k.min() >= 0 and k.max() <= 255


def test_skipping_requantization_changes_nothing(setup) -> None:
    _, q, x = setup
    model = q.apply("w8a8")
    assert isinstance(model[2], nn.Identity)  # absorbed ReLU (called once) became Identity
    with torch.no_grad():  # grid tags active: inputs already on the grid are not re-quantized
        tagged = model(x)
    with torch.inference_mode():  # no version counters: every input is quantized
        plain = model(x)
    assert torch.equal(tagged, plain)
    # an in-place edit invalidates the tag
    y = model[0](x)
    y.add_(0.01)
    assert not torch.equal(model[3].quantize_input(y), y)


def test_a_config_naming_its_refinement_gets_it() -> None:
    net = _net()
    x = torch.randn(48, 3, 12, 12)
    q = Quantizer(net, x[:1], calibration_images=x[:32])
    own = Quantizer(net, x[:1], QuantSettings(ptq="bias-correction"), calibration_images=x[:32])
    config = BitConfig.uniform("w4a8", q.layer_names)
    x = x[32:]
    sibling = q.for_config(config.with_ptq("bias-correction"))
    assert sibling is not q and sibling.settings.ptq == "bias-correction"
    assert q.for_config(config) is q and q.for_config(config.with_ptq("none")) is q
    assert sibling.for_config(config) is sibling  # a sibling's own configs name no refinement
    assert sibling.for_config(config.with_ptq("none")) is q  # one family, built once each
    assert sibling.calibration is q.calibration  # activations unchanged: statistics shared
    with torch.no_grad():
        got = q.apply(config.with_ptq("bias-correction"))(x)
        assert torch.equal(got, own.apply(config)(x))
        assert not torch.equal(got, q.apply(config)(x))


def test_refinement_needing_images_without_them_is_one_line() -> None:
    net = _net()
    x = torch.randn(2, 3, 12, 12)
    q = Quantizer(net, x[:1])
    with pytest.raises(HaqError, match="pass --calib-data"):
        q.for_config(BitConfig.uniform("w4a32", q.layer_names).with_ptq("adaround"))


def test_float_reference_is_the_users_network_under_cle() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()  # fmt: skip
    with torch.no_grad():
        net[1].bias.fill_(4.0)  # outputs above 6: ReLU6 -> ReLU changes the function
        x = torch.randn(8, 3, 10, 10)
        q = Quantizer(net, x[:1], QuantSettings(ptq="cle"))
        assert isinstance(q.base[2], nn.ReLU) and isinstance(net[2], nn.ReLU6)
        assert not torch.allclose(q.base(x), net(x), atol=1e-4)
        assert torch.allclose(q.float_model(x), net(x), atol=1e-5)
        plain = Quantizer(net, x[:1])
        assert plain.float_model is plain.base  # without CLE the folded base is the float model
