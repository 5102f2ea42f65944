"""Every kind of cost model passes the cost-model conformance suite (`haq.testing.cost_models`)."""

from __future__ import annotations

import pytest

from haq.testing.cost_models import CHECKS, conformance_cost_models


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("model", conformance_cost_models())
def test_cost_model_conformance(model: str, check: str) -> None:
    CHECKS[check](model)
