"""Baseline lead models, always measured on the same split as the GNN (shared/ARCHITECTURE.md).

* ``rules``: a points-based BANT-style score (persona and account fit + decayed engagement
  points, ``RulePoints``), mapped to a probability by a monotone (Platt) calibration on the
  training examples. Its ranking is the rule score's ranking.
* ``logreg``: logistic regression on the lead's own fields (contact and company firmographics).
* ``lgbm_flat``: LightGBM on the flat table: own fields + the contact's own activity and order
  aggregates (``model.temporal``).
* ``lgbm_agg``: ``lgbm_flat`` + hand-built account aggregates (colleague engagement, account
  opportunities and stages, company orders, peer-company orders via industry_peer/similar_to).

Every feature is a function of the ``Subgraph`` as of its ``as_of`` (no event after it), and
every model is deterministic by seed. A training set with a single class gives a constant
model that predicts the training base rate.

Example:
    >>> from graph_store.base import Subgraph
    >>> g = Subgraph(as_of=0, node_ids={"contact": ["c1"]}, attrs={"contact": [{"seniority": "vp"}]})
    >>> make_model("rules").points(g, ["c1"]).tolist()
    [20.0]
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import lightgbm as lgb
import numpy as np
from sklearn.linear_model import LogisticRegression

from graph_store.base import Subgraph
from model import temporal
from model.values import as_micros, as_number
from model.base import ExampleSet, LeadModel
from schemas.timeutil import MICROS_PER_DAY
from schemas.types import (COMPANY, CONTACT, INDUSTRY_PEER, OPPORTUNITY, OWNS, PLACED,
                           SIMILAR_TO, WORKS_AT, EdgeType)

logger = logging.getLogger(__name__)

__all__ = ["feature_table", "LGBMOptions", "RulePoints", "RulesModel", "LogRegModel", "LGBMFlatModel", "LGBMAggModel",
           "BASELINES", "make_model", "load_model"]

FORMAT_VERSION = 1
DECISION_MAKERS = ("director", "vp", "c_level")
STAGES = ("prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost")
_TITLE_SENIORITY = ((re.compile(r"\b(chief|ceo|cto|cfo|cio|coo|founder|head of)\b"), "c_level"),
                    (re.compile(r"\b(vp|svp|evp|vice president)\b"), "vp"),
                    (re.compile(r"\bdirector\b"), "director"),
                    (re.compile(r"\b(manager|lead)\b"), "manager"))


# ------------------------------------------------------------------ small helpers
def _seniority(attrs: dict) -> str:
    """The seniority field, or one guessed from the title, or "" when neither says."""
    value = str(attrs.get("seniority") or "").lower()
    if value:
        return value
    title = str(attrs.get("title") or "").lower()
    for pattern, level in _TITLE_SENIORITY:
        if pattern.search(title):
            return level
    return ""


def _links(g: Subgraph, etype: EdgeType) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ei = g.edges.get(etype)
    if ei is None or ei.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    et = g.edge_time.get(etype)
    return ei[0], ei[1], (et if et is not None else np.zeros(ei.shape[1], dtype=np.int64))


class _View:
    """Lookups over one Subgraph: contact -> company, company -> contacts/opportunities/peers."""

    def __init__(self, g: Subgraph):
        self.g = g
        self.contacts = g.node_ids.get(CONTACT, [])
        self.c_attrs = g.attrs.get(CONTACT, [{} for _ in self.contacts])
        self.companies = g.node_ids.get(COMPANY, [])
        self.k_attrs = g.attrs.get(COMPANY, [{} for _ in self.companies])
        self.c_pos = {c: i for i, c in enumerate(self.contacts)}
        k_pos = {k: i for i, k in enumerate(self.companies)}
        self.company_of = np.full(len(self.contacts), -1, dtype=np.int64)
        for i, a in enumerate(self.c_attrs):  # attribute first, the works_at edge overrides
            self.company_of[i] = k_pos.get(str(a.get("company_id")), -1)
        src, dst, times = _links(g, WORKS_AT)
        order = np.argsort(times, kind="stable")  # the latest edge of a contact wins
        self.company_of[src[order]] = dst[order]
        self.opps = g.attrs.get(OPPORTUNITY, [])
        src, dst, _ = _links(g, OWNS)
        self.opps_of: dict[int, list[int]] = {}
        for k, o in zip(src.tolist(), dst.tolist()):
            self.opps_of.setdefault(k, []).append(o)
        self.peers: dict[EdgeType, list[set[int]]] = {}
        for etype in (INDUSTRY_PEER, SIMILAR_TO):
            sets: list[set[int]] = [set() for _ in self.companies]
            src, dst, _ = _links(g, etype)
            for a, b in zip(src.tolist(), dst.tolist()):
                if a != b:
                    sets[a].add(b)
                    sets[b].add(a)
            self.peers[etype] = sets
        self.placed: dict[int, list[int]] = {}
        src, _, times = _links(g, PLACED)
        for c, t in zip(src.tolist(), times.tolist()):
            self.placed.setdefault(c, []).append(t)

    def rows(self, contact_ids: Sequence[str]) -> np.ndarray:
        """Local contact index per id (-1 when the graph lacks the contact)."""
        return np.array([self.c_pos.get(c, -1) for c in contact_ids], dtype=np.int64)

    def attrs_of(self, rows: np.ndarray) -> tuple[list[dict], list[dict]]:
        contacts = [self.c_attrs[r] if r >= 0 else {} for r in rows]
        comp = [self.k_attrs[self.company_of[r]] if r >= 0 and self.company_of[r] >= 0 else {}
                for r in rows]
        return contacts, comp


# ------------------------------------------------------------------ raw feature tables
@dataclass
class _Raw:
    """Numeric columns (NaN = missing) and categorical values (lists: multi-valued allowed)."""
    num: np.ndarray
    num_cols: list[str]
    cats: dict[str, list[list[str]]] = field(default_factory=dict)

    @staticmethod
    def concat(parts: Sequence["_Raw"]) -> "_Raw":
        cols = parts[0].num_cols
        cats = {k: [v for p in parts for v in p.cats[k]] for k in parts[0].cats}
        return _Raw(np.vstack([p.num for p in parts]), cols, cats)


def _own_fields(view: _View, rows: np.ndarray) -> _Raw:
    t = view.g.as_of
    contacts, comps = view.attrs_of(rows)
    cols = ["tenure_days", "employees_log", "revenue_log", "tech_count", "has_company", "is_stub"]
    num = np.array([[
        (t - c_at) / MICROS_PER_DAY if (c_at := as_micros(c.get("created_at"))) is not None else math.nan,
        math.log1p(e) if (e := as_number(k.get("employees"))) >= 0 else math.nan,
        math.log1p(r) if (r := as_number(k.get("revenue"))) >= 0 else math.nan,
        float(len(k.get("tech_stack") or [])) if k else math.nan,
        float(bool(k)), float(not c),
    ] for c, k in zip(contacts, comps)], dtype=np.float64).reshape(len(rows), len(cols))

    def one(values):
        return [[str(v).lower()] if v not in (None, "") else [] for v in values]
    cats = {
        "seniority": [[s] if (s := _seniority(c)) else [] for c in contacts],
        "department": one(c.get("department") for c in contacts),
        "source": one(c.get("source") for c in contacts),
        "industry": one(k.get("industry") for k in comps),
        "country": one(k.get("country") for k in comps),
        "tech": [sorted({str(x).lower() for x in (k.get("tech_stack") or [])}) for k in comps],
    }
    return _Raw(num, cols, cats)


def _timelines(view: _View, rows: np.ndarray) -> list:
    return [(view.c_attrs[r].get("timeline") or []) if r >= 0 else [] for r in rows]


def _activity_fields(view: _View, rows: np.ndarray) -> _Raw:
    t = view.g.as_of
    X, cols = temporal.contact_features(_timelines(view, rows), t)
    own = [[o for o in view.placed.get(int(r), []) if o <= t] if r >= 0 else [] for r in rows]
    orders = np.array([[len(o), (t - max(o)) / MICROS_PER_DAY if o else temporal.RECENCY_CAP_DAYS]
                       for o in own], dtype=np.float64).reshape(len(rows), 2)
    return _Raw(np.hstack([X, orders]), cols + ["own_orders_ever", "own_days_since_order"])


def _account_fields(view: _View, rows: np.ndarray) -> _Raw:
    """Colleague engagement, account opportunities, company orders, peer-company orders."""
    t, n_k = view.g.as_of, len(view.companies)
    all_rows = np.arange(len(view.contacts))
    X, cols = temporal.contact_features(_timelines(view, all_rows), t)
    col = {c: i for i, c in enumerate(cols)}
    comp = view.company_of
    has = comp >= 0
    dm = np.array([_seniority(a) in DECISION_MAKERS for a in view.c_attrs], dtype=bool)
    act30, act90 = X[:, col["n_all_30d"]] > 0, X[:, col["n_all_90d"]] > 0
    eng = X[:, col["engagement"]]
    per = {}
    for name, values in {
        "n": np.ones(len(all_rows)), "active30": act30, "active90": act90,
        "acts30": X[:, col["n_all_30d"]], "high30": X[:, col["n_high_intent_30d"]],
        "eng": eng, "dm_active90": dm & act90,
    }.items():
        per[name] = np.bincount(comp[has], weights=np.asarray(values, float)[has], minlength=n_k)
    eng_max = np.zeros(n_k)
    champ = np.zeros(n_k)
    last = np.full(n_k, temporal.RECENCY_CAP_DAYS)
    if has.any():
        np.maximum.at(eng_max, comp[has], eng[has])
        nd = has & ~dm
        np.maximum.at(champ, comp[nd], eng[nd])
        np.minimum.at(last, comp[has], X[has, col["days_since_last_activity"]])
    K, kcols = temporal.company_order_features([a.get("orders") or [] for a in view.k_attrs], t)
    opp = _opportunity_table(view, t)
    peer_cols = []
    peer = np.zeros((n_k, 0))
    for etype in (INDUSTRY_PEER, SIMILAR_TO):
        rel = etype[1]
        feats = np.zeros((n_k, 4))
        for k, ps in enumerate(view.peers[etype]):
            if ps:
                idx = np.fromiter(ps, dtype=np.int64)
                feats[k] = [len(ps), K[idx, 1].sum(), (K[idx, 1] > 0).mean(), K[idx, 2].sum()]
        peer = np.hstack([peer, feats])
        peer_cols += [f"{rel}_n", f"{rel}_orders_90d", f"{rel}_share_ordered_90d", f"{rel}_orders_ever"]

    names = (["acct_contacts", "acct_active30", "acct_active90", "acct_acts30", "acct_high30",
              "acct_engagement", "acct_dm_active90", "acct_engagement_max", "acct_champion_eng",
              "acct_days_since_activity", "is_decision_maker"]
             + [f"acct_{c}" for c in kcols] + opp[1] + peer_cols)
    out = np.full((len(rows), len(names)), math.nan)
    for i, r in enumerate(rows):
        k = comp[r] if r >= 0 else -1
        if k < 0:
            continue
        own = X[r]
        out[i, :11] = [per["n"][k] - 1, per["active30"][k] - act30[r], per["active90"][k] - act90[r],
                       per["acts30"][k] - own[col["n_all_30d"]], per["high30"][k] - own[col["n_high_intent_30d"]],
                       per["eng"][k] - eng[r], per["dm_active90"][k] - (dm[r] and act90[r]),
                       eng_max[k], champ[k], last[k], float(dm[r])]
        out[i, 11:] = np.concatenate([K[k], opp[0][k], peer[k]])
    return _Raw(out, names)


def _opportunity_table(view: _View, t: int) -> tuple[np.ndarray, list[str]]:
    names = [f"opp_{s}" for s in STAGES] + ["opp_other", "opp_open", "opp_open_amount",
                                            "opp_max_open_stage", "opp_days_since_update"]
    out = np.zeros((len(view.companies), len(names)))
    out[:, -1] = temporal.RECENCY_CAP_DAYS
    for k, opps in view.opps_of.items():
        for o in opps:
            a = view.opps[o] if o < len(view.opps) else {}
            stage = str(a.get("stage") or "").lower()
            out[k, STAGES.index(stage) if stage in STAGES else len(STAGES)] += 1
            if not stage.startswith("closed"):
                out[k, -4] += 1
                out[k, -3] += as_number(a.get("amount")) if as_number(a.get("amount")) >= 0 else 0.0
                rank = STAGES.index(stage) + 1 if stage in STAGES else 0.5
                out[k, -2] = max(out[k, -2], rank)
            upd = as_micros(a.get("updated_at"))
            if upd is not None and upd <= t:
                out[k, -1] = min(out[k, -1], (t - upd) / MICROS_PER_DAY)
    return out, names


_EXTRACTORS = {"own": _own_fields, "activity": _activity_fields, "account": _account_fields}


def feature_table(g: Subgraph, contact_ids: Sequence[str], sets: Sequence[str]) -> _Raw:
    """The raw feature table of ``contact_ids`` as of ``g.as_of``.

    ``sets`` picks feature families: ``own`` (contact and company fields), ``activity`` (the
    contact's ``model.temporal`` aggregates and own past orders), ``account`` (colleagues,
    opportunities, company and peer-company orders). Numeric columns are ``.num`` (NaN when
    missing, names in ``.num_cols``); categorical values are ``.cats``.
    """
    view = _View(g)
    rows = view.rows(contact_ids)
    parts = [_EXTRACTORS[s](view, rows) for s in sets]
    cats = {k: v for p in parts for k, v in p.cats.items()}
    return _Raw(np.hstack([p.num for p in parts]), [c for p in parts for c in p.num_cols], cats)


def _examples_table(examples: ExampleSet, sets: Sequence[str]) -> tuple[_Raw, np.ndarray]:
    raws, labels = [], []
    for ex in examples:
        if not ex.contact_ids:
            continue
        raws.append(feature_table(ex.graph(), ex.contact_ids, sets))
        labels.append(np.asarray(ex.labels, dtype=np.float64))
    if not raws:
        raise ValueError("no training examples")
    y = np.concatenate(labels)
    raw = _Raw.concat(raws)
    keep = ~np.isnan(y)
    return _Raw(raw.num[keep], raw.num_cols, {k: [v for v, m in zip(vs, keep) if m]
                                               for k, vs in raw.cats.items()}), y[keep]


@dataclass
class _Encoder:
    """One-hot vocabularies learned on training data (rare values share ``<field>=__other__``)."""
    num_cols: list[str]
    vocab: dict[str, list[str]]

    @classmethod
    def fit(cls, raw: _Raw, min_count: int = 5, max_values: int = 30) -> "_Encoder":
        vocab = {}
        for name, values in raw.cats.items():
            counts: dict[str, int] = {}
            for vs in values:
                for v in vs:
                    counts[v] = counts.get(v, 0) + 1
            top = sorted((v for v, c in counts.items() if c >= min_count), key=lambda v: (-counts[v], v))
            vocab[name] = sorted(top[:max_values])
        return cls(list(raw.num_cols), vocab)

    @property
    def columns(self) -> list[str]:
        out = list(self.num_cols)
        for name, values in self.vocab.items():
            out += [f"{name}={v}" for v in values] + [f"{name}=__other__", f"{name}=__missing__"]
        return out

    def transform(self, raw: _Raw) -> np.ndarray:
        if raw.num_cols != self.num_cols:
            raise ValueError("feature columns differ from the ones the model was fitted on")
        n = raw.num.shape[0]
        blocks = [raw.num]
        for name, values in self.vocab.items():
            index = {v: i for i, v in enumerate(values)}
            block = np.zeros((n, len(values) + 2))
            for i, vs in enumerate(raw.cats.get(name, [[]] * n)):
                if not vs:
                    block[i, -1] = 1.0
                for v in vs:
                    block[i, index.get(v, len(values))] = 1.0
            blocks.append(block)
        return np.hstack(blocks)


# ------------------------------------------------------------------ models
class _Tabular(LeadModel):
    """A model on a flat feature matrix built from ``feature_sets``."""
    feature_sets: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.encoder: Optional[_Encoder] = None
        self.constant: Optional[float] = None  # set when training had a single class

    def fit(self, train: ExampleSet, valid: Optional[ExampleSet] = None, seed: int = 0) -> "LeadModel":
        raw, y = _examples_table(train, self.feature_sets)
        self.encoder = _Encoder.fit(raw)
        if y.min() == y.max():
            logger.warning("%s: training labels have a single class; predicting the base rate", self.name)
            self.constant = float(y.mean())
            return self
        self.constant = None
        valid_xy = None
        if valid:
            vraw, vy = _examples_table(valid, self.feature_sets)
            if vy.size and 0 < vy.sum() < vy.size:
                valid_xy = (self.encoder.transform(vraw), vy)
        self._fit_matrix(self.encoder.transform(raw), y, valid_xy, seed)
        return self

    def predict_proba(self, graph: Subgraph, contact_ids: Sequence[str]) -> np.ndarray:
        if self.encoder is None:
            raise RuntimeError(f"{self.name}: predict_proba before fit")
        if not contact_ids:
            return np.zeros(0)
        if self.constant is not None:
            return np.full(len(contact_ids), self.constant)
        X = self.encoder.transform(feature_table(graph, contact_ids, self.feature_sets))
        return np.clip(self._predict_matrix(X), 0.0, 1.0)

    # subclasses
    def _fit_matrix(self, X, y, valid_xy, seed) -> None: ...
    def _predict_matrix(self, X) -> np.ndarray: ...
    def _state(self) -> dict: return {}
    def _load_state(self, state: dict, path: Path) -> None: ...

    def save(self, path: Path) -> None:
        if self.encoder is None:
            raise RuntimeError(f"{self.name}: save before fit")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {"format_version": FORMAT_VERSION, "name": self.name, "constant": self.constant,
                 "encoder": asdict(self.encoder), **self._state()}
        self._save_files(path)
        (path / "model.json").write_text(json.dumps(state, indent=1))

    def _save_files(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> "LeadModel":
        path = Path(path)
        state = json.loads((path / "model.json").read_text())
        if state.get("name") != cls.name or state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path} holds {state.get('name')!r} v{state.get('format_version')}, "
                             f"not {cls.name!r} v{FORMAT_VERSION}")
        model = cls()
        model.encoder = _Encoder(**state["encoder"])
        model.constant = state["constant"]
        if model.constant is None:
            model._load_state(state, path)
        return model


class LogRegModel(_Tabular):
    """L2 logistic regression on the lead's own fields (standardised; missing = train mean)."""
    name = "logreg"
    feature_sets = ("own",)

    def __init__(self, C: float = 1.0) -> None:
        super().__init__()
        self.C = C
        self.mean = self.scale = self.coef = None
        self.intercept = 0.0

    def _fit_matrix(self, X, y, valid_xy, seed) -> None:
        seen = ~np.isnan(X)
        sums = np.where(seen, X, 0.0).sum(axis=0)
        self.mean = np.where(seen.any(axis=0), sums / np.maximum(seen.sum(axis=0), 1), 0.0)
        Z = np.where(np.isnan(X), self.mean, X) - self.mean
        self.scale = np.where(Z.std(axis=0) > 0, Z.std(axis=0), 1.0)
        clf = LogisticRegression(C=self.C, max_iter=2000, random_state=seed).fit(Z / self.scale, y)
        self.coef, self.intercept = clf.coef_[0], float(clf.intercept_[0])

    def _predict_matrix(self, X) -> np.ndarray:
        z = (np.where(np.isnan(X), self.mean, X) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(z @ self.coef + self.intercept)))

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
    def __init__(self, options: LGBMOptions = LGBMOptions()) -> None:
        super().__init__()
        self.options = options
        self.booster: Optional[lgb.Booster] = None

    def _params(self, seed: int) -> dict:
        o = self.options
        return {"objective": "binary", "learning_rate": o.learning_rate, "num_leaves": o.num_leaves,
                "min_data_in_leaf": o.min_data_in_leaf, "feature_fraction": o.feature_fraction,
                "lambda_l2": o.lambda_l2, "num_threads": o.num_threads, "seed": seed,
                "deterministic": True, "force_row_wise": True, "verbosity": -1}

    def _fit_matrix(self, X, y, valid_xy, seed) -> None:
        names = [f"f{i}_" + re.sub(r"[^0-9A-Za-z_]", "_", c) for i, c in enumerate(self.encoder.columns)]
        train = lgb.Dataset(X, y, feature_name=names, free_raw_data=True)
        kwargs: dict = {}
        if valid_xy is not None:
            kwargs["valid_sets"] = [lgb.Dataset(*valid_xy, reference=train)]
            kwargs["callbacks"] = [lgb.early_stopping(self.options.early_stopping_rounds, verbose=False)]
        booster = lgb.train(self._params(seed), train, num_boost_round=self.options.num_boost_round, **kwargs)
        best = booster.best_iteration if booster.best_iteration > 0 else None
        # the in-memory model is exactly the saved one (same trees, same text)
        self.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    def _predict_matrix(self, X) -> np.ndarray:
        return self.booster.predict(X, num_threads=self.options.num_threads)

    def _state(self) -> dict:
        return {"options": asdict(self.options)}

    def _save_files(self, path: Path) -> None:
        if self.booster is not None:
            (path / "booster.txt").write_text(self.booster.model_to_string())

    def _load_state(self, state: dict, path: Path) -> None:
        self.options = LGBMOptions(**state["options"])
        self.booster = lgb.Booster(model_str=(path / "booster.txt").read_text())


class LGBMFlatModel(_LGBM):
    """LightGBM on own fields + the contact's own activity and order aggregates."""
    name = "lgbm_flat"
    feature_sets = ("own", "activity")


class LGBMAggModel(_LGBM):
    """LightGBM on the flat table + hand-built account and peer-company aggregates."""
    name = "lgbm_agg"
    feature_sets = ("own", "activity", "account")


# ------------------------------------------------------------------ rules
@dataclass(frozen=True)
class RulePoints:
    """Points of the rule score (a generic data-infrastructure SaaS ideal customer profile).

    Fit points come from the contact's seniority (or its title), department, the company's
    industry and head count; engagement points from each activity (and each pricing page view),
    halved every ``half_life_days`` and capped at ``engagement_cap``.
    """
    seniority: dict = field(default_factory=lambda: {
        "c_level": 20, "vp": 20, "director": 15, "manager": 8, "ic": 0})
    department: dict = field(default_factory=lambda: {
        "data": 10, "engineering": 10, "it": 8, "product": 5})
    industry: dict = field(default_factory=lambda: {
        "software": 15, "fintech": 12, "insurance": 6, "healthcare": 6, "telecom": 5,
        "biotech": 5, "education": -5, "government": -5})
    size_points: tuple = ((200, 5000, 10), (50, 20000, 5))  # (low, high, points), first match
    activity: dict = field(default_factory=lambda: {
        "page_view": 1, "email_open": 0.5, "email_click": 2, "form_fill": 8, "content_download": 5,
        "webinar_attended": 6, "demo_request": 25, "meeting": 15, "call": 10, "trial_signup": 20,
        "product_usage": 2, "invite_teammate": 10})
    pricing_page: float = 8.0
    half_life_days: float = 30.0
    engagement_cap: float = 100.0


class RulesModel(LeadModel):
    """Points-based lead score; ``fit`` only learns a monotone (Platt) map points -> probability."""
    name = "rules"

    def __init__(self, points: RulePoints = RulePoints()) -> None:
        self.rules = points
        self.a, self.b = 0.05, -4.0  # uncalibrated default: 0 points ~ 2 %, 80 points ~ 50 %

    def points(self, graph: Subgraph, contact_ids: Sequence[str]) -> np.ndarray:
        """The rule score of each contact (fit + decayed engagement points)."""
        r, t = self.rules, graph.as_of
        view = _View(graph)
        rows = view.rows(contact_ids)
        contacts, comps = view.attrs_of(rows)
        out = np.zeros(len(contact_ids))
        for i, (c, k) in enumerate(zip(contacts, comps)):
            fit = r.seniority.get(_seniority(c), 0) + r.department.get(str(c.get("department") or "").lower(), 0)
            fit += r.industry.get(str(k.get("industry") or "").lower(), 0)
            emp = as_number(k.get("employees"))
            fit += next((p for lo, hi, p in r.size_points if lo <= emp <= hi), 0)
            eng = 0.0
            for event in c.get("timeline") or []:
                when, kind = event[0], event[1]
                if when > t:
                    continue
                pts = r.activity.get(kind, 0.0) + (r.pricing_page if len(event) > 2 and event[2] == "pricing" else 0.0)
                eng += pts * 0.5 ** ((t - when) / MICROS_PER_DAY / r.half_life_days)
            out[i] = fit + min(eng, r.engagement_cap)
        return out

    def fit(self, train: ExampleSet, valid: Optional[ExampleSet] = None, seed: int = 0) -> "LeadModel":
        pts = [self.points(ex.graph(), ex.contact_ids) for ex in train if ex.contact_ids]
        x = np.concatenate(pts) if pts else np.zeros(0)
        y = np.concatenate([np.asarray(ex.labels, float) for ex in train if ex.contact_ids]) if pts else x
        keep = ~np.isnan(y)
        x, y = x[keep], y[keep]
        if y.size and 0 < y.sum() < y.size:
            clf = LogisticRegression(C=1e4, max_iter=1000, random_state=seed).fit(x[:, None] / 100.0, y)
            a = float(clf.coef_[0, 0]) / 100.0
            if a > 0:  # keep the map monotone increasing; otherwise keep the default
                self.a, self.b = a, float(clf.intercept_[0])
        elif y.size:
            self.a, self.b = 0.0, float(np.log(max(y.mean(), 1e-6) / max(1 - y.mean(), 1e-6)))
        return self

    def predict_proba(self, graph: Subgraph, contact_ids: Sequence[str]) -> np.ndarray:
        z = self.a * self.points(graph, contact_ids) + self.b
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {"format_version": FORMAT_VERSION, "name": self.name, "a": self.a, "b": self.b,
                 "points": asdict(self.rules)}
        (path / "model.json").write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, path: Path) -> "LeadModel":
        state = json.loads((Path(path) / "model.json").read_text())
        if state.get("name") != cls.name:
            raise ValueError(f"{path} holds {state.get('name')!r}, not {cls.name!r}")
        pts = state["points"]
        pts["size_points"] = tuple(tuple(x) for x in pts["size_points"])
        model = cls(RulePoints(**pts))
        model.a, model.b = state["a"], state["b"]
        return model


BASELINES: dict[str, type[LeadModel]] = {
    m.name: m for m in (RulesModel, LogRegModel, LGBMFlatModel, LGBMAggModel)}


def make_model(name: str) -> LeadModel:
    """A fresh baseline by name (``rules``, ``logreg``, ``lgbm_flat``, ``lgbm_agg``)."""
    try:
        return BASELINES[name]()
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}") from None


def load_model(path: Path) -> LeadModel:
    """Load any baseline saved with ``save`` (the name is read from ``model.json``)."""
    name = json.loads((Path(path) / "model.json").read_text()).get("name")
    return BASELINES[name].load(path)
