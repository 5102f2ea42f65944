"""`import haq` stays light: no torch, Ray, ONNX Runtime, Optuna or SciPy at import time."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "ray", "onnxruntime", "optuna", "scipy", "pandas")


def test_import_haq_loads_no_heavy_dependency() -> None:
    code = f"import sys, haq; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import haq loaded {out.stdout.strip()}"


def test_layer_tables_and_runtime_helpers_need_no_torch() -> None:
    """`LayerSpec`, latency tables, cost models and the ORT helpers import without torch."""
    mods = "haq.models.spec, haq.hardware.tables, haq.cost, haq.runtime.ort, haq.runtime.machine"
    code = f"import sys, {mods}; print(','.join(m for m in ('torch', 'onnxruntime', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{mods} loaded {out.stdout.strip()}"
