"""Learned per-layer latency: a non-negative linear work model, corrected by boosted trees.

Two stages, because trees alone cannot extrapolate (an unseen network's layers are often
larger, smaller or shaped unlike any training row, and a tree predicts the nearest leaf):

1. `WorkModel`: latency = a*MACs + b*input elements + c*output elements + d*weights
   + e*elements pooled in front (below) + f, the coefficients >= 0 fitted (non-negative least squares on relative error) per op group
   (conv, depthwise, linear) x kernel class x threads; sparse groups fall back to kernel class
   x threads, then kernel class. It extrapolates the way hardware does: in proportion to work.
2. Gradient-boosted trees on log(latency / work model) from shape features (`feature_names`),
   one model per op family (convolutions, Linear): what the work terms miss (3-channel stems, alignment to the vector
   width, small spatial sizes), bounded by what the training rows showed. Where the table
   says which model measured each row, the activation after the layer is a feature too
   (`with_graph_context`; `LayerSpec.act`): runtimes fuse some activations into the layer;
   so are the elements pooled away in front of it (`haq.models.spec.reduced_in_front`), a
   stage-1 work term too: the tables charge a pool to the layer after it.

It predicts layers no table row covers (new models, other batch sizes) and only answers for
(op kind, kernel class) pairs it saw in training.

`fit` reports the in-sample MAPE and, when a layer -> model map is given, the
leave-one-model-out MAPE (each model's signatures held out in turn: how well it predicts a
network it has never seen), per row and weighted by latency (what a whole-network sum feels).
Saved under ``cost_models/<target>/``: ``model.pkl`` (pickle of both stages, sklearn version
checked on load) and ``fit_report.json``.
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from haq.errors import HaqError
from haq.hardware.profile import OP_KINDS, HardwareProfile
from haq.hardware.tables import SHAPE_COLUMNS, SIGNATURE_COLUMNS
from haq.io import atomic_write_bytes, atomic_write_text
from haq.models.spec import ACTIVATION_NAMES, reduced_in_front

#: Values of the optional ``act`` column (`LayerSpec.act`): one-hot features when a table has
#: it (a measured in-graph time depends on whether the runtime fuses the activation).
ACTS = ["none", *ACTIVATION_NAMES]

MODEL_FILE = "model.pkl"
REPORT_FILE = "fit_report.json"
FORMAT = 3
WORK_TERMS = ["macs", "input_elements", "output_elements", "weights", "reduced_elements", "one"]
NUMERIC = ["log_macs", "log_in_channels", "log_out_channels", "kernel_h", "kernel_w", "stride_h",
           "stride_w", "log_groups", "log_channels_per_group", "log_in_hw", "log_out_hw",
           "log_input_elements", "log_output_elements", "log_weights", "log_batch",
           "log_threads", "in_channels_mod16", "out_channels_mod16", "log_reduced_elements",
           "log_work_model"]  # fmt: skip


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(np.float64)


def _reduced(frame: pd.DataFrame) -> np.ndarray:
    """Elements pooled away in front of each row's layer (`haq.models.spec.reduced_in_front`;
    the optional ``reduced_elements`` column, per sample), times the batch."""
    if "reduced_elements" not in frame:
        return np.zeros(len(frame))
    return frame["reduced_elements"].fillna(0).to_numpy(np.float64) * _col(frame, "batch")


def work_terms(frame: pd.DataFrame) -> np.ndarray:
    """[MACs, input elements, output elements, weights, elements pooled in front, 1] per
    table-like row (`WORK_TERMS`)."""
    batch = _col(frame, "batch")
    cin_g = _col(frame, "in_channels") / _col(frame, "groups")
    taps = _col(frame, "kernel_h") * _col(frame, "kernel_w")
    out_el = _col(frame, "out_channels") * _col(frame, "out_h") * _col(frame, "out_w") * batch
    in_el = _col(frame, "in_channels") * _col(frame, "in_h") * _col(frame, "in_w") * batch
    weights = _col(frame, "out_channels") * cin_g * taps
    return np.column_stack(
        [out_el * cin_g * taps, in_el, out_el, weights, _reduced(frame), np.ones(len(frame))]
    )


def _threads(frame: pd.DataFrame) -> np.ndarray:
    return _col(frame, "threads") if "threads" in frame else np.ones(len(frame))


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
        threads = _threads(frame).astype(int)
        return [
            [f"{g}/{k}/{t}", f"{k}/{t}", k, "*"]
            for g, k, t in zip(group, kernel, threads, strict=True)
        ]

    def fit(self, frame: pd.DataFrame) -> WorkModel:
        from scipy.optimize import nnls

        a = work_terms(frame)
        y = _col(frame, "latency_us")
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
    cin, cout, g = _col(f, "in_channels"), _col(f, "out_channels"), _col(f, "groups")
    cols = [(f["kind"] == k).to_numpy(np.float64) for k in OP_KINDS]
    cols += [
        np.log(np.maximum(a[:, 0], 1.0)),
        np.log(cin),
        np.log(cout),
        _col(f, "kernel_h"),
        _col(f, "kernel_w"),
        _col(f, "stride_h"),
        _col(f, "stride_w"),
        np.log(g),
        np.log(cin / g),
        np.log(_col(f, "in_h") * _col(f, "in_w")),
        np.log(_col(f, "out_h") * _col(f, "out_w")),
        np.log(a[:, 1]),
        np.log(a[:, 2]),
        np.log(a[:, 3]),
        np.log(_col(f, "batch")),
        np.log(_threads(f)),
        cin % 16,
        cout % 16,
        np.log1p(_reduced(f)),
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
                      np.log(_col(part, "latency_us") / base[rows]))  # fmt: skip
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
                round(mape(self._predict_array(probes), _col(probes, "latency_us")), 2)
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
                "work_model_mape": round(mape(fitted.work.predict(test), _col(test, "latency_us")), 2),
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
        true = _col(test, "latency_us")
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
    def find(cls, target: str) -> LearnedCostModel | None:
        """The fitted model of ``target`` (the user's refit over the shipped one) if one is
        installed and loads; else None (warned)."""
        folder = cls.user_folder(target)
        if not (folder / MODEL_FILE).is_file():
            folder = cls.folder(target)
        if not (folder / MODEL_FILE).is_file():
            return None
        try:
            return cls.load(folder)
        except HaqError as e:
            warnings.warn(f"ignoring the learned cost model of {target}: {e}", stacklevel=2)
            return None


def with_graph_context(table: pd.DataFrame, layer_map: pd.DataFrame) -> pd.DataFrame:
    """``table`` with what the graph around each row's layers adds, where it can be known:
    rows that name the model that measured them (``model``) take, over that model's layers
    with the signature, the most common activation after them (layer_map ``act``: an ``act``
    column) and the mean of the elements pooled in front of them (`reduced_in_front` from the
    layer map's execution order: a ``reduced_elements`` column). Without a ``model`` column the
    table is returned as is."""
    if "model" not in table:
        return table
    keys = ["model", *SHAPE_COLUMNS]
    context = layer_map[keys].drop_duplicates()
    if "act" in layer_map:
        acts = layer_map.groupby(keys)["act"].agg(lambda a: a.mode().iloc[0])
        context = context.merge(acts.reset_index(), on=keys)
    if "index" in layer_map:
        ordered = layer_map.sort_values(["model", "index"])
        h, w = ordered["in_h"] * ordered["in_w"], ordered["out_h"] * ordered["out_w"]
        ordered = ordered.assign(
            in_el=ordered["in_channels"] * h, out_el=ordered["out_channels"] * w
        )
        reduced = pd.concat([
            pd.Series(reduced_in_front(g["in_el"].tolist(), g["out_el"].tolist()), index=g.index)
            for _, g in ordered.groupby("model", sort=False)
        ])  # fmt: skip
        means = ordered.assign(reduced_elements=reduced).groupby(keys)["reduced_elements"].mean()
        context = context.merge(means.reset_index(), on=keys)
    if len(context.columns) == len(keys):
        return table
    out = table.merge(context, on=keys, how="left")
    if "act" in out:
        out["act"] = out["act"].fillna("none")
    if "reduced_elements" in out:
        out["reduced_elements"] = out["reduced_elements"].fillna(0.0)
    return out


def fit_target(
    profile: HardwareProfile,
    holdout_model: str | None = None,
    out: str | Path | None = None,
    max_iter: int = 300,
    save: bool = True,
    probes: bool = False,
    column: str = "latency_us",
) -> LearnedCostModel:
    """Fit the learned model on a target's own tables (with ``probes`` also on its probe
    networks' rows, ``tables.probes``) and (by default) save it. ``column``: the
    time to learn, the table's ``latency_us`` (what the cost models add up) or, for analysis,
    e.g. ``kernel_us`` (the layer's own nodes, without the boundary in front of it).

    The user's overlay rows (`haq.hardware.overlay`: profiled layers) are training data too;
    a model fitted on any goes to the user's folder (`LearnedCostModel.user_folder`), never
    over the shipped one unless ``out`` names it."""
    from haq.hardware.overlay import load_tables
    from haq.hardware.tables import read_table

    if "layers" not in profile.tables:
        raise HaqError(f"target {profile.id} has no latency table to learn from; measure one first")
    tables = load_tables(profile)
    layer_map = tables.layer_map
    table = _with_context(tables.layers, layer_map)
    extra = None
    if probes and "probes" in profile.tables:
        extra = _with_context(read_table(profile.tables["probes"]), _read_map(profile, "probe_map"))
    for path, rows in ((profile.tables["layers"], table), (profile.tables.get("probes"), extra)):
        unknown = (
            set() if rows is None else set(rows["precision"].astype(str)) - set(profile.kernels)
        )
        if unknown:
            raise HaqError(f"{path} has kernel classes {sorted(unknown)} that profile {profile.id} "
                           "does not declare; add them under 'kernels'")  # fmt: skip
    if column != "latency_us":
        if column not in table:
            raise HaqError(f"{profile.tables['layers']} has no column {column!r} to learn")
        table = table.assign(latency_us=table[column])
        extra = None if extra is None else extra.assign(latency_us=extra[column])
    model = LearnedCostModel(profile.id, max_iter=max_iter)
    model.fit(table, layer_map, holdout_model, threads=profile.threads[0], extra=extra)
    model.report["table"] = str(profile.tables["layers"].name)
    model.report["overlay_rows"] = tables.overlay_rows
    if save:
        user = tables.overlay_rows > 0 and out is None
        model.report["saved_to"] = str(
            model.save(LearnedCostModel.user_folder(profile.id) if user else out)
        )
    return model


def _read_map(profile: HardwareProfile, key: str) -> pd.DataFrame | None:
    return pd.read_csv(profile.tables[key]) if key in profile.tables else None


def _with_context(table: pd.DataFrame, layer_map: pd.DataFrame | None) -> pd.DataFrame:
    return table if layer_map is None else with_graph_context(table, layer_map)
