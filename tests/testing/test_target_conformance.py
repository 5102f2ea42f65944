"""Every registered target passes the target conformance suite (`haq.testing.targets`)."""

from __future__ import annotations

import pytest

from haq.testing.targets import CHECKS, conformance_targets


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("target", conformance_targets())
def test_target_conformance(target: str, check: str) -> None:
    CHECKS[check](target)
