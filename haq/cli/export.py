"""`haq export`: one BitConfig as an ONNX QDQ model that ONNX Runtime runs with those precisions."""

from __future__ import annotations

import argparse
import json
from typing import Any

from haq.cli.args import add_model_args, add_quant_args, positive, settings_from_args
from haq.errors import HaqError
from haq.io import output_file


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="export a precision config to ONNX (QDQ) for ONNX Runtime")
    add_model_args(p)
    add_quant_args(p)
    p.add_argument(
        "--bits", "-b", required=True, help="shorthand (w8a8, fp32, ...) or a .yaml/.json config"
    )
    p.add_argument("--calib-data", default=None,
                   help="calibration data (ImageFolder root, 'digits:calib', 'distilled'); "
                        "required when the config quantizes activations")  # fmt: skip
    p.add_argument("--calib-limit", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--batch", type=int, default=1, help="batch size baked into the graph (default 1)"
    )
    p.add_argument("-o", "--output", required=True, help="where to write the .onnx file")
    p.add_argument(
        "--target",
        "-t",
        default=None,
        help="refuse precisions this target cannot run (see `haq targets`)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haq.config import BitConfig
    from haq.data import load_data
    from haq.export.onnx_export import export_onnx
    from haq.models import load_model
    from haq.quant import Quantizer

    out = output_file(args.output, "the model", "model.onnx")  # before the model loads
    positive("--batch", args.batch)
    positive("--calib-limit", args.calib_limit)
    config = BitConfig.from_spec(args.bits)
    loaded = load_model(args.model, args.weights, args.tokens)
    settings = settings_from_args(args, config, loaded.preprocess)
    quantizer = Quantizer(loaded.model, loaded.example_input(), settings)
    resolved = quantizer.resolve(
        config
    )  # a config for another model fails here, before any data work
    if args.target:
        from haq.hardware.profile import get_target

        profile = get_target(args.target)
        for spec in quantizer.layers:
            precision = resolved[spec.name]
            kernel_args = settings.kernel_args(precision)
            if not profile.can_run(spec.kind, precision, *kernel_args):
                raise profile.unsupported_error(spec.kind, precision, spec.name, *kernel_args)
    if settings.calibrates(config):
        if not args.calib_data:
            why = (
                f"--ptq {settings.ptq}"
                if settings.needs_calibration
                else "this config quantizes activations"
            )
            raise HaqError(
                f"{why} needs calibration images; pass --calib-data DIR (or 'distilled' for data-free)"
            )
        calib = load_data(args.calib_data, loaded.preprocess, limit=args.calib_limit, seed=args.seed,
                          model=loaded.model, num_classes=loaded.entry.num_classes)  # fmt: skip
        quantizer.calibrate(calib.x)
        quantizer.learn_roundings(config)
    _, report = export_onnx(quantizer, config, out, batch=args.batch)
    info = {
        "output": str(out),
        "bytes": out.stat().st_size,
        "layers": report.counts(),
        "config_hash": quantizer.resolve(config).hash,
    }
    if args.json:
        print(json.dumps(info))
    else:
        kinds = ", ".join(f"{v} {k}" for k, v in info["layers"].items())
        print(f"wrote {out} ({info['bytes'] / 1e6:.2f} MB): {kinds}")
    return 0
