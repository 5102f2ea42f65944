from haq import BitConfig
from haq.cost import CostModel, SizeBopsModel
from haq.models.spec import LayerSpec


def _layers() -> list[LayerSpec]:
    conv = LayerSpec(
        "c", "conv", 0, 3, 8, (3, 3), (1, 1), 1, (4, 4), (4, 4), 4 * 4 * 8 * 27, 8 * 27 + 8
    )
    fc = LayerSpec("f", "linear", 1, 8, 2, (1, 1), (1, 1), 1, (1, 1), (1, 1), 16, 18)
    return [conv, fc]


def test_size_and_bops() -> None:
    m = SizeBopsModel(_layers())
    assert isinstance(m, CostModel)
    fp = m.score(BitConfig.uniform("fp32"))
    assert fp.size_bytes == (216 + 16) * 4 + (8 + 2) * 4
    assert fp.bops == (3456 + 16) * 32 * 32
    q = m.score(BitConfig({"c": "w4a8", "f": "fp32"}))
    assert q.bops == 3456 * 4 * 8 + 16 * 32 * 32
    assert q.size_bytes == 216 * 4 // 8 + 16 * 4 + (8 + 2) * 4 + 8 * 4
    assert q.latency_ms is None and q.model == "size-bops"


def test_group_wise_weight_only_layers_count_a_scale_per_group() -> None:
    fc = LayerSpec("f", "linear", 0, 300, 2, (1, 1), (1, 1), 1, (4, 1), (4, 1), 2400, 602)
    grouped = SizeBopsModel([fc], weight_only_group=128)
    per_channel = SizeBopsModel([fc])
    bias = 2 * 4
    # K = 300 -> 3 groups of 128 per output channel, one float32 scale each
    assert grouped.score(BitConfig({"f": "w4a32"})).size_bytes == 600 * 4 // 8 + bias + 2 * 3 * 4
    assert per_channel.score(BitConfig({"f": "w4a32"})).size_bytes == 600 * 4 // 8 + bias + 2 * 4
    # int8 layers (dynamic activations) keep per-channel scales
    assert grouped.score(BitConfig({"f": "w8a8"})).size_bytes == 600 + bias + 2 * 4


def test_asymmetric_weight_only_layers_add_packed_zero_points() -> None:
    """MatMulNBits stores a zero point per group at the weights' width, each row packed to
    whole bytes: 3 groups x 4 bits -> 2 bytes a row."""
    fc = LayerSpec("f", "linear", 0, 300, 2, (1, 1), (1, 1), 1, (4, 1), (4, 1), 2400, 602)
    sym = SizeBopsModel([fc], weight_only_group=128)
    asym = SizeBopsModel([fc], weight_only_group=128, zero_points=True)
    for spec, row_bytes in (("w4a32", 2), ("w8a32", 3), ("w2a32", 1)):
        config = BitConfig({"f": spec})
        extra = asym.score(config).size_bytes - sym.score(config).size_bytes
        assert extra == 2 * row_bytes
    assert asym.score(BitConfig({"f": "w8a8"})) == sym.score(BitConfig({"f": "w8a8"}))
