"""Learned per-layer latency: a non-negative linear work model, corrected by boosted trees.

Two stages, because trees alone cannot extrapolate (an unseen network's layers are often
larger, smaller or shaped unlike any training row, and a tree predicts the nearest leaf):

1. `haq.cost.work_model.WorkModel`: latency in proportion to the work terms (MACs, elements
   in and out, weights, elements pooled in front), non-negative per op group x kernel class x
   threads. It extrapolates the way hardware does.
2. Gradient-boosted trees on log(latency / work model) from shape features (`feature_names`),
   one model per op family (convolutions, Linear): what the work terms miss (3-channel stems,
   alignment to the vector width, small spatial sizes), bounded by what the training rows
   showed. Where the table says which model measured each row, the activation after the
   layer and the elements pooled away in front of it are features too
   (`haq.cost.learned_target.with_graph_context`): runtimes fuse some activations into the
   layer, and the tables charge a pool to the layer after it.

It predicts layers no table row covers (new models, other batch sizes) and only answers for
(op kind, kernel class) pairs it saw in training.

`fit` reports the in-sample MAPE and, when a layer -> model map is given, the
leave-one-model-out MAPE (each model's signatures held out in turn: how well it predicts a
network it has never seen), per row and weighted by latency (what a whole-network sum feels).
`haq.cost.learned_target.fit_target` fits one on a target's tables. Saved under
``cost_models/<target>/``: ``model.pkl`` (pickle of both stages, sklearn version
checked on load) and ``fit_report.json``.
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from haq.cost.work_model import WorkModel, col, pooled_elements, threads_of, work_terms
from haq.errors import HaqError
from haq.hardware.profile import OP_KINDS, HardwareProfile
from haq.hardware.tables import SHAPE_COLUMNS, SIGNATURE_COLUMNS
from haq.io import atomic_write_bytes, atomic_write_text
from haq.models.spec import ACTIVATION_NAMES

#: Values of the optional ``act`` column (`LayerSpec.act`): one-hot features when a table has
#: it (a measured in-graph time depends on whether the runtime fuses the activation).
ACTS = ["none", *ACTIVATION_NAMES]

MODEL_FILE = "model.pkl"
REPORT_FILE = "fit_report.json"
FORMAT = 3
NUMERIC = ["log_macs", "log_in_channels", "log_out_channels", "kernel_h", "kernel_w", "stride_h",
           "stride_w", "log_groups", "log_channels_per_group", "log_in_hw", "log_out_hw",
           "log_input_elements", "log_output_elements", "log_weights", "log_batch",
           "log_threads", "in_channels_mod16", "out_channels_mod16", "log_reduced_elements",
           "log_work_model"]  # fmt: skip


def feature_names(kernels: list[str], acts: bool = False) -> list[str]:
    names = [f"kind={k}" for k in OP_KINDS] + NUMERIC + [f"kernel={k}" for k in kernels]
    return names + ([f"act={a}" for a in ACTS] if acts else [])


def features(
    frame: pd.DataFrame, kernels: list[str], work_us: np.ndarray, acts: bool = False
) -> np.ndarray:
    """Tree features of table-like rows (`SIGNATURE_COLUMNS`, ``precision``, ``threads``, with
    ``acts`` also ``act``; missing = "none") with their work-model latency."""
    f = frame
    a = work_terms(f)
    cin, cout, g = col(f, "in_channels"), col(f, "out_channels"), col(f, "groups")
    cols = [(f["kind"] == k).to_numpy(np.float64) for k in OP_KINDS]
    cols += [
        np.log(np.maximum(a[:, 0], 1.0)),
        np.log(cin),
        np.log(cout),
        col(f, "kernel_h"),
        col(f, "kernel_w"),
        col(f, "stride_h"),
        col(f, "stride_w"),
        np.log(g),
        np.log(cin / g),
        np.log(col(f, "in_h") * col(f, "in_w")),
        np.log(col(f, "out_h") * col(f, "out_w")),
        np.log(a[:, 1]),
        np.log(a[:, 2]),
        np.log(a[:, 3]),
        np.log(col(f, "batch")),
        np.log(threads_of(f)),
        cin % 16,
        cout % 16,
        np.log1p(pooled_elements(f)),
        np.log(work_us),
    ]
    cols += [(f["precision"] == k).to_numpy(np.float64) for k in kernels]
    if acts:
        act = f["act"].fillna("none") if "act" in f else pd.Series("none", index=f.index)
        cols += [(act == a).to_numpy(np.float64) for a in ACTS]
    return np.column_stack(cols)


def mape(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    return float(np.mean(np.abs(pred - true) / true) * 100.0)


def weighted_ape(pred: np.ndarray, true: np.ndarray) -> float:
    """Sum of absolute errors over sum of latencies, in percent (big layers weigh more)."""
    return float(np.abs(pred - true).sum() / true.sum() * 100.0)


def _network_ape(test: pd.DataFrame, pred: np.ndarray, layers: pd.DataFrame) -> float | None:
    """Mean |sum predicted - sum measured| / measured over a network's uniform configs: each
    (kernel class, threads, batch) whose rows cover every layer; layers with multiplicity."""
    counts = layers.groupby(SHAPE_COLUMNS).size().rename("count").reset_index()
    rows = test.assign(pred=pred).merge(counts, on=SHAPE_COLUMNS)
    errors = []
    for _, g in rows.groupby(["precision", "threads", "batch"]):
        if g["count"].sum() == len(layers):
            true, guess = (g["latency_us"] * g["count"]).sum(), (g["pred"] * g["count"]).sum()
            errors.append(abs(guess - true) / true)
    return round(100 * float(np.mean(errors)), 2) if errors else None


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def _families(frame: pd.DataFrame) -> np.ndarray:
    """Op family per row: "linear" or "conv" (dense, depthwise and grouped convolutions)."""
    return np.where(frame["kind"] == "linear", "linear", "conv")


@dataclass
class _Fitted:
    work: WorkModel
    # op family -> HistGradientBoostingRegressor on log(latency / work); "*" is fitted on all
    # rows and serves a family with too few of its own (none at all under 20 rows). One per
    # family: a correction learned on 512-token GEMMs must not bend the convs' (it did:
    # resnet50 held out, 17 -> 51 % MAPE once the MiniLM rows joined the table)
    trees: dict[str, Any]


class LearnedCostModel:
    """Per-layer latency predictor for one target (fit, predict, save, load)."""

    name = "learned"

    def __init__(
        self,
        target: str = "",
        max_iter: int = 300,
        seed: int = 0,
        learning_rate: float = 0.1,
        max_depth: int | None = None,
    ) -> None:
        self.target = target
        self.max_iter = max_iter
        self.seed = seed
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.fitted: _Fitted | None = None
        self.kernels: list[str] = []
        self.acts = False  # whether the training table had an ``act`` column
        self.seen: set[tuple[str, str]] = set()
        self.report: dict[str, Any] = {}

    # Fitting --------------------------------------------------------------------------------
    def _fit_frame(self, frame: pd.DataFrame) -> _Fitted:
        from sklearn.ensemble import HistGradientBoostingRegressor

        work = WorkModel().fit(frame)
        base = work.predict(frame)
        family = _families(frame)
        trees = {}
        for fam in ["*", *np.unique(family)]:  # "*": all rows, for a family with too few
            rows = np.ones(len(frame), bool) if fam == "*" else family == fam
            if rows.sum() < 20:
                continue
            part = frame[rows]
            model = HistGradientBoostingRegressor(
                max_iter=self.max_iter, learning_rate=self.learning_rate, max_depth=self.max_depth,
                min_samples_leaf=min(20, max(2, len(part) // 10)), l2_regularization=1.0,
                random_state=self.seed,
            )  # fmt: skip
            model.fit(features(part, self.kernels, base[rows], self.acts),
                      np.log(col(part, "latency_us") / base[rows]))  # fmt: skip
            trees[str(fam)] = model
        return _Fitted(work, trees)

    def _predict_with(self, fitted: _Fitted, frame: pd.DataFrame) -> np.ndarray:
        out = fitted.work.predict(frame)
        family = _families(frame)
        family[~np.isin(family, list(fitted.trees))] = "*"
        for fam, model in fitted.trees.items():
            rows = family == fam
            if rows.any():
                feats = features(frame[rows], self.kernels, out[rows], self.acts)
                out[rows] = out[rows] * np.exp(model.predict(feats))
        return out

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
        extra: pd.DataFrame | None = None,
    ) -> dict[str, Any]:
        """Fit on latency-table rows; returns the fit report (also kept as ``self.report``).

        ``layer_map`` (columns ``model`` + signature columns without ``batch``) enables the
        leave-one-model-out MAPE; ``holdout_model`` leaves that model's signatures out of the
        fitted model itself and reports its MAPE on them. ``extra``: training-only rows (probe
        networks): in every fit, minus the held-out model's signatures, never scored.
        """
        frame = self._prepare(tables, threads)
        more = self._prepare(extra, threads) if extra is not None else frame.iloc[:0]
        self.kernels = sorted(
            set(frame["precision"].astype(str)) | set(more["precision"].astype(str))
        )
        self.acts = "act" in frame
        membership = self._membership(frame, layer_map)
        more_membership = self._membership(more, layer_map)
        own, probes = frame, more
        holdout: dict[str, Any] | None = None
        if holdout_model is not None:
            if membership is None or holdout_model not in membership:
                known = ", ".join(sorted(membership or {})) or "none (no layer map)"
                raise HaqError(
                    f"--holdout-model {holdout_model!r} is not in the layer map; use one of {known}"
                )
            own = frame[~membership[holdout_model]]
            probes = more[~more_membership[holdout_model]]  # type: ignore[index]
        train = pd.concat([own, probes], ignore_index=True)
        if len(train) < 4:
            raise HaqError(f"holding out {holdout_model} leaves {len(train)} rows; nothing to fit")
        self.fitted = self._fit_frame(train)
        self.seen = set(zip(train["kind"], train["precision"].astype(str), strict=True))
        y = own["latency_us"].to_numpy(np.float64)  # in-sample errors: the table's own rows
        pred = self._predict_array(own)
        by_kernel = {
            k: round(mape(pred[m], y[m]), 2)
            for k in self.kernels
            if (m := (own["precision"] == k).to_numpy()).any()
        }
        if holdout_model is not None:
            test = frame[membership[holdout_model]]  # type: ignore[index]
            holdout = {"model": holdout_model, **self._errors(self._predict_array(test), test)}
        self.report = {
            "target": self.target,
            "estimator": "non-negative linear work model per op group x kernel class x threads "
            "(scipy nnls), times exp(sklearn HistGradientBoostingRegressor on "
            "log(latency_us / work model))",
            "sklearn": _sklearn_version(),
            "params": {
                "max_iter": self.max_iter,
                "seed": self.seed,
                "learning_rate": self.learning_rate,
                "max_depth": self.max_depth,
            },
            "features": feature_names(self.kernels, self.acts),
            "rows": len(train),
            "probe_rows": len(probes),
            "kernels": self.kernels,
            "seen": sorted(f"{a}/{b}" for a, b in self.seen),
            "in_sample_mape": round(mape(pred, y), 2),
            "work_model_in_sample_mape": round(mape(self.fitted.work.predict(own), y), 2),
            "probe_in_sample_mape": (
                round(mape(self._predict_array(probes), col(probes, "latency_us")), 2)
                if len(probes)
                else None
            ),
            "in_sample_mape_by_kernel": by_kernel,
            "leave_one_model_out": self._lomo(frame, membership, more, more_membership, layer_map),
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
        missing = [c for c in ["model"] + SHAPE_COLUMNS if c not in layer_map]
        if missing:
            raise HaqError(f"layer map lacks columns {missing}; it needs model + signature columns")
        keys = pd.MultiIndex.from_frame(frame[SHAPE_COLUMNS])
        out = {}
        for model, rows in layer_map.groupby("model"):
            own = pd.MultiIndex.from_frame(rows[SHAPE_COLUMNS].drop_duplicates())
            out[str(model)] = np.asarray(keys.isin(own))
        return out

    def _lomo(
        self,
        frame: pd.DataFrame,
        membership: dict[str, np.ndarray] | None,
        more: pd.DataFrame,
        more_membership: dict[str, np.ndarray] | None,
        layer_map: pd.DataFrame | None,
    ) -> dict[str, Any] | None:
        if not membership or not more_membership or layer_map is None or len(membership) < 2:
            return None
        per_model: dict[str, Any] = {}
        for model, mask in sorted(membership.items()):
            test = frame[mask]
            train = pd.concat([frame[~mask], more[~more_membership[model]]], ignore_index=True)
            if len(train) < 4 or test.empty:
                per_model[model] = None
                continue
            fitted = self._fit_frame(train)
            pred = self._predict_with(fitted, test)
            per_model[model] = {
                **self._errors(pred, test),
                "work_model_mape": round(mape(fitted.work.predict(test), col(test, "latency_us")), 2),
                "network_ape": _network_ape(test, pred, layer_map[layer_map["model"] == model]),
            }  # fmt: skip
        done = [v for v in per_model.values() if v is not None]
        rows = sum(v["rows"] for v in done)
        return {
            "per_model": per_model,
            "mean_mape": round(sum(v["mape"] * v["rows"] for v in done) / rows, 2) if rows else None,
            "method": "each model's signatures (all batches) held out of the table and the probe "
                      "rows; fit on the rest; mape per row, weighted_ape = sum |error| / sum "
                      "latency, work_model_mape = stage 1 alone, network_ape = mean over the "
                      "model's uniform configs (kernel class x threads x batch with a row for "
                      "every layer) of |sum of predicted rows - sum of measured rows| / measured, "
                      "layers counted as often as the network has them",
        }  # fmt: skip

    def _errors(self, pred: np.ndarray, test: pd.DataFrame) -> dict[str, Any]:
        true = col(test, "latency_us")
        return {"rows": len(test), "mape": round(mape(pred, true), 2),
                "weighted_ape": round(weighted_ape(pred, true), 2)}  # fmt: skip

    # Prediction ------------------------------------------------------------------------------
    def _predict_array(self, frame: pd.DataFrame) -> np.ndarray:
        if self.fitted is None:
            raise HaqError("the learned cost model is not fitted; run `haq fit-cost-model`")
        return self._predict_with(self.fitted, frame)

    def knows(self, kind: str, kernel: str) -> bool:
        """Whether training rows covered this (op kind, kernel class) pair."""
        return (kind, kernel) in self.seen

    def predict_us(self, frame: pd.DataFrame) -> np.ndarray:
        """Latency (us) of table-like rows (signature columns, ``precision``, ``threads``)."""
        return self._predict_array(frame)

    # Persistence ----------------------------------------------------------------------------
    @staticmethod
    def folder(target: str) -> Path:
        """The shipped model's folder (`haq fit-cost-model --shipped` writes it)."""
        from haq.paths import data_dir

        return data_dir("cost_models") / target

    @classmethod
    def folder_of(cls, profile: HardwareProfile) -> Path:
        """Where ``profile``'s fitted model is saved and found: `folder` for a shipped target;
        beside the tables of a target of its own (`haq profile --out DIR/NAME`: in
        DIR/NAME/learned/), so it travels with them and never lands in haq's data folder."""
        from haq.paths import data_dir

        shipped = data_dir("hardware_profiles").resolve()
        if profile.path is None or profile.path.resolve().parent == shipped:
            return cls.folder(profile.id)
        return profile.tables["layers"].parent / "learned"

    @staticmethod
    def user_folder(target: str) -> Path:
        """The model refitted on the user's overlay rows too: preferred when present."""
        from haq.hardware.overlay import overlay_path

        return overlay_path(target) / "learned"

    def save(self, folder: str | Path | None = None) -> Path:
        folder = Path(folder) if folder is not None else self.folder(self.target)
        payload = {"format": FORMAT, "sklearn": _sklearn_version(), "target": self.target,
                   "fitted": self.fitted, "kernels": self.kernels, "acts": self.acts,
                   "seen": sorted(self.seen),
                   "params": {"max_iter": self.max_iter, "seed": self.seed,
                              "learning_rate": self.learning_rate, "max_depth": self.max_depth}}  # fmt: skip
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
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise HaqError(
                f"fitted cost model {path} has an unknown format; refit it with `haq fit-cost-model`"
            )
        if payload["sklearn"] != _sklearn_version():
            raise HaqError(f"fitted cost model {path} was made with scikit-learn {payload['sklearn']}, "
                           f"this is {_sklearn_version()}; refit it with `haq fit-cost-model`")  # fmt: skip
        model = cls(payload["target"], **payload["params"])
        model.fitted = payload["fitted"]
        model.kernels = list(payload["kernels"])
        model.acts = bool(payload.get("acts", False))
        model.seen = {tuple(x) for x in payload["seen"]}  # type: ignore[misc]
        report = path.parent / REPORT_FILE
        model.report = json.loads(report.read_text()) if report.is_file() else {}
        return model

    @classmethod
    def find(cls, profile: HardwareProfile) -> LearnedCostModel | None:
        """The fitted model of ``profile`` (the user's refit over the target's own,
        `folder_of`) if one is installed and loads; else None (warned)."""
        folder = cls.user_folder(profile.id)
        if not (folder / MODEL_FILE).is_file():
            folder = cls.folder_of(profile)
        if not (folder / MODEL_FILE).is_file():
            return None
        try:
            return cls.load(folder)
        except HaqError as e:
            warnings.warn(f"ignoring the learned cost model of {profile.id}: {e}", stacklevel=2)
            return None
