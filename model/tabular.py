"""Tabular features of the baselines: flat per-contact tables from a ``Subgraph``.

``feature_table(g, contact_ids, sets)`` builds a raw table (numeric columns with NaN for
missing, categorical values as token lists) from three families:

* ``own``: the contact's and its company's fields (seniority or one guessed from the title,
  department, source, tenure, industry, country, head count, revenue, tech stack);
* ``activity``: the contact's ``model.temporal`` aggregates and its own past orders;
* ``account``: hand-built account aggregates (colleague engagement, account opportunities by
  stage, company orders, orders at industry-peer and similar-tech companies);
* ``career``: the contact's ``model.career`` features (former employers, a purchase it
  championed at one, days since it joined the current one).

``Encoder`` one-hot encodes the categorical values with vocabularies learned on training data.
Every value is a function of the ``Subgraph`` as of its ``as_of`` (no event after it).

Example:
    >>> from leadpulse.graph_store.base import Subgraph
    >>> g = Subgraph(as_of=0, node_ids={"contact": ["c1"]}, attrs={"contact": [{"seniority": "vp"}]})
    >>> raw = feature_table(g, ["c1"], ["own"])
    >>> raw.cats["seniority"], raw.num.shape
    ([['vp']], (1, 6))
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from leadpulse.graph_store.base import Subgraph
from leadpulse.graph_store.career import EMPTY
from leadpulse.model import temporal
from leadpulse.model.base import ExampleSet
from leadpulse.model.career import career_features
from leadpulse.model.values import as_micros, as_number
from leadpulse.schemas.timeutil import MICROS_PER_DAY
from leadpulse.schemas.types import (
    COMPANY,
    CONTACT,
    INDUSTRY_PEER,
    OPPORTUNITY,
    OWNS,
    PLACED,
    SIMILAR_TO,
    WORKS_AT,
    EdgeType,
)

__all__ = ["RawTable", "TableRows", "Encoder", "View", "feature_table", "examples_table", "seniority",
           "DECISION_MAKERS", "STAGES"]

DECISION_MAKERS = ("director", "vp", "c_level")
STAGES = ("prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost")
_TITLE_SENIORITY = ((re.compile(r"\b(chief|ceo|cto|cfo|cio|coo|founder|head of)\b"), "c_level"),
                    (re.compile(r"\b(vp|svp|evp|vice president)\b"), "vp"),
                    (re.compile(r"\bdirector\b"), "director"),
                    (re.compile(r"\b(manager|lead)\b"), "manager"))


# ------------------------------------------------------------------ small helpers
def seniority(attrs: dict) -> str:
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


class View:
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

    def timelines_of(self, rows: np.ndarray) -> list:
        g = self.g
        return [g.timeline(r) if r >= 0 else () for r in rows.tolist()]


# ------------------------------------------------------------------ raw feature tables
@dataclass
class RawTable:
    """Numeric columns (NaN = missing) and categorical values (lists: multi-valued allowed)."""
    num: np.ndarray
    num_cols: list[str]
    cats: dict[str, list[list[str]]] = field(default_factory=dict)

    @staticmethod
    def concat(parts: Sequence["RawTable"]) -> "RawTable":
        cols = parts[0].num_cols
        cats = {k: [v for p in parts for v in p.cats[k]] for k in parts[0].cats}
        return RawTable(np.vstack([p.num for p in parts]), cols, cats)

    @staticmethod
    def beside(parts: Sequence["RawTable"]) -> "RawTable":
        """The columns of ``parts`` side by side (the same rows in each), as ``feature_table``
        joins its families."""
        cats = {k: v for p in parts for k, v in p.cats.items()}
        return RawTable(np.hstack([p.num for p in parts]), [c for p in parts for c in p.num_cols], cats)

    def take(self, rows: Sequence[int]) -> "RawTable":
        """These rows, in this order."""
        idx = np.asarray(rows, dtype=np.int64)
        return RawTable(self.num[idx], self.num_cols, {k: [v[i] for i in idx.tolist()] for k, v in self.cats.items()})


@dataclass
class TableRows:
    """A scored batch's feature table (``feature_table(g, contact_ids, sets)``), kept so that
    explaining some of its leads afterwards takes their rows instead of building them again
    (every row depends only on its lead and ``g``: ``tests/model/test_scorer.py``)."""
    contact_ids: list[str]
    sets: tuple[str, ...]
    table: RawTable

    def rows_of(self, contact_ids: Sequence[str]) -> RawTable:
        if list(contact_ids) == self.contact_ids:  # scoring the batch it was built for: no copy
            return self.table
        at = {c: i for i, c in enumerate(self.contact_ids)}
        return self.table.take([at[c] for c in contact_ids])


def _own_fields(view: View, rows: np.ndarray) -> RawTable:
    t = view.g.as_of
    contacts, comps = view.attrs_of(rows)
    cols = ["tenure_days", "employees_log", "revenue_log", "tech_count", "has_company", "is_stub"]
    num = np.array([[
        (t - c_at) / MICROS_PER_DAY if (c_at := as_micros(c.get("created_at"))) is not None else math.nan,
        math.log1p(e) if (e := as_number(k.get("employees"))) >= 0 else math.nan,
        math.log1p(r) if (r := as_number(k.get("revenue"))) >= 0 else math.nan,
        float(len(k.get("tech_stack") or [])) if k else math.nan,
        float(bool(k)), float(not c.get("contact_id")),  # a stub (no CRM record) has no id
    ] for c, k in zip(contacts, comps)], dtype=np.float64).reshape(len(rows), len(cols))

    def one(values):
        return [[str(v).lower()] if v not in (None, "") else [] for v in values]
    cats = {
        "seniority": [[s] if (s := seniority(c)) else [] for c in contacts],
        "department": one(c.get("department") for c in contacts),
        "source": one(c.get("source") for c in contacts),
        "industry": one(k.get("industry") for k in comps),
        "country": one(k.get("country") for k in comps),
        "tech": [sorted({str(x).lower() for x in (k.get("tech_stack") or [])}) for k in comps],
    }
    return RawTable(num, cols, cats)


def _activity_fields(view: View, rows: np.ndarray) -> RawTable:
    t = view.g.as_of
    X, cols = temporal.contact_features(view.timelines_of(rows), t)
    own = [[o for o in view.placed.get(int(r), []) if o <= t] if r >= 0 else [] for r in rows]
    orders = np.array([[len(o), (t - max(o)) / MICROS_PER_DAY if o else temporal.RECENCY_CAP_DAYS]
                       for o in own], dtype=np.float64).reshape(len(rows), 2)
    return RawTable(np.hstack([X, orders]), cols + ["own_orders_ever", "own_days_since_order"])


def _account_fields(view: View, rows: np.ndarray) -> RawTable:
    """Colleague engagement, account opportunities, company orders, peer-company orders."""
    t, n_k = view.g.as_of, len(view.companies)
    all_rows = np.arange(len(view.contacts))
    X, cols = temporal.contact_features(view.g.all_timelines(), t)
    col = {c: i for i, c in enumerate(cols)}
    comp = view.company_of
    has = comp >= 0
    dm = np.array([seniority(a) in DECISION_MAKERS for a in view.c_attrs], dtype=bool)
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
    K, kcols = temporal.company_order_features(view.g.all_orders(), t)
    opp = _opportunity_table(view, t)
    peer_cols = []
    peer = np.zeros((n_k, 0))
    # only the rows' own companies: a k-hop union carries many more (the peers' peers)
    needed = sorted({int(comp[r]) for r in rows.tolist() if r >= 0 and comp[r] >= 0})
    for etype in (INDUSTRY_PEER, SIMILAR_TO):
        rel = etype[1]
        feats = np.zeros((n_k, 4))
        for k in needed:
            ps = view.peers[etype][k]
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
    return RawTable(out, names)


def _opportunity_table(view: View, t: int) -> tuple[np.ndarray, list[str]]:
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


def _career_fields(view: View, rows: np.ndarray) -> RawTable:
    """The contact's ``model.career`` features (former employers, a purchase championed there)."""
    g = view.g
    careers = [g.career(r) if r >= 0 else EMPTY for r in rows.tolist()]
    companies = [view.c_attrs[r].get("company_id") if r >= 0 else None for r in rows.tolist()]
    X, cols = career_features(careers, view.timelines_of(rows), companies, g.as_of)
    return RawTable(X, cols)


_EXTRACTORS = {"own": _own_fields, "activity": _activity_fields, "account": _account_fields,
               "career": _career_fields}


def feature_table(g: Subgraph, contact_ids: Sequence[str], sets: Sequence[str]) -> RawTable:
    """The raw feature table of ``contact_ids`` as of ``g.as_of``.

    ``sets`` picks feature families: ``own`` (contact and company fields), ``activity`` (the
    contact's ``model.temporal`` aggregates and own past orders), ``account`` (colleagues,
    opportunities, company and peer-company orders), ``career`` (``model.career``). Numeric columns are ``.num`` (NaN when
    missing, names in ``.num_cols``); categorical values are ``.cats``.
    """
    view = View(g)
    rows = view.rows(contact_ids)
    return RawTable.beside([_EXTRACTORS[s](view, rows) for s in sets])


def examples_table(examples: ExampleSet, sets: Sequence[str]) -> tuple[RawTable, np.ndarray, Optional[np.ndarray]]:
    """The stacked feature table of every labelled example, its labels and its weights (None
    when every example weighs 1, i.e. no cutoff was subsampled)."""
    raws, labels, weights = [], [], []
    for ex in examples:
        if not ex.contact_ids:
            continue
        raws.append(feature_table(ex.graph(), ex.contact_ids, sets))
        labels.append(np.asarray(ex.labels, dtype=np.float64))
        weights.append(ex.example_weights())
    if not raws:
        raise ValueError("no training examples")
    y, w = np.concatenate(labels), np.concatenate(weights)
    raw = RawTable.concat(raws)
    keep = ~np.isnan(y)
    table = RawTable(raw.num[keep], raw.num_cols, {k: [v for v, m in zip(vs, keep) if m]
                                                   for k, vs in raw.cats.items()})
    w = w[keep]
    return table, y[keep], (None if np.all(w == 1.0) else w)


@dataclass
class Encoder:
    """One-hot vocabularies learned on training data (rare values share ``<field>=__other__``)."""
    num_cols: list[str]
    vocab: dict[str, list[str]]

    @classmethod
    def fit(cls, raw: RawTable, min_count: int = 5, max_values: int = 30) -> "Encoder":
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

    def transform(self, raw: RawTable) -> np.ndarray:
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
