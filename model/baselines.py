"""Baseline lead models, always measured on the same split as the GNN (docs/evaluation.md#models).

* ``rules``: a points-based BANT-style score (persona and account fit + decayed engagement
  points, ``model.rules``), mapped to a probability by a monotone (Platt) calibration on the
  training examples. Its ranking is the rule score's ranking.
* ``logreg``: logistic regression on the lead's own fields (contact and company firmographics).
* ``lgbm_flat``: LightGBM on the flat table: own fields + the contact's own activity and order
  aggregates (``model.temporal``) and its career (``model.career``: former employers, a
  purchase championed at one, days since the move).
* ``lgbm_agg``: ``lgbm_flat`` + hand-built account aggregates (colleague engagement, account
  opportunities and stages, company orders, peer-company orders via industry_peer/similar_to).

The feature tables live in ``model.tabular``, the rule score in ``model.rules``. Every feature is a function of the ``Subgraph``
as of its ``as_of`` (no event after it), and every model is deterministic by seed. A training
set with a single class gives a constant model that predicts the training base rate.

Every baseline can be served (``model.scorer``): its features read only a lead's 2-hop
neighbourhood, so a k-hop union scores as the snapshot. Like the GNN, a tabular model fits tier
cut points and its tier card on the validation cutoffs (docs/model.md#calibration-and-tiers),
and explains itself in the GNN's evidence groups (``explain_signed``: TreeSHAP for LightGBM,
coefficients for logistic regression; ``model.tabular_explain``).

Example:
    >>> from leadpulse.graph_store.base import Subgraph
    >>> g = Subgraph(as_of=0, node_ids={"contact": ["c1"]}, attrs={"contact": [{"seniority": "vp"}]})
    >>> make_model("rules").points(g, ["c1"]).tolist()
    [20.0]
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import lightgbm as lgb
import numpy as np
from sklearn.linear_model import LogisticRegression

from leadpulse.graph_store.base import Subgraph
from leadpulse.model.base import ExampleSet, LeadModel
from leadpulse.model.calibration import assign_tiers, fit_tier_card
from leadpulse.model.factors import Explanation
from leadpulse.model.rules import RulePoints, RulesModel
from leadpulse.model.tabular import Encoder, RawTable, TableRows, examples_table, feature_table
from leadpulse.model.tabular_explain import FACT_SETS, explain_columns

logger = logging.getLogger(__name__)

__all__ = ["feature_table", "LGBMOptions", "RulePoints", "RulesModel", "LogRegModel", "LGBMFlatModel",
           "LGBMAggModel", "BASELINES", "make_model", "load_model"]

FORMAT_VERSION = 2  # 2: tier cut points, rates and card (a version-1 file has none: every lead tier D)


# ------------------------------------------------------------------ models
class _Tabular(LeadModel):
    """A model on a flat feature matrix built from ``feature_sets``.

    Attributes (after fit or load), as ``GNNLeadModel``'s:
        tier_cuts: probability thresholds (A, B, C), the 90th, 70th and 40th percentiles of
            the validation scores (training ones without validation cutoffs);
            (1, 1, 1) for a file saved before tiers: every lead tier D.
        tier_rates, tier_card: what each tier converted at there (``calibration.tier_card``).
        version: set by the registry (None until registered).
    """
    feature_sets: tuple[str, ...] = ()
    #: whether ``_fit_matrix`` looks at the validation set (its table is built for the tiers anyway)
    uses_valid: bool = True

    def __init__(self, career: bool = True) -> None:
        self.encoder: Optional[Encoder] = None
        self.constant: Optional[float] = None  # set when training had a single class
        # the class's families; without ``career`` the ablation of docs/model.md, "Job changes"
        self.feature_sets = tuple(f for f in type(self).feature_sets if career or f != "career")
        self.tier_cuts: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.tier_rates: dict[str, Optional[float]] = {}
        self.tier_card: dict = {}
        self.version: Optional[str] = None

    def fit(self, train: ExampleSet, valid: Optional[ExampleSet] = None, seed: int = 0) -> "LeadModel":
        raw, y, w = examples_table(train, self.feature_sets)
        self.encoder = Encoder.fit(raw)
        X = self.encoder.transform(raw)
        held = None  # the validation cutoffs' (X, y, w): early stopping and the tiers
        if valid and any(ex.contact_ids for ex in valid):
            vraw, vy, vw = examples_table(valid, self.feature_sets)
            held = (self.encoder.transform(vraw), vy, vw) if vy.size else None
        if y.min() == y.max():
            logger.warning("%s: training labels have a single class; predicting the base rate", self.name)
            self.constant = float(y.mean())  # one class: weights cannot move the mean
        else:
            self.constant = None
            usable = held is not None and self.uses_valid and 0 < held[1].sum() < held[1].size
            self._fit_matrix(X, y, w, held if usable else None, seed)
        self._fit_tiers(*(held[:2] if held is not None else (X, y)))
        return self

    def _fit_tiers(self, X: np.ndarray, y: np.ndarray) -> None:
        """Tier cut points, rates and card on ``X, y`` (the validation cutoffs, else the training
        ones), from the probabilities ``predict_proba`` gives the same leads."""
        fitted = fit_tier_card(self._proba_matrix(X), y)
        if fitted is not None:
            self.tier_cuts, self.tier_rates, self.tier_card = fitted

    def tiers(self, proba: np.ndarray) -> list[str]:
        """Tier letter per probability (``tier_cuts``), as ``GNNLeadModel.tiers``."""
        return assign_tiers(proba, self.tier_cuts)

    def _proba_matrix(self, X: np.ndarray) -> np.ndarray:
        if self.constant is not None:
            return np.full(X.shape[0], self.constant)
        return np.clip(self._predict_matrix(X), 0.0, 1.0)

    def rows(self, graph: Subgraph, contact_ids: Sequence[str]) -> TableRows:
        """The leads' feature table as of ``graph.as_of`` (``predict_proba(..., rows=)`` and
        ``explain_signed(..., encoded=)`` reuse it)."""
        ids = list(contact_ids)
        return TableRows(ids, self.feature_sets, feature_table(graph, ids, self.feature_sets))

    def predict_proba(self, graph: Subgraph, contact_ids: Sequence[str],
                      rows: Optional[TableRows] = None) -> np.ndarray:
        """Probabilities as of ``graph.as_of``; ``rows``: ``self.rows(graph, ...)`` of (at least)
        these leads when the caller has them."""
        if self.encoder is None:
            raise RuntimeError(f"{self.name}: predict_proba before fit")
        if not contact_ids:
            return np.zeros(0)
        if self.constant is not None:
            return np.full(len(contact_ids), self.constant)
        raw = rows.rows_of(contact_ids) if rows is not None else feature_table(graph, contact_ids, self.feature_sets)
        return self._proba_matrix(self.encoder.transform(raw))

    def explain_signed(self, graph: Subgraph, contact_ids: Sequence[str], top_k: int = 5,
                       min_abs: float = 1e-4, encoded: Optional[TableRows] = None) -> list[Explanation]:
        """Each lead's factors in the GNN's evidence groups, from its per-column log-odds
        contributions (``model.tabular_explain``); none for a constant model. ``encoded``: the
        rows the scoring built (``rows``), reused when given."""
        if self.encoder is None:
            raise RuntimeError(f"{self.name}: explain_signed before fit")
        ids = list(contact_ids)
        if self.constant is not None or not ids:
            return [Explanation([], [], []) for _ in ids]
        # one table for the model and the texts: the model's families first, so its columns lead
        facts = tuple(s for s in FACT_SETS if s not in self.feature_sets)
        if encoded is not None and encoded.sets == self.feature_sets:
            raw = RawTable.beside([encoded.rows_of(ids)] + ([feature_table(graph, ids, facts)] if facts else []))
        else:
            raw = feature_table(graph, ids, self.feature_sets + facts)
        n = len(self.encoder.num_cols)
        X = self.encoder.transform(RawTable(raw.num[:, :n], raw.num_cols[:n], raw.cats))
        contrib, logit = self._contributions(X)
        return explain_columns(graph, ids, self.encoder.columns, contrib, logit, top_k, min_abs, facts=raw)

    # subclasses
    def _fit_matrix(self, X, y, w, valid_xy, seed) -> None:
        """Fit on ``X, y`` with example weights ``w`` (None = 1); ``valid_xy`` = (X, y, w) or None."""
    def _predict_matrix(self, X) -> np.ndarray: ...
    def _contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``(per-column log-odds contributions, log-odds score)`` of each row of ``X``."""
        raise NotImplementedError
    def _state(self) -> dict: return {}
    def _load_state(self, state: dict, path: Path) -> None: ...

    def save(self, path: Path) -> None:
        if self.encoder is None:
            raise RuntimeError(f"{self.name}: save before fit")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {"format_version": FORMAT_VERSION, "name": self.name, "constant": self.constant,
                 "encoder": asdict(self.encoder), "feature_sets": list(self.feature_sets),
                 "tier_cuts": list(self.tier_cuts), "tier_rates": self.tier_rates, "tier_card": self.tier_card,
                 **self._state()}
        self._save_files(path)
        (path / "model.json").write_text(json.dumps(state, indent=1))

    def _save_files(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> "LeadModel":
        path = Path(path)
        state = json.loads((path / "model.json").read_text())
        if state.get("name") != cls.name or state.get("format_version") not in (1, FORMAT_VERSION):
            raise ValueError(f"{path} holds {state.get('name')!r} v{state.get('format_version')}, "
                             f"not {cls.name!r} v1..v{FORMAT_VERSION}")
        model = cls()
        # files saved before the career features have no ``feature_sets``: they had no career family
        model.feature_sets = tuple(state.get("feature_sets") or (f for f in cls.feature_sets if f != "career"))
        model.encoder = Encoder(**state["encoder"])
        model.constant = state["constant"]
        # version 1 has no tiers: the defaults, every lead tier D (as the rules model's version 1)
        model.tier_cuts = tuple(state.get("tier_cuts", model.tier_cuts))
        model.tier_rates = dict(state.get("tier_rates") or {})
        model.tier_card = state.get("tier_card") or {}
        if model.constant is None:
            model._load_state(state, path)
        return model


class LogRegModel(_Tabular):
    """L2 logistic regression on the lead's own fields (standardised; missing = train mean)."""
    name = "logreg"
    feature_sets = ("own",)
    uses_valid = False

    def __init__(self, C: float = 1.0, career: bool = True) -> None:
        super().__init__(career)
        self.C = C
        self.mean = self.scale = self.coef = None
        self.intercept = 0.0

    def _fit_matrix(self, X, y, w, valid_xy, seed) -> None:
        seen = ~np.isnan(X)
        sums = np.where(seen, X, 0.0).sum(axis=0)
        self.mean = np.where(seen.any(axis=0), sums / np.maximum(seen.sum(axis=0), 1), 0.0)
        Z = np.where(np.isnan(X), self.mean, X) - self.mean
        self.scale = np.where(Z.std(axis=0) > 0, Z.std(axis=0), 1.0)
        clf = LogisticRegression(C=self.C, max_iter=2000, random_state=seed).fit(Z / self.scale, y, sample_weight=w)
        self.coef, self.intercept = clf.coef_[0], float(clf.intercept_[0])

    def _predict_matrix(self, X) -> np.ndarray:
        z = (np.where(np.isnan(X), self.mean, X) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(z @ self.coef + self.intercept)))

    def _contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        # against the training mean (z = 0), as SHAP's are against the average training lead
        z = (np.where(np.isnan(X), self.mean, X) - self.mean) / self.scale
        return z * self.coef, z @ self.coef + self.intercept

    def _state(self) -> dict:
        if self.coef is None:
            return {"C": self.C}
        return {"C": self.C, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept}

    def _load_state(self, state: dict, path: Path) -> None:
        self.C = state["C"]
        self.mean, self.scale, self.coef = (np.array(state[k]) for k in ("mean", "scale", "coef"))
        self.intercept = state["intercept"]


@dataclass(frozen=True)
class LGBMOptions:
    """LightGBM settings (deterministic: ``deterministic=True``, fixed ``num_threads``).

    One thread by default: the tables are small, and OpenMP threads that spin on a busy
    machine slow training down many times over.
    """
    num_boost_round: int = 400
    early_stopping_rounds: int = 40
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.8
    lambda_l2: float = 1.0
    num_threads: int = 1


class _LGBM(_Tabular):
    def __init__(self, options: LGBMOptions = LGBMOptions(), career: bool = True) -> None:
        super().__init__(career)
        self.options = options
        self.booster: Optional[lgb.Booster] = None

    def _params(self, seed: int) -> dict:
        o = self.options
        return {"objective": "binary", "learning_rate": o.learning_rate, "num_leaves": o.num_leaves,
                "min_data_in_leaf": o.min_data_in_leaf, "feature_fraction": o.feature_fraction,
                "lambda_l2": o.lambda_l2, "num_threads": o.num_threads, "seed": seed,
                "deterministic": True, "force_row_wise": True, "verbosity": -1}

    def _fit_matrix(self, X, y, w, valid_xy, seed) -> None:
        names = [f"f{i}_" + re.sub(r"[^0-9A-Za-z_]", "_", c) for i, c in enumerate(self.encoder.columns)]
        train = lgb.Dataset(X, y, weight=w, feature_name=names, free_raw_data=True)
        kwargs: dict = {}
        if valid_xy is not None:
            vx, vy, vw = valid_xy
            kwargs["valid_sets"] = [lgb.Dataset(vx, vy, weight=vw, reference=train)]
            kwargs["callbacks"] = [lgb.early_stopping(self.options.early_stopping_rounds, verbose=False)]
        booster = lgb.train(self._params(seed), train, num_boost_round=self.options.num_boost_round, **kwargs)
        best = booster.best_iteration if booster.best_iteration > 0 else None
        # the in-memory model is exactly the saved one (same trees, same text)
        self.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    def _predict_matrix(self, X) -> np.ndarray:
        return self.booster.predict(X, num_threads=self.options.num_threads)

    def _contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        # TreeSHAP: one log-odds value per column, then the expected score; they sum to the raw score
        c = self.booster.predict(X, pred_contrib=True, num_threads=self.options.num_threads)
        return c[:, :-1], c.sum(axis=1)

    def _state(self) -> dict:
        return {"options": asdict(self.options)}

    def _save_files(self, path: Path) -> None:
        if self.booster is not None:
            (path / "booster.txt").write_text(self.booster.model_to_string())

    def _load_state(self, state: dict, path: Path) -> None:
        self.options = LGBMOptions(**state["options"])
        self.booster = lgb.Booster(model_str=(path / "booster.txt").read_text())


class LGBMFlatModel(_LGBM):
    """LightGBM on own fields + the contact's own activity and order aggregates and its career."""
    name = "lgbm_flat"
    feature_sets = ("own", "activity", "career")


class LGBMAggModel(_LGBM):
    """LightGBM on the flat table + hand-built account and peer-company aggregates."""
    name = "lgbm_agg"
    feature_sets = ("own", "activity", "account", "career")


BASELINES: dict[str, type[LeadModel]] = {
    m.name: m for m in (RulesModel, LogRegModel, LGBMFlatModel, LGBMAggModel)}


def make_model(name: str, career: bool = True) -> LeadModel:
    """A fresh baseline by name (``rules``, ``logreg``, ``lgbm_flat``, ``lgbm_agg``);
    ``career=False`` leaves the career features out (only the LightGBM models use them)."""
    try:
        cls = BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}") from None
    return cls(career=career) if issubclass(cls, _Tabular) else cls()


def load_model(path: Path) -> LeadModel:
    """Load any baseline saved with ``save`` (the name is read from ``model.json``)."""
    name = json.loads((Path(path) / "model.json").read_text()).get("name")
    return BASELINES[name].load(path)
