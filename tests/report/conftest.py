"""Two small real searches (digits_cnn on a simulated NPU, serial, ~10 s each) shared by the
report tests, and a headless Debian chromium (skipped, saying why, where it cannot be found)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import haq
from haq.search import SearchResult

TARGET = "npu-bitfusion-edge"


def _search(out: Path, **kw: Any) -> SearchResult:
    return haq.search(
        model="digits_cnn", target=TARGET, out=str(out), workers=0, progress=False, **kw
    )


@pytest.fixture(scope="session")
def run_a(tmp_path_factory: pytest.TempPathFactory) -> SearchResult:
    """hybrid, 20 trials, an accuracy budget (so some trials are infeasible), --report on."""
    return _search(
        tmp_path_factory.mktemp("runs") / "hybrid", budget=20, min_top1=96.5, report=True
    )


@pytest.fixture(scope="session")
def run_b(tmp_path_factory: pytest.TempPathFactory) -> SearchResult:
    """random sampler, 12 trials: a second run to compare with run_a."""
    return _search(tmp_path_factory.mktemp("runs") / "random", budget=12, driver="random", seed=1,
                   min_top1=96.5)  # fmt: skip


def chromium_paths() -> tuple[str, str] | None:
    """Debian's chromium and chromedriver (`apt-get install chromium chromium-driver`)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless chromium driven by selenium, logging the page's console."""
    paths = chromium_paths()
    if paths is None:
        pytest.skip("headless chromium not found: apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (in .[dev])")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    profile = tempfile.mkdtemp(prefix="haq-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", f"--user-data-dir={profile}"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``path`` with its size and mtime: proof that nothing changed."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}  # fmt: skip
