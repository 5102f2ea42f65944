"""Headless Debian chromium driven by selenium, for checking reports as a person sees them
(the report's browser test, the screenshot and load-time scripts in experiments/).

Debian's packages (``apt-get install chromium chromium-driver``), never a browser build a
package downloads by itself; a fresh profile per browser, so every page load is a cold one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) on PATH, or None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def headless_chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A selenium WebDriver on headless chromium that logs the page's console."""
    paths = chromium_paths()
    if paths is None:
        raise RuntimeError(
            "headless chromium not found: apt-get install -y chromium chromium-driver"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    profile = tempfile.mkdtemp(prefix="haq-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", f"--window-size={width},{height}", f"--user-data-dir={profile}"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def load_event_ms(driver: Any) -> float:
    """Milliseconds from navigation start to the end of the load event of the current page."""
    return float(
        driver.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd")
    )
