"""The ``haq`` command: a thin layer over the Python API.

Every user-input problem surfaces as ``haq: error: <problem and fix>`` on one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from haq.errors import HaqError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"haq: error: {message} (see `{self.prog} --help`)\n")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        "-m",
        required=True,
        help="registered name (see `haq models`) or package.module:factory",
    )
    p.add_argument("--weights", "-w", default="default",
                   help="'default' (built-in / cached pretrained), 'none' (random init) or a checkpoint path")  # fmt: skip


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", "-d", default=None,
                   help="evaluation data: ImageFolder root, 'digits', 'synthetic' (default: the model's own)")  # fmt: skip
    p.add_argument("--calib-data", default=None,
                   help="calibration data: ImageFolder root, 'digits:train', 'distilled' (data-free); "
                        "default: images held out of --data")  # fmt: skip
    p.add_argument(
        "--limit", type=int, default=None, help="evaluate on a seeded subset of N images"
    )
    p.add_argument("--calib-limit", type=int, default=256, help="calibration images (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image subsets")


def _add_quant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--granularity", choices=["channel", "tensor", "group"], default="channel",
                   help="weight scales per output channel (default), tensor, or group")  # fmt: skip
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--observer", choices=["minmax", "percentile", "mse"], default="minmax")
    p.add_argument(
        "--bias-correction",
        action="store_true",
        help="correct the mean output shift of weight error",
    )


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise HaqError(f"{name} must be a positive number of images, not {value}")


def cmd_models(args: argparse.Namespace) -> int:
    from haq.models import list_models

    entries = list_models()
    if args.json:
        print(json.dumps([{"name": e.name, "family": e.family, "num_classes": e.num_classes,
                           "input_size": list(e.preprocess.input_size), "description": e.description}
                          for e in entries], indent=2))  # fmt: skip
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(
            f"{e.name:<{width}}  {e.family:<11}  {'x'.join(map(str, e.preprocess.input_size)):<9}  {e.description}"
        )
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from haq.models import discover_layers, layers_frame, load_model

    loaded = load_model(args.model, args.weights)
    frame = layers_frame(discover_layers(loaded.model, loaded.example_input()))
    if args.json:
        print(frame.to_json(orient="records", indent=2))
    elif args.csv:
        print(frame.to_csv(index=False), end="")
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(frame.to_string(index=False))
        print(f"\n{len(frame)} quantizable layers, {frame['macs'].sum() / 1e6:.1f} M MACs, "
              f"{frame['params'].sum() / 1e6:.3f} M params")  # fmt: skip
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from haq.config import BitConfig
    from haq.evaluate import build_setup
    from haq.quant import QuantSettings

    _positive("--limit", args.limit)
    _positive("--calib-limit", args.calib_limit)
    config = BitConfig.from_spec(args.bits)
    settings = QuantSettings(granularity=args.granularity, group_size=args.group_size,
                             observer=args.observer, bias_correction=args.bias_correction)  # fmt: skip
    needs_calib = (
        args.bias_correction
        or any(p.a_bits is not None for p in config.values())
        or (config.default is not None and config.default.a_bits is not None)
    )
    setup = build_setup(args.model, args.weights, args.data, args.calib_data, limit=args.limit,
                        calib_limit=args.calib_limit, seed=args.seed, settings=settings,
                        needs_calibration=needs_calib)  # fmt: skip
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
        print(f"  agreement with float {m.agreement:.2f}%  mean KL {m.mean_kl:.5f}")
        print(f"  {m.n_images} images in {result.seconds:.2f} s (calibration {out['calib_images']} images, "
              f"{out['calib_seconds']:.2f} s)")  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="haq", description="Hardware-aware mixed-precision quantization search.")
    from haq import __version__

    parser.add_argument("--version", action="version", version=f"haq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("models", help="list registered models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("layers", help="print a model's quantizable layer table")
    _add_model_args(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("eval", help="evaluate one precision config's accuracy")
    _add_model_args(p)
    _add_data_args(p)
    _add_quant_args(p)
    p.add_argument(
        "--bits",
        "-b",
        default="fp32",
        help="shorthand (fp32, w8a8, w4a8, w6a6, w4a32) or a .yaml/.json config",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except HaqError as e:
        print(f"haq: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("haq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
