"""`haq profile --target cpu-avx512`: tables for every layer x kernel class, resumable runs,
transition rows from alternating configs, and one-line CLI errors (on the tiny digits_cnn)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from haq.cli import main
from haq.config import BitConfig
from haq.errors import HaqError
from haq.hardware.ort import jobs
from haq.hardware.ort.files import read_observations
from haq.hardware.ort.jobs import ProfileReport, profile_target
from haq.hardware.ort.observation import lost_time
from haq.hardware.ort.target import (
    DYNAMIC_CLASSES,
    GLUE_KEY,
    KERNEL_CLASSES,
    LAYER_KEY,
    PAIR_CLASSES,
    PROBES_DIR,
    TRANSITION_KEY,
    applicable,
    boundary_keys,
    class_config,
    kernel_class,
)
from haq.hardware.tables import COLUMNS, SIGNATURE_COLUMNS, TRANSITION_COLUMNS
from haq.models import discover_layers, load_model

FAST: dict[str, Any] = {"threads": (1,), "runs": 3, "profile_runs": 2, "warmup": 1}


@pytest.fixture(scope="module")
def specs() -> list:
    loaded = load_model("digits_cnn", "none")
    return discover_layers(loaded.model, loaded.example_input())


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ProfileReport]:
    out = tmp_path_factory.mktemp("profiles") / "cpu-avx512"
    report = profile_target(["digits_cnn"], directory=out, progress=lambda _: None, **FAST)
    return out, report


def test_rules_map_bits_to_the_kernel_that_runs() -> None:
    assert kernel_class("conv", 6, 8) == "int8"  # narrower bits: the int8 kernel, no faster
    assert kernel_class("conv", 4, None) == "int8-weights"  # dequantize fallback
    assert kernel_class("dwconv", 8, 16) == "qdq16"
    assert kernel_class("linear", 4, None, "group") == "matmulnbits4"
    assert kernel_class("linear", 3, None, "group") == "fp32"  # no 3-bit MatMulNBits
    assert kernel_class("conv", 4, None, "group") == "fp32"  # fake-quantized float weights
    assert kernel_class("conv", None, None) == "fp32"


def test_boundary_keys_follow_execution_order(specs: list) -> None:
    kernels = ["fp32", "int8"] * (len(specs) // 2) + ["fp32"] * (len(specs) % 2)
    keys = boundary_keys(specs, kernels, batch=1, threads=2)
    assert len(keys) == len(specs) + 1
    assert keys[0][:2] == ("input", "fp32") and keys[-1][1] == "output"
    s = specs[1]
    assert keys[1] == ("fp32", "int8", s.in_channels, s.in_hw[0], s.in_hw[1], 1, 2, 0)
    assert all(k[-1] == 0 for k in keys)  # digits_cnn flattens: nothing pooled
    # a squeeze-excite pool (32x14x14 -> 32x1x1) in front of a 1x1 conv: keyed by what it pooled
    from haq.models.spec import LayerSpec

    dw = LayerSpec("dw", "dwconv", 0, 32, 32, (3, 3), (1, 1), 32, (14, 14), (14, 14), 0, 0)
    fc1 = LayerSpec("fc1", "conv", 1, 32, 8, (1, 1), (1, 1), 1, (1, 1), (1, 1), 0, 0)
    assert boundary_keys([dw, fc1], ["int8", "fp32"])[1][-1] == 32 * 14 * 14 - 32


def test_rows_for_every_layer_and_kernel_class(profiled: tuple, specs: list) -> None:
    out, report = profiled
    assert report.failed == [] and report.measured > 0
    layers = pd.read_csv(out / "layers.csv")
    assert set(COLUMNS) <= set(layers.columns)
    assert not layers.duplicated(LAYER_KEY).any()
    have = {(*r[: len(SIGNATURE_COLUMNS)], r[-1]) for r in
            layers[SIGNATURE_COLUMNS + ["precision"]].itertuples(index=False)}  # fmt: skip
    from haq.hardware.tables import signature

    for s in specs:
        for cls in KERNEL_CLASSES:
            if applicable(s.kind, cls) and cls not in DYNAMIC_CLASSES:  # dynamic int8: text models
                assert (*signature(s, 1).values(), cls) in have, (s.name, cls)
    assert (layers["latency_us"] > 0).all() and (layers["threads"] == 1).all()
    sums = layers["kernel_us"] + layers["entry_us"] + layers["exit_us"]
    assert (sums - layers["latency_us"]).abs().max() < 0.05
    glue = pd.read_csv(out / "glue.csv")
    assert not glue.duplicated(GLUE_KEY).any()
    same = glue[(glue["from_kernel"] == glue["to_kernel"]) & (glue["index"] > 0)]
    assert set(PAIR_CLASSES) <= set(same["to_kernel"])  # every uniform config's boundaries


def test_alternating_configs_give_transition_rows(profiled: tuple, specs: list) -> None:
    out, _ = profiled
    trans = pd.read_csv(out / "transitions.csv")
    assert set(TRANSITION_COLUMNS) <= set(trans.columns)
    assert (trans["latency_us"] >= 0).all()
    assert not (trans["from_kernel"] == trans["to_kernel"]).any()
    keys = {tuple(r) for r in trans[TRANSITION_KEY].itertuples(index=False)}
    alternating = ["fp32" if i % 2 == 0 else "int8" for i in range(len(specs))]
    for key in boundary_keys(specs, alternating)[1:-1]:
        assert key in keys
        assert (key[1], key[0], *key[2:]) in keys  # the reverse phase too
    assert {"fp32", "matmulnbits4"} <= set(trans["from_kernel"]) | set(trans["to_kernel"])


def test_tables_predict_measured_configs(profiled: tuple, specs: list) -> None:
    """The profile YAML loads, and the lookup cost model, recognising the profiled model,
    reproduces its uniform configs' measured wall times (layer rows + glue)."""
    from haq.cost.lookup import LookupCostModel
    from haq.hardware.profile import load_profile

    out, _ = profiled
    profile = load_profile(out.parent / "cpu-avx512.yaml")
    assert profile.provenance == "measured" and profile.threads == (1,)
    assert {"layers", "transitions", "glue", "layer_map"} <= set(profile.tables)
    model = LookupCostModel(profile, specs, threads=1, learned=None)
    assert model.glue_model == "digits_cnn"
    names = [s.name for s in specs]
    for ob in read_observations(out):
        if ob["config"].startswith("uniform:"):
            est = model.score(class_config(names, ob["kernels"]))
            assert est.model == "lookup+glue"
            assert est.latency_ms * 1e3 == pytest.approx(ob["wall_us"], abs=0.5)
    # a network with other layer names is not the profiled model: no glue
    renamed = [dataclasses.replace(s, name=f"x.{s.name}") for s in specs]
    plain = LookupCostModel(profile, renamed, threads=1, learned=None)
    assert plain.glue_model is None
    assert plain.score(BitConfig.uniform("w8a8", [s.name for s in renamed])).model == "lookup"


def test_node_time_no_bucket_holds_is_spread_over_the_others(
    profiled: tuple, specs: list, tmp_path: Path
) -> None:
    """A job whose profile had nodes the attribution could not place (``unmatched_us``)
    still sums to its wall: uniform configs of the profiled model come out at their walls."""
    import shutil

    from haq.cost.lookup import LookupCostModel
    from haq.hardware.ort.files import write_all
    from haq.hardware.profile import load_profile

    out = tmp_path / "cpu-avx512"
    shutil.copytree(profiled[0], out)
    shutil.copy(profiled[0].parent / "cpu-avx512.yaml", tmp_path / "cpu-avx512.yaml")

    def lose(ob: dict[str, Any]) -> None:  # 20 % of the profiled node time in no bucket
        if ob["config"] == "uniform:int8":
            ob["unmatched_us"] = 0.25 * ob["profiled_total_us"]
            ob["profiled_total_us"] += ob["unmatched_us"]
            ob["scale"] = ob["wall_us"] / ob["profiled_total_us"]

    _rewrite_observations(out, lose)
    write_all(out, read_observations(out), {})
    model = LookupCostModel(load_profile(tmp_path / "cpu-avx512.yaml"), specs, threads=1,
                            learned=None)  # fmt: skip
    names = [s.name for s in specs]
    for ob in read_observations(out):
        if ob["config"].startswith("uniform:"):
            est = model.score(class_config(names, ob["kernels"]))
            assert est.latency_ms * 1e3 == pytest.approx(ob["wall_us"], abs=0.5)


def test_second_run_resumes_without_measuring(profiled: tuple) -> None:
    out, first = profiled
    before = {
        name: (out / name).read_bytes() for name in ("layers.csv", "transitions.csv", "glue.csv")
    }
    n_obs = len(read_observations(out))
    report = profile_target(["digits_cnn"], directory=out, progress=lambda _: None, **FAST)
    assert report.measured == 0 and report.skipped == first.measured + first.skipped
    assert len(read_observations(out)) == n_obs
    assert {name: (out / name).read_bytes() for name in before} == before


def test_unknown_target_and_class_raise() -> None:
    with pytest.raises(HaqError, match="unknown target"):
        profile_target(["digits_cnn"], target="tpu-v9")
    with pytest.raises(HaqError, match="unknown kernel class"):
        profile_target(["digits_cnn"], classes=["int3"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "nosuch", "--model", "digits_cnn"], "unknown target 'nosuch'"),
        (["--target", "cpu-avx512", "--model", "nosuch"], "unknown model 'nosuch'"),
        (["--target", "cpu-avx512", "--model", "digits_cnn", "--threads", "0"], "--threads"),
        (["--target", "cpu-avx512", "--model", "digits_cnn", "--kernels", "int3"], "int3"),
        (["--target", "cpu-avx512"], "either --model NAMES or --probes N"),
        (["--target", "cpu-avx512", "--model", "digits_cnn", "--probes", "2"], "either --model"),
        (["--target", "cpu-avx512", "--probes", "0"], "--probes must be at least 1"),
        (["--target", "cpu-avx512", "--model", "digits_cnn", "--max-jobs", "0"], "--max-jobs"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["profile", *argv, "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("haq: error:") and message in err and "\n" not in err
    assert not (tmp_path / "t").exists()


def test_repeats_add_wall_timings_and_keep_the_fastest(profiled: tuple, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "cpu-avx512"
    shutil.copytree(profiled[0], out)
    report = profile_target(["digits_cnn"], directory=out, progress=lambda _: None,
                               repeats=2, **FAST)  # fmt: skip
    assert report.measured == 0 and report.failed == []
    for ob in read_observations(out):
        assert len(ob["walls"]) == 2
        assert ob["wall_us"] == min(w["median_us"] for w in ob["walls"])


def test_a_changed_graph_is_measured_again(
    profiled: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    out = tmp_path / "cpu-avx512"
    shutil.copytree(profiled[0], out)
    n_obs = len(read_observations(out))
    monkeypatch.setattr(jobs, "graph_digest", lambda data: "another-exporter")
    report = profile_target(["digits_cnn"], directory=out, progress=lambda _: None,
                               classes=["fp32", "int8"], **FAST)  # fmt: skip
    assert report.measured == 4  # 2 uniform + 2 alternating configs, re-measured
    obs = read_observations(out)
    assert len(obs) == n_obs and sum(o["graph"] == "another-exporter" for o in obs) == 4


def test_a_job_that_lost_node_time_is_measured_again(profiled: tuple, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "cpu-avx512"
    shutil.copytree(profiled[0], out)

    def lose(ob: dict[str, Any]) -> None:  # as before nameless ORT nodes were attributed
        if ob["config"] == "uniform:int8":
            ob["unmatched_us"] = 0.1 * ob["profiled_total_us"]

    _rewrite_observations(out, lose)
    report = profile_target(["digits_cnn"], directory=out, progress=lambda _: None,
                               classes=["fp32", "int8"], **FAST)  # fmt: skip
    assert report.measured == 1
    int8 = [o for o in read_observations(out) if o["config"] == "uniform:int8"]
    assert len(int8) == 1 and not lost_time(int8[0])


def test_fresh_measures_the_selected_jobs_again(profiled: tuple, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "cpu-avx512"
    shutil.copytree(profiled[0], out)
    before = sorted(o["config"] for o in read_observations(out))
    report = profile_target(["digits_cnn"], directory=out, progress=lambda _: None,
                               classes=["fp32"], fresh=True, **FAST)  # fmt: skip
    assert report.measured == 1 and report.skipped == 0
    # the planned job was measured again, replacing its old record; the rest are kept
    assert sorted(o["config"] for o in read_observations(out)) == before


def test_a_run_with_nothing_to_measure_rederives_the_tables(
    profiled: tuple, tmp_path: Path
) -> None:
    import shutil

    out = tmp_path / "cpu-avx512"
    shutil.copytree(profiled[0], out)
    before = (out / "glue.csv").read_bytes()
    (out / "glue.csv").unlink()
    (out / "transitions.csv").write_text("stale\n")
    report = profile_target(["digits_cnn"], directory=out, progress=lambda _: None, **FAST)
    assert report.measured == 0
    assert (out / "glue.csv").read_bytes() == before
    assert (out / "transitions.csv").read_text() != "stale\n"


def test_probe_networks_go_to_their_own_folder_and_the_yaml_names_them(
    profiled: tuple, tmp_path: Path
) -> None:
    """`--probes`: uniform configs of probe_<seed> into <tables>/probes/ (layer rows and map
    only); the main tables stay as they were and the rewritten YAML lists the probe tables."""
    import shutil

    from haq.hardware.profile import load_profile

    out = tmp_path / "cpu-avx512"
    shutil.copytree(profiled[0], out)
    before = (out / "layers.csv").read_bytes()
    report = profile_target(["probe_10"], directory=out, probes=True, progress=lambda _: None,
                               classes=("fp32", "int8"), **FAST)  # fmt: skip
    assert report.failed == [] and report.measured == 2  # uniform configs only
    probes = out / PROBES_DIR
    rows = pd.read_csv(probes / "layers.csv")
    assert set(rows["model"]) == {"probe_10"} and set(rows["config"]) <= {
        "uniform:fp32",
        "uniform:int8",
    }
    assert (probes / "layer_map.csv").is_file() and not (probes / "glue.csv").exists()
    assert (out / "layers.csv").read_bytes() == before
    profile = load_profile(tmp_path / "cpu-avx512.yaml")
    assert profile.tables["probes"].resolve() == (probes / "layers.csv").resolve()
    assert profile.tables["probe_map"].resolve() == (probes / "layer_map.csv").resolve()


def _rewrite_observations(out: Path, edit: Any) -> None:
    import gzip
    import json

    obs = read_observations(out)
    for ob in obs:
        edit(ob)
    with gzip.open(out / "observations.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(ob) + "\n" for ob in obs)


def test_each_row_keeps_the_machine_that_measured_it(profiled: tuple, tmp_path: Path) -> None:
    """Tables grown on two CPUs: the YAML names both, each with its models; a stored row is
    re-timed only on its own machine (this CPU measures a row of another one anew), and
    rows from before observations carried a machine keep the one their YAML named."""
    import shutil

    import yaml

    from haq.hardware.ort.machines import machine_record
    from haq.runtime.machine import machine_info

    here = machine_record(machine_info())
    other = {**here, "cpu": "Other CPU", "model": -1}
    out = tmp_path / "cpu-avx512"
    shutil.copytree(profiled[0], out)
    yaml_path = tmp_path / "cpu-avx512.yaml"

    def provenance() -> dict[str, Any]:
        return yaml.safe_load(yaml_path.read_text())["provenance_details"]

    # legacy rows (no machine) under a YAML that names another CPU: that CPU measured them
    _rewrite_observations(out, lambda ob: ob.pop("machine", None))
    profile_target(["digits_cnn"], directory=out, progress=lambda _: None, **FAST)
    d = yaml.safe_load(yaml_path.read_text())
    d["provenance_details"].update(machine="Other CPU", cpu_model=-1)
    yaml_path.write_text(yaml.safe_dump(d))
    _rewrite_observations(out, lambda ob: ob.pop("machine", None))
    report = profile_target(["digits_cnn"], directory=out, progress=lambda _: None, **FAST)
    assert report.measured == 0
    assert provenance()["machine"] == "Other CPU" and "machines" not in provenance()
    assert all(ob["machine"] == other for ob in read_observations(out))
    # one class re-timed with more repeats: measured anew here, the rest stay the other CPU's
    report = profile_target(["digits_cnn"], directory=out, progress=lambda _: None,
                            classes=["fp32"], repeats=2, **FAST)  # fmt: skip
    assert report.measured == 1
    mine = [ob for ob in read_observations(out) if ob["machine"] == here]
    assert [ob["config"] for ob in mine] == ["uniform:fp32"] and len(mine[0]["walls"]) == 2
    p = provenance()
    assert p["machine"] == f"Other CPU; {here['cpu']} (see machines)"
    assert [m["machine"] for m in p["machines"]] == ["Other CPU", here["cpu"]]
    assert all(m["models"] == ["digits_cnn"] for m in p["machines"])


def test_a_cpu_profiled_under_a_name_of_its_own_is_a_target(tmp_path: Path, capsys) -> None:
    """`haq profile --out DIR/my-cpu` writes DIR/my-cpu.yaml: a target of that name that this
    CPU measured, which `haq cost --target DIR/my-cpu.yaml` scores from its rows."""
    from haq.hardware.profile import get_target
    from haq.hardware.reachable import runtime_gap

    profile_target(["digits_cnn"], directory=tmp_path / "my-cpu", classes=["fp32", "int8"],
                   progress=lambda _: None, **FAST)  # fmt: skip
    target = get_target(tmp_path / "my-cpu.yaml")
    assert target.id == "my-cpu" and target.provenance == "measured"
    assert runtime_gap(target) is None  # measured here, so measurable here
    capsys.readouterr()
    argv = ["cost", "--target", str(tmp_path / "my-cpu.yaml"), "--model", "digits_cnn",
            "--weights", "none", "--bits", "w8a8"]  # fmt: skip
    assert main(argv) == 0
    assert "answered by: lookup" in capsys.readouterr().out


def test_a_target_of_its_own_learns_beside_its_tables(tmp_path: Path, capsys) -> None:
    """`haq profile --out DIR/my-cpu` also fits the target's learned model into
    DIR/my-cpu/learned/ (a target of its own has no shipped one): a model whose layers no row
    holds is then scored learned, not on the roofline; haq's data folder stays as it was."""
    from haq.cost.learned import MODEL_FILE, LearnedCostModel
    from haq.hardware.profile import get_target

    shipped = {p.name for p in LearnedCostModel.folder("my-cpu").parent.iterdir()}
    argv = ["profile", "--target", "cpu-avx512", "--model", "digits_cnn", "--threads", "1",
            "--kernels", "fp32,int8", "--repeats", "1", "--runs", "3", "--profile-runs", "2",
            "--out", str(tmp_path / "my-cpu")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"saved to {tmp_path / 'my-cpu' / 'learned'}" in out
    target = get_target(tmp_path / "my-cpu.yaml")
    assert LearnedCostModel.folder_of(target) == tmp_path / "my-cpu" / "learned"
    assert (tmp_path / "my-cpu" / "learned" / MODEL_FILE).is_file()
    assert {p.name for p in LearnedCostModel.folder("my-cpu").parent.iterdir()} == shipped
    cost = ["cost", "--target", str(tmp_path / "my-cpu.yaml"), "--model", "cifar_resnet20",
            "--weights", "none", "--bits", "w8a8"]  # fmt: skip
    assert main(cost) == 0
    assert "learned(" in capsys.readouterr().out


@pytest.mark.parametrize("shipped", [False, True])
def test_a_cpu_with_other_int8_flags_cannot_profile_into_the_targets_tables(
    shipped: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import haq.runtime.machine as machine

    real = machine.machine_info()
    other = [f for f in real["flags"] if f != "amx_int8"] + (
        [] if "amx_int8" in real["flags"] else ["amx_int8"]
    )
    monkeypatch.setattr(machine, "machine_info", lambda: {**real, "flags": other})
    before = {p: p.stat().st_mtime for p in _shipped_tables_dir().rglob("*") if p.is_file()}
    rc = main(["profile", "--target", "cpu-avx512", "--model", "digits_cnn",
               *(["--shipped"] if shipped else [])])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "cannot profile into cpu-avx512's" in err
    assert "--out DIR/my-cpu" in err  # the way to measure this CPU
    assert {p: p.stat().st_mtime for p in _shipped_tables_dir().rglob("*") if p.is_file()} == before
    from haq.hardware.overlay import overlay_path

    assert not overlay_path("cpu-avx512").exists()


def _shipped_tables_dir() -> Path:
    """Where the shipped cpu-avx512 tables live (they must never change)."""
    from haq.hardware.profile import get_target

    return get_target("cpu-avx512").tables["layers"].parent


def test_max_jobs_measures_the_least_known_first_and_resumes(tmp_path: Path, capsys) -> None:
    """Two jobs now (uniform configs: their layer rows are what the cost model guesses), the
    rest in a second run that skips what the first measured."""
    argv = ["profile", "--target", "cpu-avx512", "--model", "digits_cnn", "--threads", "1",
            "--kernels", "fp32,int8", "--repeats", "1", "--runs", "3", "--profile-runs", "2",
            "--out", str(tmp_path / "mine")]  # fmt: skip
    assert main([*argv, "--max-jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "measured 2 jobs" in out and "2 jobs left by --max-jobs" in out
    configs = {ob["config"] for ob in read_observations(tmp_path / "mine")}
    assert configs == {"uniform:fp32", "uniform:int8"}
    assert main(argv) == 0
    assert "measured 2 jobs, skipped 2" in capsys.readouterr().out
