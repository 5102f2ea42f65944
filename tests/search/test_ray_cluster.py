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
