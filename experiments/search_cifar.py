"""The search issue's acceptance run: cifar_resnet20 on cpu-avx512, budget 100, timed end to end
(with --objectives it also runs the three-objective variant). Needs ../shared.

    python experiments/search_cifar.py [--objectives top1,latency] [--budget 100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import require_shared, save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--objectives", default="top1,latency")
    ap.add_argument("--budget", type=int, default=100)
    args = ap.parse_args()
    shared = require_shared()
    out = Path(tempfile.mkdtemp()) / "run"
    cmd = ["haq", "search", "--model", "cifar_resnet20", "--weights", str(shared / "models/resnet20-12fca82f.th"),
           "--data", str(shared / "data/cifar10-jpeg/test"), "--calib-data", str(shared / "data/cifar10-jpeg/train"),
           "--target", "cpu-avx512", "--budget", str(args.budget), "--objectives", args.objectives, "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    pareto = json.loads((out / "pareto.json").read_text())
    points = [{"name": p["name"], "baseline": p["baseline"], "summary": p["summary"], **p["objectives"],
               "test_top1": (p.get("test") or {}).get("top1")} for p in pareto["points"]]  # fmt: skip
    print(f"{len(points)} front points in {seconds:.0f} s", file=sys.stderr)
    save(f"search_cifar_{args.objectives.replace(',', '_')}", {"command": " ".join(cmd), "seconds": round(seconds, 1),
                                                               "hypervolume": pareto["hypervolume"], "front": points})  # fmt: skip
    shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
