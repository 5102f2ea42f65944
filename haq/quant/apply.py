"""Applying a BitConfig to a model: the `Quantizer`.

A `Quantizer` owns a private BN-folded copy of the user's model, its layer table and its
calibration statistics. ``apply(config)`` returns a new simulated-quantization model; quantized
weights are memoised per (layer, bits), so trying another config costs one evaluation pass,
not a re-calibration or a re-quantization. The user's model is never touched.

A config that names its own refinement (``config.ptq``, a driver's per-candidate choice) is
applied by a sibling quantizer under that refinement (`for_config`), built on first use from
the same model and calibration images.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from haq.config import BitConfig, Precision
from haq.errors import HaqError
from haq.models.layers import discover_layers
from haq.models.spec import LayerSpec
from haq.quant.calibration import Calibration, calibrate
from haq.quant.equalize import constant_response, equalize
from haq.quant.fold import call_counts, find_followers, fold_batchnorm, input_producers
from haq.quant.modules import (
    OUTPUT_BITS,
    QuantConv2d,
    QuantLayer,
    QuantLinear,
    quantize_output_hook,
)
from haq.quant.quantizers import dequantize_weight, quantize_bias, quantize_weight, weight_scales
from haq.quant.rounding import LearnedRounding, RoundingKey
from haq.quant.settings import QuantSettings

_WeightEntry = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]
_Tuned = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # w_fq, w_int, scale, bias


class Quantizer:
    """Builds simulated-quantization copies of one model under one `QuantSettings`."""

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        settings: QuantSettings | None = None,
        calibration_images: torch.Tensor | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.settings = settings or QuantSettings()
        self.example_shape = tuple(example_input.shape[1:])
        self._source = (model, example_input)  # what sibling refinements are built from
        self._images: torch.Tensor | None = None
        self._family: dict[str, Quantizer] = {self.settings.ptq: self}  # by refinement
        self._float: nn.Module | None = None  # built on first use under CLE (float_model)
        base = copy.deepcopy(model).eval()
        for p in base.parameters():
            p.requires_grad_(False)
        self.folded = fold_batchnorm(base, example_input) if self.settings.fold_bn else []
        self.equalized = equalize(base, example_input, self.folded) if self.settings.cle else []
        self.base = base
        self.layers: list[LayerSpec] = discover_layers(base, example_input)
        relu_pairs = find_followers(base, example_input, (nn.Conv2d, nn.Linear), nn.ReLU)
        self.relu_after = frozenset(p for p, _ in relu_pairs)
        calls = call_counts(base, example_input, nn.ReLU)
        self._absorbed_relu = {p: r for p, r in relu_pairs if calls.get(r) == 1}
        self.layer_names = [spec.name for spec in self.layers]
        self._producer = input_producers(base, example_input, self.layer_names)
        self._shared = {id(t): t for t in list(base.parameters()) + list(base.buffers())}
        self._weights: dict[tuple[Any, ...], _WeightEntry] = {}
        self.calibration = calibration
        self.rounding: LearnedRounding | None = None  # set by calibrate() under AdaRound
        if calibration_images is not None:
            self.calibrate(calibration_images)

    # Calibration --------------------------------------------------------------------------
    def calibrate(self, images: torch.Tensor, batch_size: int = 128) -> Calibration:
        self._images = images
        self.calibration = calibrate(
            self.base, self.layer_names, images, batch_size, self.relu_after
        )
        self.calibration.percentile = self.settings.percentile
        if self.settings.learned_rounding:
            self.rounding = LearnedRounding(self.base, self.layer_names, images, self.settings)
        return self.calibration

    @property
    def float_model(self) -> nn.Module:
        """The float network the user gave (BN folded: the same function), the reference
        every refinement is measured against; CLE's base is not it (ReLU6 pairs become ReLU,
        high biases move)."""
        if not self.settings.cle:
            return self.base
        if self._float is None:
            model, example = self._source
            self._float = copy.deepcopy(model).eval()
            if self.settings.fold_bn:
                fold_batchnorm(self._float, example)
        return self._float

    def for_config(self, config: BitConfig | str) -> Quantizer:
        """The quantizer of ``config``'s own refinement (this one when it names none)."""
        ptq = config.ptq if isinstance(config, BitConfig) else None
        if ptq is None or ptq == self.settings.ptq:
            return self
        sibling = self._family.get(ptq)
        if sibling is None:
            sibling = self._sibling(ptq)
            self._family[ptq] = sibling
        return sibling

    def _sibling(self, ptq: str) -> Quantizer:
        settings = replace(self.settings, ptq=ptq)
        if settings.needs_calibration and self._images is None:
            raise HaqError(
                f"a config asks for --ptq {ptq}, which learns on calibration data; pass --calib-data DIR"
            )
        model, example = self._source
        # activation statistics carry over unless CLE (which rescales activations) differs
        shared = self.calibration if settings.cle == self.settings.cle else None
        sibling = Quantizer(model, example, settings, calibration=shared)
        sibling._family = self._family
        if self._images is None:
            return sibling
        if shared is None:
            sibling.calibrate(self._images)
        else:
            sibling._images = self._images
            if settings.learned_rounding:
                sibling.rounding = LearnedRounding(sibling.base, sibling.layer_names,
                                                   self._images, settings)  # fmt: skip
        return sibling

    def learn_roundings(self, config: BitConfig | str) -> int:
        """Under a learned rounding (AdaRound, GPTQ), learn (with progress) the roundings
        ``config`` needs that no cache holds yet, so that evaluating it afterwards costs only
        the evaluation."""
        own = self.for_config(config)
        if own is not self:
            return own.learn_roundings(config)
        if self.rounding is None:
            return 0
        return self.rounding.prepare(self.rounding_keys(self.resolve(config).items()))

    def rounding_keys(self, layers: Iterable[tuple[str, Precision]]) -> list[RoundingKey]:
        """(layer, weight bits, weight granularity, symmetric) of the quantized weights among
        these."""
        s = self.settings
        return [(n, p.w_bits, s.weight_granularity(p), s.weight_symmetric(p)) for n, p in layers
                if p.w_bits is not None]  # fmt: skip

    # Weights ------------------------------------------------------------------------------
    def _weight(
        self, name: str, bits: int, granularity: str | None = None, symmetric: bool = True
    ) -> _WeightEntry:
        """(fake-quant weight, integer weight, scales, bias correction) for one layer and bits
        (at the settings' granularity unless told another; symmetric unless told not)."""
        s = self.settings
        granularity = granularity or s.granularity
        key: tuple[Any, ...] = (name, bits)
        if granularity != s.granularity or not symmetric:
            key = (name, bits, granularity) + (() if symmetric else ("asymmetric",))
        if key not in self._weights:
            module = self.base.get_submodule(name)
            w = module.weight.detach()
            method = s.learned_rounding
            if method and self.rounding is None:
                raise HaqError(
                    f"{method} learns roundings on calibration data; pass --calib-data DIR "
                    f"(or 'distilled'), or drop {method} from --ptq"
                )
            if self.rounding is not None and self.rounding.applies(bits):
                w_int = self.rounding.w_int(name, bits, granularity, symmetric)
                w_scale = weight_scales(w, bits, granularity, s.group_size, symmetric)
            else:
                w_int, w_scale = quantize_weight(w, bits, granularity, s.group_size, symmetric)
            w_fq = dequantize_weight(w_int, w_scale, granularity, s.group_size).to(w.dtype)
            shift = self._bias_shift(name, module, w_fq - w) if s.bias_correction else None
            self._weights[key] = (w_fq, w_int, w_scale, shift)
        return self._weights[key]

    def with_weights(self, weights: dict[tuple[str, int], _Tuned]) -> Quantizer:
        """A copy whose (layer, bits) weights are the given (fake-quant weight, integer weight,
        scale, bias), e.g. fine-tuned ones; everything else (model, calibration) is shared."""
        tuned = copy.copy(self)
        tuned._weights = dict(self._weights)
        for (name, bits), (w_fq, w_int, scale, bias) in weights.items():
            module = self.base.get_submodule(name)
            base_bias = module.bias.detach() if module.bias is not None else torch.zeros_like(bias)
            tuned._weights[(name, bits)] = (
                w_fq,
                w_int,
                scale,
                base_bias - bias,
            )  # bias = base - shift
        return tuned

    def _bias_shift(self, name: str, module: nn.Module, delta: torch.Tensor) -> torch.Tensor | None:
        """Mean output change the weight error causes: delta . E[input] (padding ignored)."""
        if self.calibration is None:
            raise HaqError(
                "bias correction needs calibration data; pass --calib-data DIR or drop bias-correction from --ptq"
            )
        mean = torch.from_numpy(self.calibration.inputs[name].channel_mean)
        return constant_response(delta, module.groups if isinstance(module, nn.Conv2d) else 1, mean)

    # Apply --------------------------------------------------------------------------------
    def resolve(self, config: BitConfig | str) -> BitConfig:
        return BitConfig.from_spec(config).resolve(self.layer_names)

    def apply(self, config: BitConfig | str) -> nn.Module:
        """A new model with ``config`` applied (float layers stay the folded float layers)."""
        own = self.for_config(config)
        if own is not self:
            return own.apply(config)
        resolved = self.resolve(config)
        needs_act = [n for n, p in resolved.items() if p.a_bits is not None]
        if needs_act and self.calibration is None and not self.settings.dynamic:
            raise HaqError(
                "quantized activations need calibration data; pass --calib-data DIR (or 'distilled')"
            )
        model = copy.deepcopy(self.base, memo=dict(self._shared))
        layers: dict[str, QuantLayer] = {}
        for name, precision in resolved.items():
            if precision.is_float:
                continue
            layer = self._quant_layer(name, precision)
            layers[name] = layer
            model.set_submodule(name, layer)
            relu = self._absorbed_relu.get(name)
            if relu is not None and layer.out_zero_point == 0:
                # the zero-point-0 output grid already clamps at 0; an Identity keeps the
                # tensor (and its grid tag) so the next layer need not quantize it again
                model.set_submodule(relu, nn.Identity())
        self._share_input_quantization(model, layers)
        return model

    def _share_input_quantization(self, model: nn.Module, layers: dict[str, QuantLayer]) -> None:
        """Quantize each integer layer's input once, where it is produced, for all its readers.

        That is what a deployed int8 graph does (one Q/DQ per tensor), and it lets ONNX Runtime
        run residual adds and pooling on int8 (QLinearAdd, uint8 MaxPool). Layers reading the
        same tensor with different grids keep quantizing it themselves.
        """
        grids: dict[str, set[tuple[float, int, int]]] = {}
        readers: dict[str, list[QuantLayer]] = {}
        for name, layer in layers.items():
            producer = self._producer.get(name)
            bits = layer.precision.a_bits
            if producer is None or bits is None or bits > OUTPUT_BITS or layer.a_scale is None:
                continue
            grids.setdefault(producer, set()).add(
                (layer.a_scale, int(layer.a_zero_point or 0), bits)
            )
            readers.setdefault(producer, []).append(layer)
        for producer, grid in grids.items():
            if len(grid) != 1:
                continue
            (g,) = grid
            model.get_submodule(producer).register_forward_hook(quantize_output_hook(g))
            for layer in readers[producer]:
                layer.input_shared = True

    def _quant_layer(self, name: str, precision: Precision) -> QuantLayer:
        s = self.settings
        module = self.base.get_submodule(name)
        assert isinstance(module, nn.Conv2d | nn.Linear)
        weight, w_int, w_scale, bias = module.weight, None, None, module.bias
        granularity = s.weight_granularity(precision)
        if precision.w_bits is not None:
            symmetric = s.weight_symmetric(precision)
            weight, w_int, w_scale, shift = self._weight(name, precision.w_bits, granularity,
                                                         symmetric)  # fmt: skip
            if shift is not None:
                bias = (bias if bias is not None else torch.zeros_like(shift)) - shift
        act = out_act = None
        dynamic = s.dynamic_grid if precision.a_bits is not None else None
        if dynamic is not None:
            _check_dynamic(name, module, precision, granularity)
        elif precision.a_bits is not None:
            assert self.calibration is not None
            act = self.calibration.act_qparams(name, precision.a_bits, s.observer)
            if _integer_kernel(precision, s):
                if bias is not None and w_scale is not None:
                    bias = quantize_bias(bias, act[0], w_scale)
                if s.requantize_outputs:
                    out_act = self.calibration.act_qparams(
                        name, OUTPUT_BITS, s.observer, where="output"
                    )
        cls = QuantLinear if isinstance(module, nn.Linear) else QuantConv2d
        return cls(
            module,
            precision,
            weight,
            bias,
            w_int,
            w_scale,
            act,
            out_act,
            granularity,
            s.group_size,
            dynamic,
            s.int8_input_blocks(precision, isinstance(module, nn.Linear)),
        )


def _check_dynamic(name: str, module: nn.Module, precision: Precision, granularity: str) -> None:
    """Dynamic activations run as uint8 x int8 integer GEMMs (ORT's ``DynamicQuantizeMatMul``,
    or ``MatMulInteger`` per token): 8 bits, Linear only, one weight scale per output channel
    (or tensor)."""
    if granularity == "group":
        raise HaqError(f"layer {name}: dynamic int8 needs per-channel or per-tensor weight "
                       "scales; use --granularity channel (weight-only layers may stay group-wise)")  # fmt: skip
    if not isinstance(module, nn.Linear):
        raise HaqError(f"layer {name}: dynamic activation quantization runs on Linear layers "
                       f"only; keep this {type(module).__name__} fp32 or weight-only")  # fmt: skip
    if precision.a_bits != 8 or precision.w_bits is None or precision.w_bits > 8:
        raise HaqError(f"layer {name}: {precision} under dynamic activations; dynamic int8 "
                       "is w8a8 (or fewer weight bits: w4a8), activations 8 bits")  # fmt: skip


def _integer_kernel(precision: Precision, settings: QuantSettings) -> bool:
    """Whether an int8 kernel (int32 accumulator, int32 bias) computes this layer.

    Wider grids run as dequantize + float op on every target haq knows, and a 16x16-bit bias
    would overflow int32; group-wise scales have no single bias scale.
    """
    w, a = precision.w_bits, precision.a_bits
    return w is not None and a is not None and w <= 8 and a <= 8 and settings.granularity != "group"
