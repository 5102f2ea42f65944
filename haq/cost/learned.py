"""Learned per-layer latency: gradient-boosted trees on log-latency from layer signatures.

Features (`FEATURES`): op-kind one-hot, log MACs, log in/out channels, kernel size, stride,
log groups, log input/output spatial size, log batch, log threads, and the kernel class one-hot.
Trained on a target's latency table, it predicts layers no table row covers (new models,
other batch sizes). It only answers for (op kind, kernel class) pairs it saw in training.

`fit` reports the in-sample MAPE and, when a layer -> model map is given, the
leave-one-model-out MAPE (each model's signatures held out in turn: how well it predicts a
network it has never seen). Saved under ``cost_models/<target>/``: ``model.pkl`` (pickle of the
estimator, sklearn version checked on load) and ``fit_report.json``.
"""

from __future__ import annotations

import json
import math
import pickle
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from haq.errors import HaqError
from haq.hardware.profile import OP_KINDS, HardwareProfile
from haq.hardware.tables import SIGNATURE_COLUMNS
from haq.io import atomic_write_bytes, atomic_write_text

MODEL_FILE = "model.pkl"
REPORT_FILE = "fit_report.json"
NUMERIC = ["log_macs", "log_in_channels", "log_out_channels", "kernel_h", "kernel_w", "stride_h",
           "stride_w", "log_groups", "log_in_hw", "log_out_hw", "log_batch", "log_threads"]  # fmt: skip
_SIG_NO_BATCH = [c for c in SIGNATURE_COLUMNS if c != "batch"]


def feature_names(kernels: list[str]) -> list[str]:
    return [f"kind={k}" for k in OP_KINDS] + NUMERIC + [f"kernel={k}" for k in kernels]


def features(frame: pd.DataFrame, kernels: list[str]) -> np.ndarray:
    """Feature matrix of table-like rows (`SIGNATURE_COLUMNS`, ``precision``, ``threads``)."""
    f = frame
    g = f["groups"].to_numpy(np.float64)
    macs = (
        (f["out_h"] * f["out_w"] * f["out_channels"]).to_numpy(np.float64)
        * (f["in_channels"].to_numpy(np.float64) / g)
        * (f["kernel_h"] * f["kernel_w"] * f["batch"]).to_numpy(np.float64)
    )
    threads = f["threads"].to_numpy(np.float64) if "threads" in f else np.ones(len(f))
    cols = [(f["kind"] == k).to_numpy(np.float64) for k in OP_KINDS]
    cols += [
        np.log(np.maximum(macs, 1.0)),
        np.log(f["in_channels"].to_numpy(np.float64)),
        np.log(f["out_channels"].to_numpy(np.float64)),
        f["kernel_h"].to_numpy(np.float64),
        f["kernel_w"].to_numpy(np.float64),
        f["stride_h"].to_numpy(np.float64),
        f["stride_w"].to_numpy(np.float64),
        np.log(g),
        np.log((f["in_h"] * f["in_w"]).to_numpy(np.float64)),
        np.log((f["out_h"] * f["out_w"]).to_numpy(np.float64)),
        np.log(f["batch"].to_numpy(np.float64)),
        np.log(threads),
    ]
    cols += [(f["precision"] == k).to_numpy(np.float64) for k in kernels]
    return np.column_stack(cols)


def mape(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    return float(np.mean(np.abs(pred - true) / true) * 100.0)


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


class LearnedCostModel:
    """Per-layer latency predictor for one target (fit, predict, save, load)."""

    name = "learned"

    def __init__(self, target: str = "", max_iter: int = 300, seed: int = 0) -> None:
        self.target = target
        self.max_iter = max_iter
        self.seed = seed
        self.estimator: Any = None
        self.kernels: list[str] = []
        self.seen: set[tuple[str, str]] = set()
        self.report: dict[str, Any] = {}

    # Fitting --------------------------------------------------------------------------------
    def _new_estimator(self, rows: int) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            max_iter=self.max_iter, learning_rate=0.1, min_samples_leaf=min(20, max(2, rows // 10)),
            random_state=self.seed,
        )  # fmt: skip

    def _fit_frame(self, frame: pd.DataFrame) -> Any:
        est = self._new_estimator(len(frame))
        est.fit(features(frame, self.kernels), np.log(frame["latency_us"].to_numpy(np.float64)))
        return est

    @staticmethod
    def _prepare(tables: pd.DataFrame | list[pd.DataFrame], threads: int) -> pd.DataFrame:
        frame = pd.concat(tables, ignore_index=True) if isinstance(tables, list) else tables.copy()
        missing = [c for c in SIGNATURE_COLUMNS + ["precision", "latency_us"] if c not in frame]
        if missing:
            raise HaqError(f"cannot fit a cost model: the table lacks columns {missing}")
        if "threads" not in frame:
            frame["threads"] = threads
        frame = frame[frame["latency_us"] > 0].reset_index(drop=True)
        if len(frame) < 4:
            raise HaqError(
                f"cannot fit a cost model on {len(frame)} table rows; measure more layers"
            )
        return frame

    def fit(
        self,
        tables: pd.DataFrame | list[pd.DataFrame],
        layer_map: pd.DataFrame | None = None,
        holdout_model: str | None = None,
        threads: int = 1,
    ) -> dict[str, Any]:
        """Fit on latency-table rows; returns the fit report (also kept as ``self.report``).

        ``layer_map`` (columns ``model`` + signature columns without ``batch``) enables the
        leave-one-model-out MAPE; ``holdout_model`` leaves that model's signatures out of the
        fitted model itself and reports its MAPE on them.
        """
        frame = self._prepare(tables, threads)
        self.kernels = sorted(frame["precision"].astype(str).unique())
        membership = self._membership(frame, layer_map)
        train = frame
        holdout: dict[str, Any] | None = None
        if holdout_model is not None:
            if membership is None or holdout_model not in membership:
                known = ", ".join(sorted(membership or {})) or "none (no layer map)"
                raise HaqError(
                    f"--holdout-model {holdout_model!r} is not in the layer map; use one of {known}"
                )
            mask = membership[holdout_model]
            train = frame[~mask]
            if len(train) < 4:
                raise HaqError(
                    f"holding out {holdout_model} leaves {len(train)} rows; nothing to fit"
                )
        self.estimator = self._fit_frame(train)
        self.seen = set(zip(train["kind"], train["precision"].astype(str), strict=True))
        y = train["latency_us"].to_numpy(np.float64)
        pred = self._predict_array(train)
        by_kernel = {
            k: round(mape(pred[m], y[m]), 2)
            for k in self.kernels
            if (m := (train["precision"] == k).to_numpy()).any()
        }
        if holdout_model is not None:
            test = frame[membership[holdout_model]]  # type: ignore[index]
            holdout = {"model": holdout_model, "rows": len(test),
                       "mape": round(mape(self._predict_array(test), test["latency_us"].to_numpy()), 2)}  # fmt: skip
        self.report = {
            "target": self.target,
            "estimator": "sklearn HistGradientBoostingRegressor on log(latency_us)",
            "sklearn": _sklearn_version(),
            "params": {"max_iter": self.max_iter, "seed": self.seed},
            "features": feature_names(self.kernels),
            "rows": len(train),
            "kernels": self.kernels,
            "seen": sorted(f"{a}/{b}" for a, b in self.seen),
            "in_sample_mape": round(mape(pred, y), 2),
            "in_sample_mape_by_kernel": by_kernel,
            "leave_one_model_out": self._lomo(frame, membership),
            "holdout": holdout,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return self.report

    @staticmethod
    def _membership(
        frame: pd.DataFrame, layer_map: pd.DataFrame | None
    ) -> dict[str, np.ndarray] | None:
        """model -> boolean mask of the table rows whose signature (any batch) it uses."""
        if layer_map is None:
            return None
        missing = [c for c in ["model"] + _SIG_NO_BATCH if c not in layer_map]
        if missing:
            raise HaqError(f"layer map lacks columns {missing}; it needs model + signature columns")
        keys = pd.MultiIndex.from_frame(frame[_SIG_NO_BATCH])
        out = {}
        for model, rows in layer_map.groupby("model"):
            own = pd.MultiIndex.from_frame(rows[_SIG_NO_BATCH].drop_duplicates())
            out[str(model)] = np.asarray(keys.isin(own))
        return out

    def _lomo(
        self, frame: pd.DataFrame, membership: dict[str, np.ndarray] | None
    ) -> dict[str, Any] | None:
        if not membership or len(membership) < 2:
            return None
        per_model: dict[str, Any] = {}
        errors, weights = [], []
        for model, mask in sorted(membership.items()):
            train, test = frame[~mask], frame[mask]
            if len(train) < 4 or test.empty:
                per_model[model] = None
                continue
            est = self._fit_frame(train)
            pred = np.exp(est.predict(features(test, self.kernels)))
            err = mape(pred, test["latency_us"].to_numpy(np.float64))
            per_model[model] = {"rows": len(test), "mape": round(err, 2)}
            errors.append(err)
            weights.append(len(test))
        mean = float(np.average(errors, weights=weights)) if errors else math.nan
        return {"per_model": per_model, "mean_mape": round(mean, 2),
                "method": "each model's signatures (all batches) held out; fit on the rest"}  # fmt: skip

    # Prediction ------------------------------------------------------------------------------
    def _predict_array(self, frame: pd.DataFrame) -> np.ndarray:
        return np.exp(self.estimator.predict(features(frame, self.kernels)))

    def knows(self, kind: str, kernel: str) -> bool:
        """Whether training rows covered this (op kind, kernel class) pair."""
        return (kind, kernel) in self.seen

    def predict_us(self, frame: pd.DataFrame) -> np.ndarray:
        """Latency (us) of table-like rows (signature columns, ``precision``, ``threads``)."""
        if self.estimator is None:
            raise HaqError("the learned cost model is not fitted; run `haq fit-cost-model`")
        return self._predict_array(frame)

    # Persistence ----------------------------------------------------------------------------
    @staticmethod
    def folder(target: str) -> Path:
        from haq.paths import data_dir

        return data_dir("cost_models") / target

    def save(self, folder: str | Path | None = None) -> Path:
        folder = Path(folder) if folder is not None else self.folder(self.target)
        payload = {"format": 1, "sklearn": _sklearn_version(), "target": self.target,
                   "estimator": self.estimator, "kernels": self.kernels, "seen": sorted(self.seen),
                   "max_iter": self.max_iter, "seed": self.seed}  # fmt: skip
        atomic_write_bytes(folder / MODEL_FILE, pickle.dumps(payload))
        atomic_write_text(folder / REPORT_FILE, json.dumps(self.report, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LearnedCostModel:
        path = Path(folder) / MODEL_FILE
        if not path.is_file():
            raise HaqError(f"no fitted cost model at {path}; run `haq fit-cost-model --target T`")
        try:
            payload = pickle.loads(path.read_bytes())
        except Exception as e:  # noqa: BLE001 - any unpickling failure means the same to the user
            raise HaqError(f"fitted cost model {path} is unreadable ({type(e).__name__}); refit it "
                           "with `haq fit-cost-model`") from e  # fmt: skip
        if not isinstance(payload, dict) or payload.get("format") != 1:
            raise HaqError(
                f"fitted cost model {path} has an unknown format; refit it with `haq fit-cost-model`"
            )
        if payload["sklearn"] != _sklearn_version():
            raise HaqError(f"fitted cost model {path} was made with scikit-learn {payload['sklearn']}, "
                           f"this is {_sklearn_version()}; refit it with `haq fit-cost-model`")  # fmt: skip
        model = cls(payload["target"], payload["max_iter"], payload["seed"])
        model.estimator = payload["estimator"]
        model.kernels = list(payload["kernels"])
        model.seen = {tuple(x) for x in payload["seen"]}  # type: ignore[misc]
        report = path.parent / REPORT_FILE
        model.report = json.loads(report.read_text()) if report.is_file() else {}
        return model

    @classmethod
    def find(cls, target: str) -> LearnedCostModel | None:
        """The fitted model of ``target`` if one is installed and loads; else None (warned)."""
        folder = cls.folder(target)
        if not (folder / MODEL_FILE).is_file():
            return None
        try:
            return cls.load(folder)
        except HaqError as e:
            warnings.warn(f"ignoring the learned cost model of {target}: {e}", stacklevel=2)
            return None


def fit_target(
    profile: HardwareProfile,
    holdout_model: str | None = None,
    out: str | Path | None = None,
    max_iter: int = 300,
    save: bool = True,
) -> LearnedCostModel:
    """Fit the learned model on a target's own tables and (by default) save it."""
    from haq.hardware.tables import read_table

    if "layers" not in profile.tables:
        raise HaqError(f"target {profile.id} has no latency table to learn from; measure one first")
    table = read_table(profile.tables["layers"])
    unknown = sorted(set(table["precision"].astype(str)) - set(profile.kernels))
    if unknown:
        raise HaqError(f"{profile.tables['layers']} has kernel classes {unknown} that profile "
                       f"{profile.id} does not declare; add them under 'kernels'")  # fmt: skip
    layer_map = pd.read_csv(profile.tables["layer_map"]) if "layer_map" in profile.tables else None
    model = LearnedCostModel(profile.id, max_iter=max_iter)
    model.fit(table, layer_map, holdout_model, threads=profile.threads[0])
    model.report["table"] = str(profile.tables["layers"].name)
    if save:
        model.save(out)
    return model
