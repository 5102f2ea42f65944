"""Lookup cost model: exact table hits, transitions, fallbacks, unsupported precisions, real targets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from haq.config import BitConfig
from haq.cost import AnalyticCostModel, CostModel, LookupCostModel, cost_model_for
from haq.cost.learned import LearnedCostModel
from haq.cost.lookup import interpolate, robust_line
from haq.errors import HaqError
from haq.hardware.profile import get_target
from haq.hardware.tables import TRANSITION_COLUMNS
from haq.models import discover_layers, load_model
from tests.cost.synthetic import layers, profile_dict, table, write_target

pytestmark = pytest.mark.filterwarnings("ignore::haq.models.weights.RandomWeightsWarning")
MIXED = BitConfig({"c1": "w8a8", "dw": "fp32", "fc": "w4a4"})


def _model(tmp_path: Path, **kwargs) -> LookupCostModel:
    path = write_target(tmp_path, kwargs.pop("profile", None), kwargs.pop("frame", None),
                        kwargs.pop("transitions", None))  # fmt: skip
    return LookupCostModel(
        get_target(path), layers(), learned=kwargs.pop("learned", None), **kwargs
    )


def test_exact_table_hits(tmp_path: Path) -> None:
    m = _model(tmp_path)
    assert isinstance(m, CostModel)
    fp = m.score(BitConfig.uniform("fp32"))
    assert fp.latency_ms == pytest.approx((10 + 6 + 3) / 1000) and fp.model == "lookup"
    # w8a8 on the dwconv has no int8 kernel: it costs its fp32 fallback
    q = m.score(BitConfig.uniform("w8a8"))
    assert q.latency_ms == pytest.approx((4 + 6 + 1) / 1000)
    assert m.score(MIXED).latency_ms == pytest.approx((4 + 6 + 1) / 1000)
    assert m.kernels_of(MIXED) == ["int8", "fp32", "int8"]
    assert fp.energy_mj is None  # the table has no energy_uj
    assert fp.size_bytes > q.size_bytes and fp.bops > q.bops
    two = _model(tmp_path, threads=2)
    assert two.score(BitConfig.uniform("fp32")).latency_ms == pytest.approx(19 / 2000)


def test_energy_summed_when_tabled(tmp_path: Path) -> None:
    m = _model(tmp_path, profile=profile_dict(energy=True), frame=table(energy=True))
    assert m.score(MIXED).energy_mj == pytest.approx((0.5 + 1.0 + 0.1) / 1000)
    with pytest.raises(HaqError, match="energy_uj"):
        _model(tmp_path, profile=profile_dict(energy=True), frame=table())


def test_transition_costs(tmp_path: Path) -> None:
    # c1 -> dw carries 16x8x8 = 1024 elements; dw -> fc carries 1024x1x1 = 1024 as well
    rows = [("int8", "fp32", 16, 8, 8, 2.0), ("int8", "fp32", 16, 4, 4, 1.0),
            ("fp32", "int8", 4, 8, 8, 0.5), ("fp32", "int8", 8, 8, 8, 1.0)]  # fmt: skip
    trans = pd.DataFrame([(*r[:5], 1, 1, r[5]) for r in rows],
                         columns=["from_kernel", "to_kernel", "channels", "h", "w", "batch",
                                  "threads", "latency_us"])[TRANSITION_COLUMNS]  # fmt: skip
    m = _model(tmp_path, transitions=trans)
    est = m.score(MIXED)  # int8 -> fp32 (exact row: 2.0), fp32 -> int8 (extrapolated: 2.0)
    assert est.latency_ms == pytest.approx((4 + 6 + 1 + 2.0 + 2.0) / 1000)
    assert m.score(BitConfig.uniform("fp32")).latency_ms == pytest.approx(19 / 1000)  # no boundary
    b = m.breakdown(MIXED)["boundaries"]
    assert [(x["from"], x["to"], x["costed"]) for x in b] == [
        ("int8", "fp32", True),
        ("fp32", "int8", True),
    ]
    bad = trans.drop(columns=["channels"])
    with pytest.raises(HaqError, match="lacks columns"):
        _model(tmp_path, transitions=bad)


def test_interpolation() -> None:
    xs, ys = np.array([10.0, 20.0]), np.array([1.0, 3.0])
    assert interpolate(xs, ys, np.array([15.0, 30.0, 5.0, 0.0])).tolist() == [2.0, 5.0, 0.0, 0.0]
    assert interpolate(np.array([10.0]), np.array([2.0]), np.array([5.0])).tolist() == [1.0]


def test_robust_line_ignores_one_graphs_outlier() -> None:
    """Five rows on 1 + 0.01 x and one boundary that also ran a residual Add (+500 us): the
    line stays on the five, where the mean per size would carry the outlier to its
    neighbours; a falling fit is held flat; under three sizes it interpolates the means."""
    xs = np.array([100.0, 200.0, 300.0, 400.0, 500.0, 300.0])
    ys = np.array([2.0, 3.0, 4.0, 5.0, 6.0, 504.0])
    assert robust_line(xs, ys, np.array([250.0, 1000.0])) == pytest.approx([3.5, 11.0])
    falling = robust_line(xs[:5], ys[:5][::-1], np.array([0.0, 1e6]))
    assert falling[0] == falling[1] == pytest.approx(4.0)
    two = np.array([10.0, 20.0, 20.0]), np.array([1.0, 2.0, 4.0])
    assert robust_line(*two, np.array([15.0])) == pytest.approx([2.0])


def test_missing_rows_fall_back_and_say_so(tmp_path: Path) -> None:
    frame = table(skip=(("fc", "int8"),))
    m = _model(tmp_path, frame=frame)
    est = m.score(MIXED)
    assert est.model == "lookup+roofline(1 layer)"
    compute_us = 2 * 10240 / 4e3  # 2 ops per MAC at 4 GOPS
    memory_us = (10250 * 8 + (1024 + 10) * 8) / 8 / 10e3  # int8 weights + activations at 10 GB/s
    assert compute_us > memory_us
    assert est.latency_ms == pytest.approx((4 + 6 + compute_us) / 1000)
    assert m.score(BitConfig.uniform("fp32")).model == "lookup"
    # no quoted peaks: the roofline of peaks fitted to the table's own int8 rows (c1's)
    fitted = _model(tmp_path, frame=frame, profile=profile_dict(peaks={}))
    est = fitted.score(MIXED)
    assert est.model == "lookup+roofline(1 layer)" and est.latency_ms > (4 + 6) / 1000
    assert fitted.peaks["int8_gops"] == pytest.approx(2 * 8 * 8 * 16 * 27 / 4.0 / 1e3)
    # no peaks, no row of the kernel class, no learned model: unknown, never a made-up number
    bare = table(skip=(("c1", "int8"), ("fc", "int8")))
    unknown = _model(tmp_path, frame=bare, profile=profile_dict(peaks={}))
    est = unknown.score(MIXED)
    assert est.latency_ms is None and est.model == "lookup+unknown(2 layers)"
    # a fitted learned model answers first
    learned = LearnedCostModel("toy", max_iter=20)
    learned.fit(table())
    m2 = _model(tmp_path, frame=frame, learned=learned)
    assert m2.score(MIXED).model == "lookup+learned(1 layer)"
    detail = m2.breakdown(MIXED)["layers"]
    assert [r["source"] for r in detail] == ["lookup", "lookup", "learned"]


def test_unsupported_precision(tmp_path: Path) -> None:
    m = _model(tmp_path)
    bad = BitConfig({"c1": "w8a8", "dw": "fp32", "fc": "w12a12"})
    for call in (m.check, m.score):
        with pytest.raises(HaqError) as info:
            call(bad)
        msg = str(info.value)
        assert msg.startswith("target toy cannot run w12a12 on linear layers (layer fc): supported")
        assert "\n" not in msg
    m.check(MIXED)
    with pytest.raises(HaqError, match="does not have"):
        m.score(BitConfig({"c1": "fp32", "zz": "fp32"}, default="fp32"))
    with pytest.raises(HaqError, match="gives no precision"):
        m.score(BitConfig({"c1": "fp32"}))


def test_bad_tables_and_options(tmp_path: Path) -> None:
    with pytest.raises(HaqError, match="threads 1, 2, not 4"):
        _model(tmp_path, threads=4)
    frame = table()
    frame.loc[0, "latency_us"] = -1.0
    with pytest.raises(HaqError, match="latency_us") as info:
        _model(tmp_path, frame=frame)
    assert "\n" not in str(info.value)
    with pytest.raises(HaqError, match="lacks columns"):
        _model(tmp_path, frame=table().drop(columns=["groups"]))
    odd = table()
    odd.loc[0, "precision"] = "int3"
    with pytest.raises(HaqError, match="does not declare"):
        _model(tmp_path, frame=odd)
    path = write_target(tmp_path)
    (tmp_path / "toy" / "layers.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(HaqError, match="not readable CSV"):
        LookupCostModel(get_target(path), layers(), learned=None)


def test_analytic_and_factory(tmp_path: Path) -> None:
    no_tables = profile_dict(tables={})
    path = write_target(tmp_path, no_tables)
    m = cost_model_for(path, layers())
    assert isinstance(m, AnalyticCostModel)
    est = m.score(BitConfig.uniform("fp32"))
    assert est.model == "roofline" and est.latency_ms is not None and est.latency_ms > 0
    assert m.score(BitConfig.uniform("w8a8")).latency_ms < est.latency_ms
    assert isinstance(cost_model_for(write_target(tmp_path), layers()), LookupCostModel)


# Real targets ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet18() -> list:
    loaded = load_model("resnet18", "none")
    return discover_layers(loaded.model, loaded.example_input())


def test_gpu_h100_resnet18_is_the_sum_of_its_rows(resnet18: list) -> None:
    m = cost_model_for("gpu-h100", resnet18)
    assert m.batch == 1
    est = m.score(BitConfig.uniform("fp32"))
    assert est.model == "lookup"
    prof = get_target("gpu-h100")
    table = pd.read_csv(prof.tables["layers"])
    lmap = pd.read_csv(prof.tables["layer_map"])
    keys = [c for c in lmap.columns if c not in ("model", "name", "index", "macs", "params")]
    rows = lmap[lmap.model == "resnet18"].merge(
        table[(table.batch == 1) & (table.precision == "fp32")], on=keys
    )
    assert len(rows) == len(resnet18) == 21
    assert est.latency_ms == pytest.approx(rows.latency_us.sum() / 1000)
    e2e = pd.read_csv(prof.tables["e2e"])
    ref = e2e[(e2e.model == "resnet18") & (e2e.batch == 1) & (e2e.precision == "fp32")]
    assert est.latency_ms == pytest.approx(ref.layers_sum_us.iloc[0] / 1000)
    bf16 = cost_model_for("gpu-h100", resnet18, kernel_map={"fp32": "bf16"})
    assert bf16.score(BitConfig.uniform("fp32")).latency_ms < est.latency_ms
    assert (
        cost_model_for("gpu-h100", resnet18, batch=8).score(BitConfig.uniform("fp32")).model
        == "lookup"
    )


def test_gpu_t4_reproduces_hawq_v3_int8_sum(resnet18: list, shared_published: float | None) -> None:
    prof = get_target("gpu-t4")
    m = LookupCostModel(prof, resnet18, learned=None)
    detail = m.breakdown(BitConfig.uniform("w8a8"))
    assert detail["model"] == "lookup+roofline(2 layers)"
    tabled = {r["name"]: r["latency_us"] for r in detail["layers"] if r["source"] == "lookup"}
    assert sorted(set(r["name"] for r in detail["layers"]) - set(tabled)) == ["conv1", "fc"]
    published = pd.read_csv(prof.tables["layer_map"]).published_int8_ms.sum()
    assert sum(tabled.values()) / 1000 == pytest.approx(published, rel=1e-9)
    if shared_published is not None:
        assert sum(tabled.values()) / 1000 == pytest.approx(shared_published, rel=1e-9)
    assert math.isclose(published, 5.343687, rel_tol=1e-6)
    int4 = m.breakdown(BitConfig.uniform("w4a4"))
    assert sum(r["latency_us"] for r in int4["layers"] if r["source"] == "lookup") == pytest.approx(
        3148.67227
    )
    with pytest.raises(HaqError, match="cannot run w4a32"):
        m.check(BitConfig.uniform("w4a32"))


@pytest.fixture
def shared_published() -> float | None:
    from tests.conftest import SHARED

    path = SHARED / "data" / "published" / "hawq_v3_t4_resnet18.csv"
    return float(pd.read_csv(path).latency_int8_ms.sum()) if path.is_file() else None


def test_scoring_speed_sanity() -> None:
    loaded = load_model("resnet50", "none")
    specs = discover_layers(loaded.model, loaded.example_input())
    m = cost_model_for("gpu-h100", specs)
    configs = [BitConfig.uniform(b) for b in ("fp32", "w8a8", "w4a8", "w6a32")]
    for i in range(1000):
        est = m.score(configs[i % 4])
    assert len(specs) == 54 and est.latency_ms is not None


def test_exact_transition_row_beats_interpolation(tmp_path: Path) -> None:
    # both fp32 -> int8 rows carry 1024 elements; dw -> fc's tensor is 1024x1x1 exactly
    trans = pd.DataFrame([("fp32", "int8", 1024, 1, 1, 1, 1, 5.0),
                          ("fp32", "int8", 16, 8, 8, 1, 1, 1.0)],
                         columns=TRANSITION_COLUMNS)  # fmt: skip
    m = _model(tmp_path, transitions=trans)
    assert m.score(MIXED).latency_ms == pytest.approx((4 + 6 + 1 + 5.0) / 1000)


def _glue_target(tmp_path: Path, glue: pd.DataFrame) -> Path:
    import yaml

    from haq.hardware.tables import signature

    path = write_target(tmp_path)
    lmap = pd.DataFrame([{"model": "toynet", "name": s.name, "index": s.index,
                          **{k: v for k, v in signature(s).items() if k != "batch"}}
                         for s in layers()])  # fmt: skip
    lmap.to_csv(tmp_path / "toy" / "layer_map.csv", index=False)
    glue.to_csv(tmp_path / "toy" / "glue.csv", index=False)
    data = yaml.safe_load(path.read_text())
    data["tables"].update(glue="toy/glue.csv", layer_map="toy/layer_map.csv")
    path.write_text(yaml.safe_dump(data))
    return path


def test_glue_rows_of_a_profiled_model(tmp_path: Path) -> None:
    import dataclasses

    from haq.hardware.tables import GLUE_COLUMNS

    rows = [("toynet", 1, 1, 0, "input", "int8", 0.5),  # in front of c1
            ("toynet", 1, 1, 1, "int8", "fp32", 2.0),  # c1 -> dw
            ("toynet", 1, 1, 2, "fp32", "fp32", -1.0),  # dw -> fc, same class
            ("toynet", 1, 1, 3, "int8", "output", 0.25),  # after fc
            ("other", 1, 1, 1, "int8", "fp32", 100.0)]  # fmt: skip
    path = _glue_target(tmp_path, pd.DataFrame(rows, columns=GLUE_COLUMNS))
    m = LookupCostModel(get_target(path), layers(), learned=None)
    assert m.glue_model == "toynet"
    est = m.score(MIXED)  # int8, fp32, int8: 0.5 + 2.0 at the two matching boundaries + 0.25
    assert est.latency_ms == pytest.approx((4 + 6 + 1 + 0.5 + 2.0 + 0.25) / 1000)
    assert est.model == "lookup+glue" and m.breakdown(MIXED)["glue_model"] == "toynet"
    fp = m.score(BitConfig.uniform("fp32"))  # only the same-class dw -> fc row applies
    assert fp.latency_ms == pytest.approx((10 + 6 + 3 - 1.0) / 1000)
    for config in (MIXED, BitConfig.uniform("fp32")):  # the breakdown adds up to the total
        d = m.breakdown(config)
        parts = sum(r["latency_us"] for r in d["layers"]) + d["same_class_glue_us"]
        parts += sum(b["latency_us"] for b in d["boundaries"])
        assert parts / 1000 == pytest.approx(d["latency_ms"])
    assert m.breakdown(BitConfig.uniform("fp32"))["same_class_glue_us"] == pytest.approx(-1.0)
    # another network (renamed layers) is not the profiled model
    other = [dataclasses.replace(s, name=f"m.{s.name}") for s in layers()]
    plain = LookupCostModel(get_target(path), other, learned=None)
    assert plain.glue_model is None
    config = BitConfig({"m.c1": "w8a8", "m.dw": "fp32", "m.fc": "w4a4"})
    assert plain.score(config).latency_ms == pytest.approx((4 + 6 + 1) / 1000)


@pytest.mark.parametrize(
    ("edit", "message"),
    [(lambda g: g.drop(columns=["index"]), "lacks columns"),
     (lambda g: g.assign(to_kernel="int4"), "does not declare"),
     (lambda g: g.assign(latency_us="x"), "non-numeric")],
)  # fmt: skip
def test_bad_glue_tables(tmp_path: Path, edit, message: str) -> None:
    from haq.hardware.tables import GLUE_COLUMNS

    glue = pd.DataFrame([("toynet", 1, 1, 1, "int8", "fp32", 2.0)], columns=GLUE_COLUMNS)
    path = _glue_target(tmp_path, edit(glue))
    with pytest.raises(HaqError, match=message):
        LookupCostModel(get_target(path), layers(), learned=None)


def test_transition_aliases_stand_in_for_missing_pairs(tmp_path: Path) -> None:
    kernels = {"fp32": "float", "int8": "integer GEMM", "int4": "4-bit GEMM"}
    rules = [{"ops": ["conv"], "w": [2, 4], "a": [2, 4], "kernel": "int4"}]
    rules += profile_dict()["rules"]
    frame = pd.concat([table(), table().query("precision == 'int8'").assign(precision="int4")])
    trans = pd.DataFrame([("int8", "fp32", 16, 8, 8, 1, 1, 2.0)], columns=TRANSITION_COLUMNS)
    config = BitConfig({"c1": "w4a4", "dw": "fp32", "fc": "fp32"})  # int4 -> fp32 -> fp32
    plain = _model(tmp_path, profile=profile_dict(kernels=kernels, rules=rules), frame=frame,
                   transitions=trans)  # fmt: skip
    assert plain.score(config).latency_ms == pytest.approx((4 + 6 + 3) / 1000)  # no row: 0
    aliased = profile_dict(kernels=kernels, rules=rules, transition_aliases={"int4": "int8"})
    m = _model(tmp_path, profile=aliased, frame=frame, transitions=trans)
    assert m.score(config).latency_ms == pytest.approx((4 + 6 + 3 + 2.0) / 1000)
    with pytest.raises(HaqError, match="transition_aliases.int4"):
        _model(tmp_path, profile=profile_dict(kernels=kernels, rules=rules,
                                              transition_aliases={"int4": "int2"}))  # fmt: skip


def test_a_pooled_boundary_is_keyed_and_sized_by_what_the_pool_reads(tmp_path: Path) -> None:
    """A pool between c1 (16x8x8 out) and a classifier on its 16 means: an int8 -> fp32 change
    there dequantizes the 1024 elements in front of the pool. With ``reduced_elements`` the
    16x1x1 row measured behind a bigger pool (16x16x16) is not taken as exact: the boundary is
    interpolated at 1024 elements; a table without the column keeps its exact shape rows."""
    from haq.hardware.tables import signature
    from haq.models.spec import LayerSpec

    c1 = layers()[0]
    fc = LayerSpec("fc", "linear", 1, 16, 10, (1, 1), (1, 1), 1, (1, 1), (1, 1), 160, 170)
    frame = pd.DataFrame([{**signature(s, 1), "precision": k, "latency_us": 1.0, "threads": 1}
                          for s in (c1, fc) for k in ("fp32", "int8")])  # fmt: skip
    trans = pd.DataFrame([("int8", "fp32", 16, 1, 1, 1, 1, 50.0, 16 * 16 * 16 - 16),
                          ("int8", "fp32", 64, 4, 4, 1, 1, 2.0, 0),
                          ("int8", "fp32", 64, 8, 8, 1, 1, 8.0, 0)],
                         columns=[*TRANSITION_COLUMNS, "reduced_elements"])  # fmt: skip
    config = BitConfig({"c1": "w8a8", "fc": "fp32"})
    keyed = write_target(tmp_path / "keyed", None, frame, trans)
    assert LookupCostModel(get_target(keyed), [c1, fc], learned=None).score(
        config
    ).latency_ms == pytest.approx((1 + 1 + 2.0) / 1000)
    plain = write_target(tmp_path / "plain", None, frame, trans.drop(columns="reduced_elements"))
    assert LookupCostModel(get_target(plain), [c1, fc], learned=None).score(
        config
    ).latency_ms == pytest.approx((1 + 1 + 50.0) / 1000)
