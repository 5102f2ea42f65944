"""Two small real searches (digits_cnn on a simulated NPU, serial, ~10 s each) shared by the
report tests, and a headless Debian chromium (skipped, saying why, where it cannot be found)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import haq
from haq.cli import main
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
    """random sampler, 12 trials, through the CLI with --report: a second run to compare."""
    out = tmp_path_factory.mktemp("runs") / "random"
    args = ["search", "--model", "digits_cnn", "--target", TARGET, "--budget", "12", "--driver", "random",
            "--seed", "1", "--min-top1", "96.5", "--workers", "0", "-q", "--report", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert (out / "report.html").is_file()
    return SearchResult(out)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless chromium driven by selenium, logging the page's console."""
    from haq.testing.browser import chromium_paths, headless_chromium

    if chromium_paths() is None:
        pytest.skip("headless chromium not found: apt-get install -y chromium chromium-driver")
    pytest.importorskip("selenium", reason="pip install selenium (in .[dev])")
    with headless_chromium() as driver:
        yield driver


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``path`` with its size and mtime: proof that nothing changed."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}  # fmt: skip
