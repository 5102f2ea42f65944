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
