"""Accuracy evaluation: metrics, the Evaluator protocol, and the in-process evaluator."""

from haq.evaluate.evaluator import EvalResult, Evaluator, LocalEvaluator
from haq.evaluate.metrics import Metrics, classification_metrics
from haq.evaluate.predict import predict
from haq.evaluate.setup import EvalSetup, build_setup

__all__ = [
    "EvalResult",
    "EvalSetup",
    "Evaluator",
    "LocalEvaluator",
    "Metrics",
    "build_setup",
    "classification_metrics",
    "predict",
]
