"""Every registered driver passes the driver conformance suite (`haq.testing.drivers`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from haq.testing.drivers import CHECKS, conformance_drivers


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("driver", conformance_drivers())
def test_driver_conformance(driver: str, check: str, tmp_path: Path) -> None:
    CHECKS[check](driver, tmp_path)
