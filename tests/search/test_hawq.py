"""hawq-ilp: each ILP solution meets its latency budget, with equal weight/activation bits."""

from __future__ import annotations

from pathlib import Path

from haq.config import Precision
from haq.search.drivers import DriverContext, get_driver
from haq.search.objectives import DIRECTIONS
from haq.search.runner import Search, SearchOptions


def test_ilp_solutions_meet_their_budgets_with_equal_bits(tmp_path: Path) -> None:
    opts = SearchOptions(model="digits_cnn", target="npu-bitfusion-edge", budget=30,
                         out=str(tmp_path / "r"), progress=False)  # fmt: skip
    search = Search(opts)
    dirs = [DIRECTIONS[n] for n in search.objectives]
    ctx = DriverContext(search.space, search.objectives, dirs, search.cost_model, search.guard,
                        opts.budget, 0, search._sensitivity())  # fmt: skip
    driver = get_driver("hawq-ilp").make({"budgets": "12"})
    driver.start(ctx, [], None)
    proposals = [p for p in driver.ask(100) if p.source == "ilp"]
    assert len(proposals) >= 3
    budgets = []
    for p in proposals:
        latency = search.cost_model.score(p.config).latency_ms
        # the simulated NPU's latency is a sum of layer terms, so marginal costs are exact
        assert latency <= p.driver_attrs["cost_budget"] + 1e-9
        assert all(q.is_float or q.w_bits == q.a_bits for q in p.config.values())
        budgets.append(p.driver_attrs["cost_budget"])
    assert budgets == sorted(budgets)  # the sweep runs from the cheapest budget up
    assert any(q == Precision(4, 4) for p in proposals for q in p.config.values())
