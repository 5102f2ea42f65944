"""`haq sensitivity`: per-layer sensitivity of a model, the table sensitivity-guided drivers use.

Rows land in the same on-disk cache a search reads (keyed by weights, calibration images and
quantization settings), so a later `haq search` with the same model and calibration data pays
nothing for them, on any target.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from haq.cli.args import add_model_args, add_validation_args, positive
from haq.cli.space import add_space_args
from haq.errors import HaqError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sensitivity", help="per-layer sensitivity proxies (output KL, SQNR, Hessian)"
    )
    add_model_args(p)
    add_space_args(p)
    p.add_argument("--calib-data", default=None,
                   help="calibration images (as for `haq search`; default: the model's own data)")  # fmt: skip
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the calibration subset (as the search's --data-seed)",
    )
    p.add_argument("--hessian", action="store_true",
                   help="add HAWQ's Hessian trace x weight perturbation (Hutchinson; slower)")  # fmt: skip
    p.add_argument("--accuracy", action="store_true",
                   help="also measure each change's top-1 drop on the validation images a search with "
                        "the same options uses (for --driver-opt sensitivity=accuracy)")  # fmt: skip
    p.add_argument(
        "--data", "-d", default=None, help="held-out images, with --val-split (as for `haq search`)"
    )
    add_validation_args(p)
    p.add_argument("--out", "-o", default=None, help="also write the table here (.csv or .parquet)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haq.evaluate import build_setup
    from haq.evaluate.evaluator import LocalEvaluator
    from haq.models import load_model
    from haq.search.sensitivity import SensitivitySource
    from haq.search.space import SearchSpace

    positive("--calib-limit", args.calib_limit)
    if args.out and not args.out.endswith((".csv", ".parquet")):
        raise HaqError(f"--out {args.out}: write a .csv or .parquet file")
    from haq.data import DataSplit
    from haq.search.sensitivity import validation_key

    positive("--val-limit", args.val_limit)
    loaded = load_model(args.model, args.weights, args.tokens)
    split = DataSplit(args.val_split, args.seed) if args.val_split is not None else None
    if split is not None and not args.data:
        raise HaqError("--val-split needs --data (the held-out images to split)")
    default_calib = "digits:calib" if loaded.entry.default_data == "digits" else None
    calib = args.calib_data or default_calib or (args.data if split else None)
    if not calib:
        raise HaqError(f"pass --calib-data DIR (calibration images) for {args.model}")
    val_source = args.data if split else calib
    limit = args.calib_limit or (64 if calib.startswith("digits") else 256)
    setup = build_setup(loaded, data=val_source, calib_data=calib, calib_limit=limit, seed=args.seed,
                        limit=args.val_limit if args.accuracy else 1, split=split)  # fmt: skip
    can_run = None
    if args.target:
        from haq.hardware.profile import get_target

        can_run = get_target(args.target).can_run
    space = SearchSpace.build(setup.quantizer.layers, args.space, can_run, args.pin,
                              [t.split(",") for t in args.tie])  # fmt: skip
    assert setup.calib is not None
    key = validation_key(val_source, calib, args.val_limit, limit, args.seed, split)
    source = SensitivitySource(lambda: LocalEvaluator(setup.quantizer, setup.calib), setup.model_hash,
                               progress=not args.quiet, validation_key=key)  # fmt: skip
    table = source.table(space, hessian=args.hessian)
    rows = table.rows
    if args.accuracy:
        drops = source.measure_drops(
            space, setup.evaluator, zip(rows["variable"], rows["precision"], strict=True)
        )
        rows = rows.assign(
            top1_drop=[
                drops[(v, p)] for v, p in zip(rows["variable"], rows["precision"], strict=True)
            ]
        )
    rows = rows.sort_values("kl", ascending=False)
    if args.out:
        from haq.io import atomic_write_bytes, atomic_write_text

        if args.out.endswith(".csv"):
            atomic_write_text(args.out, rows.to_csv(index=False))
        else:
            import io

            buf = io.BytesIO()
            rows.to_parquet(buf, index=False)
            atomic_write_bytes(args.out, buf.getvalue())
    if args.json:
        print(json.dumps({"reference": table.reference.summary(), "images": table.images,
                          "seconds": round(table.seconds, 2), "rows": rows.to_dict("records")}, indent=2))  # fmt: skip
        return 0
    import pandas as pd

    show = rows.drop(columns=["layers"] + ([] if args.hessian else ["hessian"]))
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(show.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\n{len(rows)} layer choices against {table.reference.summary()} on {table.images} "
          f"calibration images ({table.seconds:.1f} s computed here, the rest cached)", file=sys.stderr)  # fmt: skip
    return 0
