"""Issue 15's headline, timed: `haq search --model resnet50 --target cpu-avx512` with no data,
an empty cache and torch hub; first without --weights (offline: one line), then with
--weights none. Every output line is stamped with seconds since start; the times of the
first finished trial and of the end go to ``headline_data_free.json``.

    python experiments/headline_data_free.py [--budget 20]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

from common import save

CMD = [sys.executable, "-m", "haq", "search", "--model", "resnet50", "--target", "cpu-avx512"]


def timed(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((round(time.time() - t0, 1), line.rstrip()))
        print(f"{lines[-1][0]:7.1f} {lines[-1][1]}", flush=True)
    code = proc.wait()
    first = next((t for t, ln in lines if re.match(r"\[\s*1/", ln)), None)
    return {"exit": code, "seconds": round(time.time() - t0, 1), "first_trial_s": first,
            "lines": lines}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HAQ_CACHE_DIR": f"{tmp}/cache", "TORCH_HOME": f"{tmp}/torch",
               "HAQ_OVERLAY_DIR": f"{tmp}/overlay"}  # fmt: skip
        budget = ["--budget", str(args.budget)]
        offline = timed([*CMD, *budget, "--out", f"{tmp}/run0"], env)
        run = timed([*CMD, "--weights", "none", *budget, "--out", f"{tmp}/run"], env)
    save("headline_data_free", {"budget": args.budget, "without_weights": offline,
                                "weights_none": run})  # fmt: skip


if __name__ == "__main__":
    main()
