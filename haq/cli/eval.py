"""`haq eval`: accuracy of one precision config."""

from __future__ import annotations

import argparse
import json
from typing import Any

from haq.cli.args import add_data_args, add_model_args, add_quant_args, positive, settings_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate one precision config's accuracy")
    add_model_args(p)
    add_data_args(p)
    add_quant_args(p)
    p.add_argument("--bits", "-b", default="fp32",
                   help="shorthand (fp32, w8a8, w4a8, w6a6, w4a32) or a .yaml/.json config")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from haq.config import BitConfig
    from haq.evaluate import build_setup

    positive("--limit", args.limit)
    positive("--calib-limit", args.calib_limit)
    config = BitConfig.from_spec(args.bits)
    from haq.models import load_model

    loaded = load_model(args.model, args.weights, args.tokens)
    settings = settings_from_args(args, config, loaded.preprocess)
    needs_calib = settings.calibrates(config)
    setup = build_setup(loaded, args.weights, args.data, args.calib_data, limit=args.limit,
                        calib_limit=args.calib_limit, seed=args.seed, settings=settings,
                        needs_calibration=needs_calib)  # fmt: skip
    rounding = setup.quantizer.rounding
    setup.quantizer.learn_roundings(config)
    result = setup.evaluator.evaluate(config)
    out: dict[str, Any] = {
        "model": args.model,
        "weights": args.weights,
        "bits": args.bits,
        "data": setup.data.source,
        "calib_data": setup.calib.source if setup.calib is not None else None,
        "calib_images": len(setup.calib) if setup.calib is not None else 0,
        "calib_seconds": round(setup.quantizer.calibration.seconds, 3)
        if setup.quantizer.calibration
        else 0.0,
        "ptq": settings.ptq,
        "adaround_seconds": round(rounding.seconds, 3) if rounding is not None else 0.0,
        **result.to_dict(),
        "config": result.config.summary(),
    }
    if args.json:
        print(json.dumps(out))
    else:
        m = result.metrics
        print(f"{args.model} {args.bits}: {out['config']}")
        if m.top1 is not None:
            print(
                f"  top-1 {m.top1:.2f}%  top-5 {m.top5:.2f}%  worst class {m.worst_class} {m.worst_class_top1:.1f}%"
            )
        if m.cosine is not None:
            print(f"  cosine to float {m.cosine:.5f} (worst {m.cosine_min:.5f})  "
                  f"top-10 retrieval kept {m.retrieval:.2f}%")  # fmt: skip
        else:
            print(f"  agreement with float {m.agreement:.2f}%  mean KL {m.mean_kl:.5f}")
        unit = "sentences" if loaded.preprocess.is_text else "images"
        print(f"  {m.n_images} {unit} in {result.seconds:.2f} s (calibration {out['calib_images']} "
              f"{unit}, {out['calib_seconds']:.2f} s)")  # fmt: skip
        if rounding is not None:
            print(f"  adaround: {rounding.learned} roundings learned in {rounding.seconds:.1f} s "
                  f"(the rest loaded from {rounding.dir})")  # fmt: skip
    return 0
