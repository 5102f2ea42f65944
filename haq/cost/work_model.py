"""Stage 1 of the learned cost model: latency in proportion to the work a layer does.

latency = a*MACs + b*input elements + c*output elements + d*weights + e*elements pooled in
front + f, the coefficients >= 0 fitted (non-negative least squares on relative error) per op
group (conv, depthwise, linear) x kernel class x threads; sparse groups fall back to kernel
class x threads, then kernel class. It extrapolates the way hardware does (trees alone
predict the nearest leaf), and the roofline reads the same work terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

WORK_TERMS = ["macs", "input_elements", "output_elements", "weights", "reduced_elements", "one"]


def col(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A table column as float64."""
    return frame[name].to_numpy(np.float64)


def pooled_elements(frame: pd.DataFrame) -> np.ndarray:
    """Elements pooled away in front of each row's layer (`haq.models.spec.reduced_in_front`;
    the optional ``reduced_elements`` column, per sample), times the batch."""
    if "reduced_elements" not in frame:
        return np.zeros(len(frame))
    return frame["reduced_elements"].fillna(0).to_numpy(np.float64) * col(frame, "batch")


def work_terms(frame: pd.DataFrame) -> np.ndarray:
    """[MACs, input elements, output elements, weights, elements pooled in front, 1] per
    table-like row (`WORK_TERMS`)."""
    batch = col(frame, "batch")
    cin_g = col(frame, "in_channels") / col(frame, "groups")
    taps = col(frame, "kernel_h") * col(frame, "kernel_w")
    out_el = col(frame, "out_channels") * col(frame, "out_h") * col(frame, "out_w") * batch
    in_el = col(frame, "in_channels") * col(frame, "in_h") * col(frame, "in_w") * batch
    weights = col(frame, "out_channels") * cin_g * taps
    return np.column_stack(
        [out_el * cin_g * taps, in_el, out_el, weights, pooled_elements(frame), np.ones(len(frame))]
    )


def threads_of(frame: pd.DataFrame) -> np.ndarray:
    return col(frame, "threads") if "threads" in frame else np.ones(len(frame))


@dataclass
class WorkModel:
    """Non-negative linear latency in `WORK_TERMS`, per group key at three levels of detail."""

    coefs: dict[str, list[float]] = field(default_factory=dict)
    min_rows: int = 8  # 6 coefficients: fewer rows would fit noise

    @staticmethod
    def keys(frame: pd.DataFrame) -> list[list[str]]:
        """Per row: [op group/kernel/threads, kernel/threads, kernel, all] (most specific
        first; "all" takes any number of rows: a last resort on tiny tables)."""
        group = np.where(frame["kind"] == "dwconv", "dw",
                         np.where(frame["kind"] == "linear", "linear", "conv"))  # fmt: skip
        kernel = frame["precision"].astype(str).to_numpy()
        threads = threads_of(frame).astype(int)
        return [
            [f"{g}/{k}/{t}", f"{k}/{t}", k, "*"]
            for g, k, t in zip(group, kernel, threads, strict=True)
        ]

    def fit(self, frame: pd.DataFrame) -> WorkModel:
        from scipy.optimize import nnls

        a = work_terms(frame)
        y = col(frame, "latency_us")
        rel = a / y[:, None]  # least squares on relative error: small layers count too
        members: dict[str, list[int]] = {}
        for i, ks in enumerate(self.keys(frame)):
            for k in ks:
                members.setdefault(k, []).append(i)
        self.coefs = {
            k: nnls(rel[rows], np.ones(len(rows)))[0].tolist()
            for k, rows in members.items()
            if len(rows) >= self.min_rows or k == "*"
        }
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        a = work_terms(frame)
        out = np.full(len(frame), np.nan)
        for i, ks in enumerate(self.keys(frame)):
            k = next((k for k in ks if k in self.coefs), None)
            if k is not None:
                out[i] = float(a[i] @ np.asarray(self.coefs[k]))
        return np.maximum(out, 1e-3)
