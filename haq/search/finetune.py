"""Fine-tune chosen front points of a finished search, and add the results to its run dir.

Each point is fine-tuned (`haq.quant.qat`) on labelled training images (the run's calibration
source unless another is given), re-scored on the run's test images before and after,
exported to ONNX with the fine-tuned weights and scored in ONNX Runtime on the same images,
so the shipped file's accuracy is checked, not assumed.

```
<run>/finetuned.json             one entry per fine-tuned point: before / after / ORT top-1, time
<run>/finetuned/<point>.onnx     the fine-tuned point, ready for ONNX Runtime
```
``finetuned.json`` is rewritten atomically after each point, so an interrupted call keeps the
points it finished.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from haq.errors import HaqError
from haq.io import atomic_write_text

EXPORT_BATCH = 32


@dataclass(frozen=True)
class FinetuneOptions:
    points: tuple[str, ...]
    epochs: float = 1.0
    lr: float = 0.01  # in quantization steps (see haq.quant.qat.finetune)
    batch_size: int = 64
    train_data: str | None = None  # default: the run's calibration source
    train_limit: int | None = None
    distill: bool = True
    threads: int = 1  # ONNX Runtime threads for the accuracy check


def finetuned_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "finetuned.json"


def load_finetuned(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    path = finetuned_path(run_dir)
    return json.loads(path.read_text()) if path.is_file() else {}


def finetune_points(run_dir: str | Path, opts: FinetuneOptions) -> dict[str, dict[str, Any]]:
    """Fine-tune ``opts.points`` of the run in ``run_dir``; returns (and writes) their entries."""
    from haq.data import load_data
    from haq.evaluate.evaluator import LocalEvaluator
    from haq.export.onnx_export import export_onnx
    from haq.quant.qat import finetune
    from haq.runtime.ort import ort_logits
    from haq.search.api import SearchResult
    from haq.search.options import restored_options
    from haq.search.runner import Search

    result = SearchResult(run_dir)
    configs = result.configs
    unknown = [p for p in opts.points if p not in configs]
    if unknown:
        raise HaqError(
            f"point {unknown[0]} is not on the front of {run_dir}; pick from {', '.join(configs)}"
        )
    if not opts.points:
        raise HaqError(
            "name at least one point with --points (e.g. --points "
            + next(iter(configs), "trial-0001")
            + ")"
        )
    search = Search(restored_options(run_dir))
    source = opts.train_data or search.calib
    if source.split(":")[0] == "distilled":
        raise HaqError(
            f"fine-tuning needs labelled training images and {source} has none; pass --train-data DIR"
        )
    setup = search.test_setup()
    loaded = setup.loaded
    train = load_data(source, loaded.preprocess, limit=opts.train_limit, seed=search.opts.data_seed,
                      model=loaded.model, num_classes=loaded.entry.num_classes)  # fmt: skip
    if train.y is None:
        raise HaqError(
            f"fine-tuning needs labelled training images and {source} has none; pass --train-data DIR"
        )
    entries = load_finetuned(run_dir)
    out_dir = Path(run_dir) / "finetuned"
    out_dir.mkdir(exist_ok=True)
    for point in opts.points:
        config = setup.quantizer.resolve(configs[point])
        before = setup.evaluator.evaluate(config).metrics
        tuned = finetune(setup.quantizer, config, train, epochs=opts.epochs, lr=opts.lr,
                         batch_size=opts.batch_size, distill=opts.distill)  # fmt: skip
        after = (
            LocalEvaluator(tuned.quantizer, setup.data, reuse_prefixes=False)
            .evaluate(config)
            .metrics
        )
        onnx_path = out_dir / f"{point}.onnx"
        export_onnx(tuned.quantizer, config, onnx_path, batch=EXPORT_BATCH)
        start = time.perf_counter()
        logits = ort_logits(onnx_path, setup.data.x, EXPORT_BATCH, opts.threads)
        assert setup.data.y is not None
        ort_top1 = float((logits.argmax(1) == setup.data.y).float().mean()) * 100
        entries[point] = {
            "point": point, "summary": config.summary(), "options": asdict(opts) | {"points": [point]},
            "train_data": train.source, "train_images": len(train), "epochs": tuned.epochs,
            "steps": tuned.steps, "seconds": round(tuned.seconds, 2), "losses": tuned.losses,
            "test_images": len(setup.data), "before_top1": before.top1, "after_top1": after.top1,
            "ort_top1": ort_top1, "ort_seconds": round(time.perf_counter() - start, 2),
            "onnx": str(onnx_path.relative_to(run_dir)),
        }  # fmt: skip
        atomic_write_text(finetuned_path(run_dir), json.dumps(entries, indent=2))
    return {p: entries[p] for p in opts.points}
