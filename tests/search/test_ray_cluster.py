"""`haq search --ray-address` on a real two-node Ray cluster on loopback (head + a second
node process, `ray.cluster_utils.Cluster`): workers on both nodes, the same front as serial
mode for the same seed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from haq.cli import main


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c.address
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


def _front(run: Path) -> list[tuple[str, float]]:
    points = json.loads((run / "pareto.json").read_text())["points"]
    return sorted((p["config_hash"], p["objectives"]["top1"]) for p in points)


def test_search_on_a_two_node_cluster(cluster: str, tmp_path: Path) -> None:
    base = ["search", "--model", "digits_cnn", "--budget", "10", "--seed", "3", "-q"]
    assert main([*base, "--workers", "0", "--out", str(tmp_path / "serial")]) == 0
    assert main([*base, "--workers", "2", "--ray-address", cluster,
                 "--out", str(tmp_path / "cluster")]) == 0  # fmt: skip
    placement = json.loads((tmp_path / "cluster" / "run.json").read_text())["ray_workers_per_node"]
    assert len(placement) == 2 and sum(placement.values()) == 2  # one actor on each node
    assert _front(tmp_path / "cluster") == _front(tmp_path / "serial")


def _complete_trials(db: Path) -> int:
    import sqlite3

    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[
                0
            ]
    except sqlite3.Error:  # not created yet, or mid-write
        return 0


@pytest.mark.slow  # 1.5-3 minutes on 2 cores: `.ci/run` runs it explicitly
def test_a_worker_node_removed_mid_search(tmp_path: Path) -> None:
    """A real node leaves the cluster while the search runs (its raylet and actor die): the
    trial it held is retried on a replacement actor on another node, and the search finishes
    its budget with every other trial intact."""
    import os
    import subprocess
    import sys
    import time

    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    leaving = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "haq", "search", "--model", "cifar_resnet20", "--weights", "none",
           "--data", "synthetic:64", "--calib-data", "synthetic:96", "--calib-limit", "32", "--budget", "24",
           "--workers", "2", "--ray-address", c.address, "--out", str(out), "-q"]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.time() + 240
        while _complete_trials(out / "study.db") < 3 and proc.poll() is None:
            assert time.time() < deadline, "the search did not start its trials"
            time.sleep(0.2)
        c.add_node(num_cpus=1)  # where the replacement actor can go
        c.remove_node(leaving)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        c.shutdown()
    assert proc.returncode == 0, output[-3000:]
    trials = json.loads((out / "pareto.json").read_text())
    import pandas as pd

    frame = pd.read_parquet(out / "trials.parquet")
    assert len(frame) == 24 and (frame["state"] == "complete").sum() >= 23, frame["state"].tolist()
    assert trials["points"] and trials["worker_restarts"] >= 1  # the lost node's actor replaced
