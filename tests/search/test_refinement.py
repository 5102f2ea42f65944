"""Per-candidate refinement (``--ptq none,bias-correction``): drivers choose it, results keep it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from haq.config import BitConfig
from haq.testing.drivers import run_search

CHOICES = "none,bias-correction"


def _trials(out: Path) -> pd.DataFrame:
    t = pd.read_parquet(out / "trials.parquet")
    t["cfg"] = [BitConfig.from_dict(json.loads(c)) for c in t["config"]]
    return t


def test_hybrid_refines_front_configs_once(tmp_path: Path) -> None:
    res = run_search("hybrid", tmp_path / "run", budget=24, ptq=CHOICES)
    t = _trials(res.path)
    refined = t[t["source"] == "refine"]
    assert len(refined) > 0, "the hybrid proposed no refined twin"
    plain = {c.hash: row for c, row in zip(t["cfg"], t.itertuples(), strict=True)}
    for cfg, ptq in zip(refined["cfg"], refined["ptq"], strict=True):
        assert cfg.ptq == ptq == "bias-correction"
        twin = plain.get(cfg.with_ptq(None).hash)
        assert twin is not None and twin.ptq == "none", "refined a config never evaluated plain"
        assert twin.trial < t[t["cfg"] == cfg]["trial"].iloc[0]
    assert refined["cfg"].map(lambda c: c.hash).is_unique
    assert set(t.loc[t["source"] != "refine", "ptq"]) == {"none"}  # the rest: the default
    # a front point's config file names its refinement, so export needs no --ptq
    for point in json.loads((res.path / "pareto.json").read_text())["points"]:
        data = yaml.safe_load((res.path / point["config_file"]).read_text())
        assert data.get("ptq", "none") == (
            "none" if point["config"].get("ptq") is None else "bias-correction"
        )


def test_samplers_draw_the_refinement(tmp_path: Path) -> None:
    t = _trials(run_search("random", tmp_path / "run", budget=16, ptq=CHOICES).path)
    drawn = t[t["source"] == "sampler"]
    assert set(drawn["ptq"]) == {"none", "bias-correction"}
