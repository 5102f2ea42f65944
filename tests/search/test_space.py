import pytest

from haq import HaqError, Precision
from haq.models import discover_layers, load_model
from haq.search.drivers import get_driver
from haq.search.objectives import parse_objectives
from haq.search.space import SearchSpace, load_candidates


@pytest.fixture(scope="module")
def layers():
    lm = load_model("digits_cnn")
    return discover_layers(lm.model, lm.example_input())


def test_default_space_by_kind(layers) -> None:
    space = SearchSpace.build(layers)
    cands = load_candidates("default")
    assert space.choices["conv3_dw"] == cands["dwconv"]
    assert space.choices["fc2"] == cands["linear"]
    assert (
        space.size() == len(cands["conv"]) ** 3 * len(cands["dwconv"]) * len(cands["linear"]) ** 2
    )
    assert set(space.baselines()) == {"fp32", "w8a8", "lowest-uniform (w4a8)"}
    seeds = space.seeds()
    assert seeds["w8a8, ends fp32"]["conv1"].is_float and seeds["w8a8, ends fp32"]["fc2"].is_float
    assert seeds["w8a8, first fp32"]["conv2"] == Precision(8, 8)


def test_target_intersection_pins_and_ties(layers) -> None:
    int8_only = lambda kind, p: p.is_float or (p.w_bits == 8 and p.a_bits == 8)  # noqa: E731
    space = SearchSpace.build(layers, "default", int8_only, pins=["first=w8a8", "last=fp32"],
                              ties=[["conv2", "conv4_pw"]])  # fmt: skip
    assert all(set(map(str, c)) <= {"fp32", "w8a8"} for c in space.choices.values())
    assert space.pinned == {"conv1": Precision(8, 8), "fc2": Precision()}
    names = [v for v, _ in space.variables()]
    assert "conv1" not in names and "fc2" not in names and "conv4_pw" not in names
    cfg = space.config({v: "w8a8" for v in names})
    assert cfg["conv4_pw"] == cfg["conv2"] and cfg["fc2"].is_float
    assert space.contains(cfg)


def test_bad_space_inputs(layers, tmp_path) -> None:
    with pytest.raises(HaqError, match="unknown search space"):
        SearchSpace.build(layers, "nope")
    with pytest.raises(HaqError, match="matches no layer"):
        SearchSpace.build(layers, pins=["layer9=w8a8"])
    with pytest.raises(HaqError, match="needs a precision"):
        SearchSpace.build(layers, pins=["first"])
    with pytest.raises(HaqError, match="runs on this target"):
        SearchSpace.build(layers, can_run=lambda kind, p: False)
    bad = tmp_path / "s.yaml"
    bad.write_text("candidates: {conv: []}\n")
    with pytest.raises(HaqError, match="non-empty"):
        SearchSpace.build(layers, bad)


def test_drivers_and_objectives(layers, tmp_path) -> None:
    import haq

    with pytest.raises(HaqError, match="unknown driver"):
        get_driver("annealing")
    with pytest.raises(HaqError, match="too large"):
        haq.search(model="digits_cnn", driver="exhaustive", budget=2, workers=0, progress=False,
                   out=str(tmp_path / "x"))  # fmt: skip
    assert not (tmp_path / "x").exists()
    for bad in ({"bogus": "1"}, {"population": "x"}, {"population": "1"}):
        with pytest.raises(HaqError, match="driver (option|nsga2 has no option)"):
            get_driver("nsga2").make(bad)
    with pytest.raises(HaqError, match="sensitivity=fast is unknown"):
        get_driver("hybrid").make({"sensitivity": "fast"})
    with pytest.raises(HaqError, match="budgets=0 must be an integer"):
        get_driver("hawq-ilp").make({"budgets": "0"})
    assert parse_objectives("top1, latency") == ["top1", "latency"]
    for bad in ("latency", "speed,top1", "top1,top1"):
        with pytest.raises(HaqError):
            parse_objectives(bad)


def test_refinement_choices_are_a_sampled_variable(layers) -> None:
    from haq.search.space import PTQ_PARAM

    plain = SearchSpace.build(layers)
    space = SearchSpace.build(layers, ptq=("none", "adaround"))
    assert space.size() == 2 * plain.size()
    assert space.sampled_variables()[-1] == (PTQ_PARAM, ["none", "adaround"])
    assert plain.sampled_variables() == plain.variables()
    params = {v: opts[0] for v, opts in space.variables()}
    default = space.config({**params, PTQ_PARAM: "none"})
    refined = space.config({**params, PTQ_PARAM: "adaround"})
    assert default.ptq is None and default == space.config(params)  # default: left unnamed
    assert refined.ptq == "adaround" and space.params(refined)[PTQ_PARAM] == "adaround"
    assert space.contains(refined) and space.contains(default)
    assert not plain.contains(refined)
    assert not space.contains(default.with_ptq("cle"))
    with pytest.raises(HaqError, match="not among --ptq none,adaround"):
        space.config({**params, PTQ_PARAM: "cle"})


def test_a_model_without_conv_or_linear_layers_is_refused(tmp_path, capsys) -> None:
    from haq.cli import main

    factory = tmp_path / "flat.py"
    factory.write_text("import torch\n\ndef build():\n"
                       "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.ReLU())\n")  # fmt: skip
    with pytest.raises(HaqError, match="no Conv2d or Linear layer"):
        SearchSpace.build([])
    code = main(["search", "--model", f"{factory}:build", "--weights", "none", "--data", "synthetic",
                 "--calib-data", "synthetic", "--budget", "2", "--out", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "no Conv2d or Linear layer" in err[-1] and len(
        [ln for ln in err if ln.startswith("haq: error")]) == 1  # fmt: skip
