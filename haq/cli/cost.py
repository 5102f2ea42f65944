"""`haq cost`: predicted latency, energy, size and BOPs of one config on one target."""

from __future__ import annotations

import argparse
import json
from typing import Any

from haq.cli.args import add_group_args, add_tokens_arg
from haq.errors import HaqError


def register(sub: Any) -> None:
    p = sub.add_parser("cost", help="predict a config's latency/energy/size/BOPs on a target")
    p.add_argument("--target", "-t", required=True, help="hardware target (see `haq targets`)")
    p.add_argument("--model", "-m", required=True,
                   help="registered name (see `haq models`) or package.module:factory")  # fmt: skip
    p.add_argument("--weights", "-w", default="none",
                   help="weights to build the model with (default 'none': cost depends on shapes only)")  # fmt: skip
    add_tokens_arg(p)
    p.add_argument("--bits", "-b", default="fp32",
                   help="shorthand (fp32, w8a8, w4a8, w4a32) or a .yaml/.json config")  # fmt: skip
    p.add_argument(
        "--threads", type=int, default=None, help="threads (default: the target's first)"
    )
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the target's)")
    p.add_argument("--granularity", choices=["channel", "tensor", "group"], default="channel",
                   help="weight scale granularity the deployment uses (default channel)")  # fmt: skip
    add_group_args(p)
    p.add_argument("--kernel-map", action="append", default=[], metavar="FROM=TO",
                   help="run kernel class FROM as TO, e.g. fp32=bf16 (repeatable)")  # fmt: skip
    p.add_argument(
        "--per-layer", action="store_true", help="also show each layer's kernel and cost"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def parse_kernel_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise HaqError(f"--kernel-map {item!r} is not FROM=TO; write e.g. fp32=bf16")
        out[src.strip()] = dst.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from haq.config import BitConfig
    from haq.cost import cost_model_for
    from haq.models import discover_layers, load_model
    from haq.models.weights import quiet_random_weights

    for name, value in (("--threads", args.threads), ("--batch", args.batch)):
        if value is not None and value < 1:
            raise HaqError(f"{name} must be at least 1, not {value}")
    config = BitConfig.from_spec(args.bits)
    kernel_map = parse_kernel_map(args.kernel_map)
    with quiet_random_weights(args.weights):
        loaded = load_model(args.model, args.weights, args.tokens)
    layers = discover_layers(loaded.model, loaded.example_input())
    from dataclasses import replace

    from haq.quant.settings import QuantSettings, text_settings

    settings = QuantSettings(granularity=args.granularity, group_size=args.group_size)
    is_text = loaded.preprocess.is_text
    if is_text:  # its Linears' kernels: dynamic int8, MatMulNBits
        settings = text_settings(settings)
    # refuses asymmetric weights where no layer is group-wise weight-only
    settings = replace(settings, weight_only_mapping=args.weight_only_mapping)
    text = settings.cost_options if is_text else {}
    model = cost_model_for(args.target, layers, threads=args.threads, batch=args.batch,
                           granularity=args.granularity, kernel_map=kernel_map, **text)  # fmt: skip
    detail = model.breakdown(config)
    out: dict[str, Any] = {
        "target": args.target, "network": args.model, "bits": args.bits,
        "config": config.resolve(model.names).summary(), "batch": model.batch,
        "threads": model.threads, "latency_ms": detail["latency_ms"],
        "energy_mj": detail["energy_mj"], "size_bytes": detail["size_bytes"],
        "bops": detail["bops"], "model": detail["model"],
        "boundaries": len(detail["boundaries"]),
        "measured_scale": getattr(model, "calibration", None),
    }  # fmt: skip
    if args.per_layer:
        out["layers"] = detail["layers"]
        out["boundary_costs"] = detail["boundaries"]
        out["same_class_glue_us"] = detail.get("same_class_glue_us", 0.0)
    if args.json:
        print(json.dumps(out))
        return 0
    lat = "unknown" if out["latency_ms"] is None else f"{out['latency_ms']:.4f} ms"
    energy = "unknown" if out["energy_mj"] is None else f"{out['energy_mj']:.4f} mJ"
    print(f"{args.model} on {args.target} ({out['config']}; batch {out['batch']}, "
          f"threads {out['threads']})")  # fmt: skip
    print(f"  latency {lat}  energy {energy}  size {out['size_bytes'] / 2**20:.3f} MiB  "
          f"BOPs {out['bops'] / 1e9:.2f} G")  # fmt: skip
    note = ""
    if out["boundaries"]:
        costed = "costed" if model.has_transitions else "not costed: no transition table"
        note = f"; {out['boundaries']} kernel-class boundaries ({costed})"
    print(f"  answered by: {out['model']}{note}")
    if out["measured_scale"]:
        m = out["measured_scale"]
        print(f"  scaled x{m['ratio']:.3f}: the median measured / predicted of {m['configs']} "
              "configs of this network `haq measure` timed on this CPU")  # fmt: skip
    if args.per_layer:
        width = max(len(r["name"]) for r in detail["layers"])
        for r in detail["layers"]:
            us = "unknown" if r["latency_us"] is None else f"{r['latency_us']:10.2f}"
            print(f"  {r['name']:<{width}}  {r['kind']:<6} {r['precision']:<7} {r['kernel']:<12} "
                  f"{us:>10} us  {r['source']}")  # fmt: skip
        for b in detail["boundaries"]:
            note = "" if b["costed"] else "  (no transition row: not costed)"
            print(f"  boundary {b['after']} -> {b['before']}: {b['from']} -> {b['to']} "
                  f"{b['latency_us']:.2f} us{note}")  # fmt: skip
        if detail.get("same_class_glue_us"):
            print(f"  glue of {detail['glue_model']} at same-class boundaries: "
                  f"{detail['same_class_glue_us']:.2f} us")  # fmt: skip
    return 0
