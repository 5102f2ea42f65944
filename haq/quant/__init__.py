"""Simulated quantization: quantizer math, calibration, and applying a BitConfig to a model."""

from haq.quant.apply import Quantizer
from haq.quant.calibration import Calibration, calibrate
from haq.quant.modules import QuantConv2d, QuantLayer, QuantLinear
from haq.quant.settings import QuantSettings

__all__ = [
    "Calibration",
    "QuantConv2d",
    "QuantLayer",
    "QuantLinear",
    "QuantSettings",
    "Quantizer",
    "calibrate",
]
