"""`import haq` stays light: no torch, Ray, ONNX Runtime, Optuna or SciPy at import time."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "ray", "onnxruntime", "optuna", "scipy", "pandas")


def test_import_haq_loads_no_heavy_dependency() -> None:
    code = f"import sys, haq; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import haq loaded {out.stdout.strip()}"
