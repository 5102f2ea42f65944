import json
import subprocess
import sys

import pytest

from haq import FLOAT, BitConfig, HaqError, Precision


@pytest.mark.parametrize(
    "text,expected",
    [
        ("w8a8", Precision(8, 8)),
        ("W4A8", Precision(4, 8)),
        ("w4a32", Precision(4, None)),
        ("w4", Precision(4, None)),
        ("w16a16", Precision(16, 16)),
        ("fp32", FLOAT),
        ("float", FLOAT),
        ("w32a8", Precision(None, 8)),
    ],
)
def test_precision_parse(text: str, expected: Precision) -> None:
    assert Precision.parse(text) == expected
    assert Precision.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["w1a8", "w8a17", "int8", "w8a8x", ""])
def test_precision_rejects(text: str) -> None:
    with pytest.raises(HaqError) as e:
        Precision.parse(text)
    assert "\n" not in str(e.value)


def test_hash_is_stable_and_order_free() -> None:
    a = BitConfig({"a": "w8a8", "b": "w4a8"})
    b = BitConfig({"b": "w4a8", "a": "w8a8"})
    assert a == b and a.hash == b.hash
    assert a.hash != BitConfig({"a": "w8a8", "b": "w8a8"}).hash
    # the same digest in a fresh interpreter (no per-process hash seed)
    code = "from haq import BitConfig; print(BitConfig({'a': 'w8a8', 'b': 'w4a8'}).hash)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == a.hash


def test_immutable() -> None:
    cfg = BitConfig({"a": "w8a8"})
    with pytest.raises(TypeError):
        cfg["a"] = Precision(4, 4)  # type: ignore[index]


def test_round_trip_json_yaml(tmp_path) -> None:
    cfg = BitConfig({"conv1": "fp32", "fc": "w4a32", "layer1.0.conv1": "w6a8"}, default="w8a8")
    for name in ("c.json", "c.yaml"):
        cfg.save(tmp_path / name)
        assert BitConfig.load(tmp_path / name) == cfg
    assert BitConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_uniform_and_resolve() -> None:
    names = ["a", "b", "c"]
    cfg = BitConfig.from_spec("w4a8").resolve(names)
    assert list(cfg) == names and set(cfg.values()) == {Precision(4, 8)}
    mixed = BitConfig({"b": "fp32"}, default="w8a8").resolve(names)
    assert mixed["b"] == FLOAT and mixed["a"] == Precision(8, 8)


def test_validation_errors() -> None:
    with pytest.raises(HaqError, match="does not have"):
        BitConfig({"nope": "w8a8"}, default="w8a8").validate(["a"])
    with pytest.raises(HaqError, match="no precision"):
        BitConfig({"a": "w8a8"}).validate(["a", "b"])


def test_bad_files(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: [unclosed\n")
    with pytest.raises(HaqError, match="not valid YAML"):
        BitConfig.from_spec(bad)
    with pytest.raises(HaqError, match="not found"):
        BitConfig.from_spec(tmp_path / "missing.yaml")
    weird = tmp_path / "w.yaml"
    weird.write_text("default: w8a8\nlayerz: {}\n")
    with pytest.raises(HaqError, match="unknown config keys"):
        BitConfig.from_spec(weird)
    with pytest.raises(HaqError, match="neither a precision shorthand"):
        BitConfig.from_spec("eight-bit")


def test_summary() -> None:
    assert BitConfig({"a": "w8a8", "b": "w8a8", "c": "fp32"}).summary() == "w8a8 x2, fp32 x1"


def test_config_may_name_its_refinement() -> None:
    import pickle

    plain = BitConfig({"a": "w4a8", "b": "w8a8"})
    refined = plain.with_ptq("adaround+cle")
    assert refined.ptq == "cle+adaround"  # one spelling per method set
    assert plain.ptq is None and refined.hash != plain.hash and refined != plain
    assert refined.with_ptq(None) == plain and refined.with_ptq(None).hash == plain.hash
    assert BitConfig.from_dict(refined.to_dict()) == refined
    assert "ptq" not in plain.to_dict()
    assert pickle.loads(pickle.dumps(refined)).ptq == "cle+adaround"
    assert refined.resolve(["a", "b"]).ptq == "cle+adaround"
    assert refined.summary().endswith("(cle+adaround)")
    with pytest.raises(HaqError, match="unknown PTQ method 'brecq'"):
        BitConfig.from_dict({"default": "w8a8", "ptq": "brecq"})


def test_hash_of_a_config_without_refinement_is_unchanged() -> None:
    # the digest configs had before they could name a refinement: older runs keep resuming
    assert BitConfig({"a": "w4a8", "b": "w8a8"}).hash == "a85cd07e0ce760b7"
