"""Size and load time of the HTML report of a 300-trial run (the issue's goal: under 8 MB,
load event under 2 s in headless chromium on this machine).

The run is cifar_resnet20 on npu-bitfusion-edge with 300 trials (made once, serial, kept in
experiments/runs/; its front re-scored on 1,000 test images, which changes no file size).
Each cold load opens a fresh chromium with a fresh profile; warm loads reload the page in one
browser. For comparison the same page is also loaded with plotly's full plotly.js bundle in
place of the cartesian one the report embeds. Results in experiments/results/bench_report.json.
Needs ../shared.

    python experiments/bench_report.py [--loads 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from report_screenshots import ensure_run

from common import ROOT, save

RUN = ROOT / "experiments" / "runs" / "report-cifar_resnet20-npu-bitfusion-edge-300"


def measure(page: Path, loads: int) -> dict[str, Any]:
    """Cold loads (a fresh browser each), then warm reloads in the first browser."""
    from haq.testing.browser import headless_chromium, load_event_ms

    cold: list[float] = []
    warm: list[float] = []
    errors = 0
    for _ in range(loads):
        with headless_chromium() as driver:
            driver.get(page.resolve().as_uri())
            cold.append(load_event_ms(driver))
            errors += sum(e["level"] == "SEVERE" for e in driver.get_log("browser"))
            while len(warm) < loads:
                driver.refresh()
                warm.append(load_event_ms(driver))
    return {"size_mb": round(page.stat().st_size / 1e6, 3), "cold_load_ms": cold, "warm_load_ms": warm,
            "cold_load_median_ms": statistics.median(cold), "cold_load_max_ms": max(cold),
            "warm_load_median_ms": statistics.median(warm), "console_errors": errors}  # fmt: skip


def main() -> None:
    from plotly.offline import get_plotlyjs

    from haq.report import write_report
    from haq.report.html import plotly_js

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", type=int, default=5)
    args = ap.parse_args()
    ensure_run(RUN, 300, ("--test-limit", "1000"))
    t0 = time.perf_counter()
    page = write_report([RUN])
    write_s = time.perf_counter() - t0
    report = measure(page, args.loads)
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "report-full-plotly.html"
        full.write_text(page.read_text().replace(plotly_js(), get_plotlyjs()))
        with_full = measure(full, args.loads)
    for name, m in (("report", report), ("same page, full plotly.js", with_full)):
        print(f"{name}: {m['size_mb']:.2f} MB; load event cold median {m['cold_load_median_ms']:.0f} ms "
              f"(max {m['cold_load_max_ms']:.0f}), warm median {m['warm_load_median_ms']:.0f} ms; "
              f"console errors {m['console_errors']}")  # fmt: skip
    print(f"written in {write_s:.1f} s")
    save("bench_report", {"run": RUN.name, "trials": 300, "write_seconds": round(write_s, 2), **report,
                          "full_plotly_js": with_full, "goal": {"size_mb": 8, "load_ms": 2000}})  # fmt: skip


if __name__ == "__main__":
    main()
