"""Screenshots of a real report for the README: cifar_resnet20 on npu-bitfusion-edge, 100 trials.

Runs the search once (kept in experiments/runs/, resumed if interrupted; serial, 1 thread, so
it shares the machine politely), writes its report, opens it in headless Debian chromium and
saves each figure as a small palette PNG in experiments/results/report_*.png. Needs ../shared.

    python experiments/report_screenshots.py
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from common import RESULTS, ROOT, require_shared

RUN = ROOT / "experiments" / "runs" / "report-cifar_resnet20-npu-bitfusion-edge-100"
SHOTS = {"front-plot": "report_front", "heatmap-plot": "report_layers",
         "history-plot": "report_progress", "classes-plot": "report_classes"}  # fmt: skip


def search_command(out: str, budget: int, extra: tuple[str, ...] = ()) -> list[str]:
    """The README's main command on BitFusion, serial (`--workers 0`), with the report on."""
    shared = require_shared()
    return ["haq", "search", "--model", "cifar_resnet20", "--weights", str(shared / "models" / "resnet20-12fca82f.th"),
            "--data", str(shared / "data" / "cifar10-jpeg" / "test"),
            "--calib-data", str(shared / "data" / "cifar10-jpeg" / "train"),
            "--target", "npu-bitfusion-edge", "--budget", str(budget), "--workers", "0", "--report", "--out", out, *extra]  # fmt: skip


def ensure_run(run: Path, budget: int, extra: tuple[str, ...] = ()) -> None:
    """Search into ``run`` unless it holds a finished search (an interrupted one is resumed)."""
    if (run / "pareto.json").is_file():
        return
    cmd = search_command(str(run), budget, extra)
    if (run / "run.json").is_file():
        cmd = ["haq", "search", "--resume", str(run), "--report"]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def main() -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By

    from haq.report import write_report
    from haq.testing.browser import headless_chromium

    ensure_run(RUN, 100)
    page = write_report([RUN])
    with headless_chromium(1180, 900) as driver:
        driver.get(page.resolve().as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            sys.exit(f"console errors in {page}: {errors}")
        # show one front point's hover label, as a user pointing at it would see it
        driver.execute_script("""
            const gd = document.getElementById('front-plot');
            const i = gd.data.findIndex(t => t.meta && t.meta.role === 'front');
            Plotly.Fx.hover(gd, [{curveNumber: i, pointNumber: Math.floor(gd.data[i].x.length / 2)}]);""")
        for div, name in SHOTS.items():
            element = driver.find_element(By.ID, div)
            driver.execute_script("arguments[0].scrollIntoView()", element)
            image = Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB")
            small = image.quantize(colors=64, method=Image.Quantize.MEDIANCUT)
            path = RESULTS / f"{name}.png"
            small.save(path, optimize=True)
            print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
