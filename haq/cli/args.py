"""Argument groups shared by several commands, and the one-line-error parser."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

from haq.errors import HaqError

if TYPE_CHECKING:
    from haq.config import BitConfig
    from haq.models.registry import Preprocess
    from haq.quant import QuantSettings


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"haq: error: {message} (see `{self.prog} --help`)\n")


def add_model_args(p: argparse.ArgumentParser, required: bool = True, tokens: bool = True) -> None:
    p.add_argument(
        "--model",
        "-m",
        required=required,
        help="registered name (see `haq models`) or package.module:factory",
    )
    p.add_argument("--weights", "-w", default="default",
                   help="'default' (built-in / cached pretrained), 'none' (random init) or a checkpoint path")  # fmt: skip
    if tokens:
        add_tokens_arg(p)


def add_tokens_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", type=int, default=None, metavar="N",
                   help="text models (hf:PATH, minilm): tokens per input (default 128)")  # fmt: skip


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", "-d", default=None,
                   help="evaluation data: ImageFolder root, 'digits', 'synthetic' (default: the model's own)")  # fmt: skip
    p.add_argument("--calib-data", default=None,
                   help="calibration data: ImageFolder root, 'digits:calib', 'distilled' (data-free); "
                        "default: images held out of --data")  # fmt: skip
    p.add_argument(
        "--limit", type=int, default=None, help="evaluate on a seeded subset of N images"
    )
    p.add_argument("--calib-limit", type=int, default=256, help="calibration images (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image subsets")


def add_validation_args(p: argparse.ArgumentParser) -> None:
    """How a search draws its validation images (`haq search` and `haq sensitivity` alike)."""
    p.add_argument(
        "--val-limit", type=int, default=1000, help="validation images per trial (default 1000)"
    )
    p.add_argument(
        "--val-split",
        type=float,
        default=None,
        metavar="F",
        help="validate on a seeded fraction F of --data (held-out images), test on the rest",
    )
    p.add_argument("--calib-limit", type=int, default=None,
                   help="calibration images (default 256; 64 for digits)")  # fmt: skip


def add_quant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--granularity", choices=["channel", "tensor", "group"], default="channel",
                   help="weight scales per output channel (default), tensor, or group")  # fmt: skip
    add_group_args(p)
    p.add_argument("--observer", choices=["minmax", "percentile", "mse"], default="minmax")
    p.add_argument("--activations", choices=["static", "dynamic", "dynamic-token"], default=None,
                   help="activation grids: static (calibrated; default for CNNs), dynamic (each "
                        "input's own range at run time, ORT's dynamic int8 for Linears) or "
                        "dynamic-token (a grid per token; default for text models)")  # fmt: skip
    add_ptq_args(p)
    p.add_argument("--bias-correction", action="store_true",
                   help="same as adding bias-correction to --ptq")  # fmt: skip


def add_group_args(p: argparse.ArgumentParser) -> None:
    """How group-wise weight-only layers (a text model's MatMulNBits) quantize their weights."""
    p.add_argument("--group-size", type=int, default=128,
                   help="weights per scale of group-wise layers (MatMulNBits: 16, 32, 64, 128, ...)")  # fmt: skip
    p.add_argument("--weight-only-mapping", choices=["symmetric", "asymmetric"], default="symmetric",
                   help="group-wise weight-only layers: a grid symmetric about 0 (default) or each "
                        "group's [min, max] with a zero point (MatMulNBits zero_points)")  # fmt: skip


def add_ptq_args(p: argparse.ArgumentParser, per_candidate: bool = False) -> None:
    choice = (" A comma list (none,adaround) lets the driver choose per candidate: the first "
              "refines every candidate, the others are tried where the driver wants them "
              "(hybrid: on front configs; samplers: a sampled parameter)") if per_candidate else ""  # fmt: skip
    p.add_argument("--ptq", default="none", metavar="METHODS",
                   help="post-training refinements: none (default), or methods joined by '+' from "
                        "cle, adaround or gptq, bias-correction (e.g. adaround, cle+adaround, gptq); "
                        "adaround, gptq and bias-correction use the calibration images." + choice)  # fmt: skip
    p.add_argument("--adaround-iterations", type=int, default=1000, metavar="N",
                   help="AdaRound optimisation steps per (layer, bits) rounding (default 1000)")  # fmt: skip


def positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise HaqError(f"{name} must be a positive number of images, not {value}")


def settings_from_args(
    args: argparse.Namespace, config: BitConfig | None = None, preprocess: Preprocess | None = None
) -> QuantSettings:
    """The command's quantization settings; a config naming its own refinement (``ptq:`` in
    its file, as a search's front point does) overrides ``--ptq``. A text model (its
    ``preprocess`` has a tokenizer) gets its CPU kernels' defaults (`text_settings`)."""
    from haq.quant import QuantSettings
    from haq.quant.settings import text_settings

    ptq = args.ptq + ("+bias-correction" if args.bias_correction else "")
    if config is not None and config.ptq is not None:
        ptq = config.ptq
    settings = QuantSettings(granularity=args.granularity, group_size=args.group_size,
                             observer=args.observer, ptq=ptq,
                             adaround_iterations=args.adaround_iterations)  # fmt: skip
    if preprocess is not None and preprocess.is_text:
        settings = text_settings(settings)
    if args.activations is not None:
        settings = replace(settings, activations=args.activations)
    return replace(settings, weight_only_mapping=args.weight_only_mapping)
