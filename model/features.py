"""Node features of a ``Subgraph`` as a PyG ``HeteroData``, with constants fit on training data.

Two steps, so fitting never needs a second pass over the graphs:

1. ``extract(subgraph)`` -> ``RawGraph``: per node type, the categorical values (strings) and
   raw numeric columns of each node, computed only from the node's own attributes and
   ``subgraph.as_of`` (never from other nodes in the batch).
2. ``FeatureSpec.fit(raws)`` learns vocabularies (rare values share an "other" bucket) and
   the mean/std of every (log-transformed) numeric column from *training* graphs;
   ``spec.encode(raw)`` turns a raw graph into tensors with those stored constants.

Because every number is a function of (node attributes, as_of, spec), a lead's features are
identical whether its graph is a 100-node k-hop union or the full snapshot (invariant 2).

Example:
    >>> from leadpulse.graph_store.base import Subgraph
    >>> sg = Subgraph(as_of=10**15, node_ids={"contact": ["c1"]}, attrs={"contact": [{"seniority": "vp"}]})
    >>> spec = FeatureSpec.fit([extract(sg)], min_count=1)
    >>> data, seeds = to_hetero_data(sg, spec, ["c1"])
    >>> data["contact"].x.shape[0], seeds.tolist()
    (1, [0])
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from itertools import chain
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch_geometric.data import HeteroData

from leadpulse.graph_store.base import Subgraph
from leadpulse.model import memo, temporal
from leadpulse.model.career import CAREER_COLUMNS, career_features
from leadpulse.model.khop import induced_subgraph, khop_nodes, khop_subgraph
from leadpulse.model.values import as_micros, as_number, as_numbers
from leadpulse.schemas.timeutil import MICROS_PER_DAY
from leadpulse.schemas.types import (
    ACTIVITY,
    COMPANY,
    CONTACT,
    EDGE_TYPES,
    HAD_ACTIVITY,
    NODE_TYPES,
    OPPORTUNITY,
    ORDER,
    PLACED,
    NodeType,
)

__all__ = ["FeatureSpec", "RawGraph", "Encoded", "encode_graph", "extract", "to_hetero_data", "khop_subgraph",
           "khop_nodes", "induced_subgraph",
           "CATEGORICALS", "DROPPABLE", "FORMAT_VERSION"]

FORMAT_VERSION = 1
OTHER = "__other__"
_TOKEN = re.compile(r"[a-z]+")
_TITLE_STOP = {"of", "and", "the", "senior", "sr", "jr", "a", "for", "to", "in", "team"}

#: categorical fields per node type: (feature name, attribute key, multi-valued)
CATEGORICALS: dict[NodeType, tuple[tuple[str, str, bool], ...]] = {
    CONTACT: (("seniority", "seniority", False), ("department", "department", False),
              ("source", "source", False), ("title_kw", "title", True)),
    COMPANY: (("industry", "industry", False), ("country", "country", False),
              ("tech", "tech_stack", True)),
    ACTIVITY: (("activity_type", "type", False), ("page", "page", False)),
    OPPORTUNITY: (("stage", "stage", False),),
    ORDER: (),
}

#: numeric columns that are not log1p-transformed before standardising (flags, signed values)
_LINEAR = re.compile(r"^(has_|ever_|is_|order_pricing|sentiment|missing_)")
#: contact columns encoded with fixed constants, not fitted ones: (log1p first, mean, scale).
#: The career columns are zero (``days_since_move``: the cap) for nearly every contact; divided
#: by their standard deviation, a flag a few in a thousand contacts have becomes ~20, and the
#: network fits those few. Fixed: 0 for everyone without a former employer, order 1 otherwise
#: (``days_since_move`` -1 on the day of the move, 0 at the cap).
_FIXED: dict[str, tuple[bool, float, float]] = {
    "has_former_employer": (False, 0.0, 1.0), "n_former_employers": (True, 0.0, 1.0),
    "days_since_move": (False, temporal.RECENCY_CAP_DAYS, temporal.RECENCY_CAP_DAYS),
    "former_customer": (False, 0.0, 1.0), "champion_before": (False, 0.0, 1.0),
    "champion_move_recency": (False, 0.0, 1.0), "champion_engagement": (True, 0.0, 1.0),
}
assert set(_FIXED) == set(CAREER_COLUMNS)
#: feature groups a spec can leave out (``FeatureSpec.fit(drop=...)``): their contact columns
DROPPABLE: dict[str, tuple[str, ...]] = {"career": CAREER_COLUMNS}


# ------------------------------------------------------------------ time helpers
def _age_days(time: Optional[int], as_of: int) -> float:
    if time is None:
        return math.nan
    return max(0.0, (as_of - time) / MICROS_PER_DAY)


def _title_tokens(title: Any) -> list[str]:
    if not isinstance(title, str):
        return []
    return sorted({t for t in _TOKEN.findall(title.lower()) if t not in _TITLE_STOP and len(t) > 1})


# ------------------------------------------------------------------ raw extraction
@dataclass
class RawNodes:
    """Per node type: categorical values (lists of tokens per field) and raw numeric columns."""
    cats: dict[str, list[list[str]]]
    num: np.ndarray
    num_cols: list[str]


@dataclass
class RawGraph:
    subgraph: Subgraph
    nodes: dict[NodeType, RawNodes]


def _cat_one(v: Any, key: str, multi: bool) -> list[str]:
    if multi:
        if key == "title":
            return _title_tokens(v)
        return sorted({str(x).lower() for x in (v or []) if x})
    return [str(v).lower()] if v not in (None, "") else []


def _cat_values(attrs: list[dict], key: str, multi: bool) -> list[list[str]]:
    # values repeat (types, pages, industries, titles): one computation per distinct value,
    # kept across calls for strings and missing values (``memo.ByValue``); the lists are shared
    # between nodes and calls (nothing downstream mutates them)
    vals = [a.get(key) for a in attrs]
    if set(map(type, vals)) <= _PLAIN:  # the common case: C-level lookups
        return list(map(memo.by_value((key, multi), partial(_cat_one, key=key, multi=multi)).__getitem__, vals))
    cache: dict = {}
    out = []
    for v in vals:
        # keyed with the type too: 1 and True are equal keys but print differently; a list (a
        # tech stack) by its items
        k = (type(v), tuple(v)) if type(v) is list else (type(v), v)
        try:
            hit = cache.get(k, _MISS)
            if hit is _MISS:  # (not ``or``: a missing value's [] is falsy and worth caching)
                hit = cache[k] = _cat_one(v, key, multi)
        except TypeError:  # unhashable (a dict, a list of lists): no memo
            hit = _cat_one(v, key, multi)
        out.append(hit)
    return out


_MISS = object()
_PLAIN = {str, type(None)}


def _missing_pair(values: list[float], name: str) -> tuple[list[np.ndarray], list[str]]:
    arr = np.asarray(values, dtype=np.float64)
    miss = np.isnan(arr)
    return [np.where(miss, 0.0, arr), miss.astype(np.float64)], [name, f"missing_{name}"]


def _contact_numeric(attrs: list[dict], timelines: Sequence, careers: Sequence, as_of: int,
                     static: Sequence[Sequence]) -> tuple[np.ndarray, list[str]]:
    X, cols = temporal.contact_features(timelines, as_of)
    created, stub = static  # _STATIC[CONTACT]
    extra, names = _missing_pair([_age_days(c, as_of) for c in created], "tenure_days")
    stub = np.array(stub, dtype=np.float64)
    C, ccols = career_features(careers, timelines, [a.get("company_id") for a in attrs], as_of)
    return np.column_stack([X, *extra, stub, C]), cols + names + ["is_stub"] + ccols


def _company_numeric(orders: Sequence, as_of: int, static: Sequence[Sequence]) -> tuple[np.ndarray, list[str]]:
    X, cols = temporal.company_order_features(orders, as_of)
    parts, names = [X], list(cols)
    for values, key in zip(static, ("employees", "revenue")):  # _STATIC[COMPANY]
        p, n = _missing_pair(values, key)
        parts += p
        names += n
    parts += [np.array(static[2], dtype=np.float64), np.array(static[3], dtype=np.float64)]
    names += ["tech_count", "is_stub"]
    return np.column_stack(parts), names


#: per node type, the numbers that depend on the node's attributes alone, one list each
_STATIC = {
    # created_at in micros (or None) and is_stub: only a CRM record has its id (a stub, known
    # from an activity or a colleague, has none)
    CONTACT: lambda a: (as_micros(a.get("created_at")), 0.0 if a.get("contact_id") else 1.0),
    # employees, revenue, tech_count, is_stub
    COMPANY: lambda a: (as_number(a.get("employees")), as_number(a.get("revenue")),
                        float(len(a.get("tech_stack") or [])), 0.0 if a.get("company_id") else 1.0),
}


def _node_static(ntype: NodeType, attrs: list[dict]) -> list[tuple]:
    """Per node of ``ntype``: its token list of each categorical field, then its ``_STATIC``
    numbers (one tuple per node, for ``memo.ByNode``)."""
    fields = [_cat_values(attrs, key, multi) for _, key, multi in CATEGORICALS[ntype]]
    numbers = _STATIC.get(ntype)
    if numbers is not None:
        fields.append(list(map(numbers, attrs)))
    return list(zip(*fields))


def _event_ages(attrs: list[dict], as_of: int, times: np.ndarray) -> Sequence[float]:
    """Age in days of each activity or order: its own ``timestamp``, else the time of the edge
    that brought it (``times``, -1 for none: NaN)."""
    own = [a.get("timestamp") for a in attrs]
    if set(map(type, own)) <= {int}:  # the store's own times: one numpy pass, the same floats
        return np.maximum(0.0, (as_of - np.array(own, dtype=np.int64).reshape(len(own))) / MICROS_PER_DAY)
    ages = []
    for o, t in zip(own, times):
        o = as_micros(o)
        ages.append(_age_days(o if o is not None else (int(t) if t >= 0 else None), as_of))
    return ages


def _activity_numeric(attrs: list[dict], as_of: int, times: np.ndarray) -> tuple[np.ndarray, list[str]]:
    parts, names = _missing_pair(_event_ages(attrs, as_of, times), "age_days")
    for key in ("duration_s", "sentiment"):
        p, n = _missing_pair(as_numbers([a.get(key) for a in attrs]), key)
        parts += p
        names += n
    return np.column_stack(parts), names


def _opportunity_numeric(attrs: list[dict], as_of: int) -> tuple[np.ndarray, list[str]]:
    amount, n1 = _missing_pair([as_number(a.get("amount")) for a in attrs], "amount")
    age, n2 = _missing_pair([_age_days(as_micros(a.get("created_at") or a.get("updated_at")), as_of)
                             for a in attrs], "age_days")
    since, n3 = _missing_pair([_age_days(as_micros(a.get("updated_at")), as_of) for a in attrs],
                              "days_since_update")
    return np.column_stack(amount + age + since), n1 + n2 + n3


def _order_numeric(attrs: list[dict], as_of: int, times: np.ndarray) -> tuple[np.ndarray, list[str]]:
    amount, n1 = _missing_pair([as_number(a.get("amount")) for a in attrs], "amount")
    age, n2 = _missing_pair(_event_ages(attrs, as_of, times), "age_days")
    return np.column_stack(amount + age), n1 + n2


def _incoming_time(sg: Subgraph, etype, n: int) -> np.ndarray:
    """Edge time of the (first) incoming ``etype`` edge per destination node; -1 if none."""
    out = np.full(n, -1, dtype=np.int64)
    ei, et = sg.edges.get(etype), sg.edge_time.get(etype)
    if ei is not None and et is not None and ei.shape[1]:
        out[ei[1]] = et
    return out


_NO_ATTRS: dict = {}  # a stub's attributes, one shared (read-only) dict


def extract(sg: Subgraph) -> RawGraph:
    """Raw per-node values of every node type (depends only on each node's own attrs, timeline
    or orders, and as_of)."""
    nodes: dict[NodeType, RawNodes] = {}
    for ntype in NODE_TYPES:
        attrs = [a or _NO_ATTRS for a in sg.attrs.get(ntype, [])]
        n = len(sg.node_ids.get(ntype, []))
        if len(attrs) < n:
            attrs = attrs + [_NO_ATTRS] * (n - len(attrs))
        fields = CATEGORICALS[ntype]
        if ntype == ACTIVITY:  # rebuilt from the store's columns per read: by value only
            cats = {name: _cat_values(attrs, key, multi) for name, key, multi in fields}
            static: Sequence = ()
        else:  # one pass over the nodes: the token lists of every field, then the numbers
            width = len(fields) + (ntype in _STATIC)
            rows = memo.by_node((ntype,), partial(_node_static, ntype))(attrs) if width and n else []
            per_field = list(zip(*rows)) or [()] * width
            cats = {name: list(values) for (name, _, _), values in zip(fields, per_field)}
            static = ()
            if ntype in _STATIC:  # (an empty graph: as many empty columns)
                static = list(zip(*per_field[-1])) or [()] * len(_STATIC[ntype](_NO_ATTRS))
        if ntype == CONTACT:
            num, cols = _contact_numeric(attrs, sg.all_timelines(), sg.all_careers(), sg.as_of, static)
        elif ntype == COMPANY:
            num, cols = _company_numeric(sg.all_orders(), sg.as_of, static)
        elif ntype == ACTIVITY:
            num, cols = _activity_numeric(attrs, sg.as_of, _incoming_time(sg, HAD_ACTIVITY, n))
        elif ntype == OPPORTUNITY:
            num, cols = _opportunity_numeric(attrs, sg.as_of)
        else:
            num, cols = _order_numeric(attrs, sg.as_of, _incoming_time(sg, PLACED, n))
        num = num.reshape(n, len(cols))
        nodes[ntype] = RawNodes(cats=cats, num=num, num_cols=cols)
    return RawGraph(subgraph=sg, nodes=nodes)


def _one_hot(cats: list[list[str]], values: tuple[str, ...], n: int) -> np.ndarray:
    """Rows of ``cats`` (token lists) one-hot over ``values`` plus "other". Nodes with the same
    value share its token list (``_cat_values``), so columns are looked up once per distinct
    list, kept across calls by the list's identity (``memo.by_node``), and spread to the rows
    with numpy."""
    other = len(values)
    onehot = np.zeros((n, other + 1))
    if not n:
        return onehot
    ids = list(map(id, cats))
    distinct = dict(zip(ids, cats))  # id -> list, first-seen order
    cols = memo.by_node(("columns", values), partial(_columns_of, values))(list(distinct.values()))
    lens_d = np.fromiter(map(len, cols), dtype=np.int64, count=len(cols))
    if not lens_d.any():
        return onehot
    code = {i: k for k, i in enumerate(distinct)}
    codes = np.fromiter(map(code.__getitem__, ids), dtype=np.int64, count=n)
    flat_d = np.fromiter(chain.from_iterable(cols), dtype=np.int64, count=int(lens_d.sum()))
    lens = lens_d[codes]
    # row r holds flat_d[start of its list's columns + 0 .. its length - 1]
    first = np.repeat((np.cumsum(lens_d) - lens_d)[codes] - (np.cumsum(lens) - lens), lens)
    onehot[np.repeat(np.arange(n), lens), flat_d[first + np.arange(int(lens.sum()))]] = 1.0
    return onehot


def _columns_of(values: tuple[str, ...], token_lists: list[list[str]]) -> list[list[int]]:
    index, other = {v: i for i, v in enumerate(values)}, len(values)
    return [[index.get(v, other) for v in vals] for vals in token_lists]


# ------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to encode a graph the same way at training and scoring time.

    Attributes:
        vocab: per node type, per categorical field, the known values (index order). A value
            outside the vocabulary goes to one shared "other" bucket; a missing value is all 0.
        num_cols: per node type, the numeric column names.
        log_cols: per node type, which numeric columns are log1p-transformed (by name).
        mean, std: per node type, standardisation constants fit on training nodes.
        format_version: bump when the encoding changes incompatibly.
        activity_days: the activity window: a graph is encoded with only the activity nodes of
            its last ``activity_days`` (``Subgraph.recent_activities``; the contacts' timeline
            aggregates still count every activity). None (a spec saved before the window):
            every activity.
    """
    vocab: dict[str, dict[str, tuple[str, ...]]]
    num_cols: dict[str, tuple[str, ...]]
    log_cols: dict[str, tuple[bool, ...]]
    mean: dict[str, tuple[float, ...]]
    std: dict[str, tuple[float, ...]]
    format_version: int = FORMAT_VERSION
    activity_days: Optional[float] = None

    # -- fitting
    @classmethod
    def fit(cls, raws: Sequence[RawGraph], min_count: int = 5, max_vocab: int = 50,
            drop: Sequence[str] = (), activity_days: Optional[float] = None) -> "FeatureSpec":
        """Learn vocabularies and numeric constants from training graphs only.

        Args:
            raws: extracted training graphs (``extract``), one per training cutoff.
            min_count: a categorical value seen fewer times goes to the "other" bucket. Default 5.
            max_vocab: most frequent values kept per field. Default 50.
            drop: feature groups (``DROPPABLE``: ``"career"``) whose columns the spec leaves out
                (an ablation: the model never sees them). Default none.
            activity_days: the activity window the spec encodes with (``raws`` extracted from
                graphs already cut to it: ``window``). Default None (no window).
        """
        unknown = set(drop) - set(DROPPABLE)
        if unknown:
            raise ValueError(f"drop: unknown feature groups {sorted(unknown)} (known: {sorted(DROPPABLE)})")
        dropped = {c for g in drop for c in DROPPABLE[g]}
        vocab, num_cols, log_cols, mean, std = {}, {}, {}, {}, {}
        for ntype in NODE_TYPES:
            vocab[ntype] = {}
            for name, _key, _multi in CATEGORICALS[ntype]:
                counts: Counter[str] = Counter()
                for raw in raws:
                    for vals in raw.nodes[ntype].cats[name]:
                        counts.update(vals)
                kept = [v for v, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                        if c >= min_count][:max_vocab]
                vocab[ntype][name] = tuple(sorted(kept))
            all_cols = raws[0].nodes[ntype].num_cols if raws else []
            keep = [i for i, c in enumerate(all_cols) if not (ntype == CONTACT and c in dropped)]
            cols = [all_cols[i] for i in keep]
            fixed = [_FIXED.get(c) if ntype == CONTACT else None for c in cols]
            logs = tuple(f[0] if f else not _LINEAR.match(c) for c, f in zip(cols, fixed))
            mats = [cls._transform(r.nodes[ntype].num[:, keep], logs) for r in raws if len(r.nodes[ntype].num)]
            if mats:
                allx = np.concatenate(mats)
                mu, sd = allx.mean(axis=0), allx.std(axis=0)
            else:
                mu, sd = np.zeros(len(cols)), np.ones(len(cols))
            sd = np.where(sd < 1e-6, 1.0, sd)
            for i, f in enumerate(fixed):
                if f:
                    mu[i], sd[i] = f[1], f[2]
            num_cols[ntype], log_cols[ntype] = tuple(cols), logs
            mean[ntype] = tuple(float(x) for x in mu)
            std[ntype] = tuple(float(x) for x in sd)
        return cls(vocab=vocab, num_cols=num_cols, log_cols=log_cols, mean=mean, std=std,
                   activity_days=activity_days)

    @staticmethod
    def _transform(num: np.ndarray, logs: Sequence[bool]) -> np.ndarray:
        out = np.array(num, dtype=np.float64, copy=True)
        mask = np.asarray(logs, dtype=bool)
        if mask.any():
            out[:, mask] = np.sign(out[:, mask]) * np.log1p(np.abs(out[:, mask]))
        return out

    # -- encoding
    def dims(self) -> dict[str, int]:
        """Input feature width per node type."""
        return {t: len(self.num_cols[t]) + sum(len(v) + 1 for v in self.vocab[t].values())
                for t in NODE_TYPES}

    def _fields(self, ntype: NodeType) -> list[tuple[str, tuple[str, ...]]]:
        # CATEGORICALS order, never dict order (JSON round trips sort keys)
        return [(name, self.vocab[ntype].get(name, ())) for name, _k, _m in CATEGORICALS[ntype]]

    def column_names(self, ntype: NodeType) -> list[str]:
        """Names of the encoded columns of ``ntype`` (numeric first, then one-hot blocks)."""
        names = list(self.num_cols[ntype])
        for field_name, values in self._fields(ntype):
            names += [f"{field_name}={v}" for v in values] + [f"{field_name}={OTHER}"]
        return names

    def encode_nodes(self, ntype: NodeType, raw: RawNodes) -> np.ndarray:
        n = raw.num.shape[0]
        num = raw.num
        if tuple(raw.num_cols) != self.num_cols[ntype]:
            # the spec's columns by name: a spec fit with ``drop``, or saved before later columns
            # (the career ones) existed, reads the columns it knows and nothing else
            pos = {c: i for i, c in enumerate(raw.num_cols)}
            missing = [c for c in self.num_cols[ntype] if c not in pos]
            if missing:
                raise ValueError(f"{ntype}: numeric columns {missing[:3]} of the spec are not extracted "
                                 "(format change?)")
            num = num[:, [pos[c] for c in self.num_cols[ntype]]]
        x = (self._transform(num, self.log_cols[ntype]) - np.asarray(self.mean[ntype])) \
            / np.asarray(self.std[ntype])
        blocks = [x.reshape(n, len(self.num_cols[ntype]))]
        for field_name, values in self._fields(ntype):
            blocks.append(_one_hot(raw.cats[field_name], values, n))
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def encode(self, raw: RawGraph, seed_ids: Optional[Sequence[str]] = None) -> tuple[HeteroData, np.ndarray]:
        return _to_data(raw.subgraph, {t: self.encode_nodes(t, raw.nodes[t]) for t in NODE_TYPES},
                        seed_ids)

    # -- persistence
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FeatureSpec":
        d = json.loads(text)
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"feature spec format {d.get('format_version')} != {FORMAT_VERSION}")
        return cls(vocab={t: {k: tuple(v) for k, v in f.items()} for t, f in d["vocab"].items()},
                   num_cols={t: tuple(v) for t, v in d["num_cols"].items()},
                   log_cols={t: tuple(bool(x) for x in v) for t, v in d["log_cols"].items()},
                   mean={t: tuple(v) for t, v in d["mean"].items()},
                   std={t: tuple(v) for t, v in d["std"].items()},
                   format_version=d["format_version"], activity_days=d.get("activity_days"))

    def window(self, sg: Subgraph) -> Subgraph:
        """``sg`` as this spec encodes it: only the activities of its window (itself when it
        has none older, or the spec no window)."""
        return sg.recent_activities(self.activity_days)


def _to_data(sg: Subgraph, xs: dict[str, np.ndarray], seed_ids: Optional[Sequence[str]]) -> tuple[HeteroData, np.ndarray]:
    data = HeteroData()
    for ntype in NODE_TYPES:
        data[ntype].x = torch.from_numpy(xs[ntype])
        data[ntype].num_nodes = xs[ntype].shape[0]
    for etype in EDGE_TYPES:
        ei = sg.edges.get(etype)
        if ei is None or ei.size == 0:
            ei = np.zeros((2, 0), dtype=np.int64)
        data[etype].edge_index = torch.from_numpy(np.ascontiguousarray(ei, dtype=np.int64))
    data.as_of = sg.as_of
    return data, seed_index(sg, seed_ids)


def seed_index(sg: Subgraph, seed_ids: Optional[Sequence[str]] = None) -> np.ndarray:
    """Local contact indices of ``seed_ids`` (default: ``sg.seeds``); KeyError if one is absent."""
    if seed_ids is None:
        return np.asarray(sg.seeds, dtype=np.int64)
    pos = {cid: i for i, cid in enumerate(sg.node_ids.get(CONTACT, []))}
    missing = [c for c in seed_ids if c not in pos]
    if missing:
        raise KeyError(f"contacts not in the subgraph: {missing[:5]}")
    return np.fromiter((pos[c] for c in seed_ids), dtype=np.int64, count=len(seed_ids))


def to_hetero_data(sg: Subgraph, spec: FeatureSpec, seed_ids: Optional[Sequence[str]] = None,
                   encoded: Optional["Encoded"] = None) -> tuple[HeteroData, np.ndarray]:
    """Encode ``sg`` with ``spec``: a ``HeteroData`` (every node and edge type present, maybe
    empty) and the local contact indices of ``seed_ids`` (default ``sg.seeds``), the graph cut
    to the spec's activity window first. ``encoded``: ``encode_graph(sg, spec)`` when the
    caller has it already (its graph is the cut one)."""
    if encoded is None:
        return spec.encode(extract(spec.window(sg)), seed_ids)
    return _to_data(encoded.raw.subgraph, encoded.xs, seed_ids)


@dataclass
class Encoded:
    """A graph's raw values and encoded feature rows, kept to be reused on its subgraphs
    (features depend only on each node and as_of, so a node's row is the same in any of them)."""
    raw: RawGraph
    xs: dict[NodeType, np.ndarray]

    def take(self, sub: Subgraph, nodes: dict[NodeType, np.ndarray]) -> tuple[RawGraph, dict[NodeType, np.ndarray]]:
        """Raw values and rows of ``sub = induced_subgraph(self.raw.subgraph, nodes, ...)``."""
        raw = RawGraph(subgraph=sub, nodes={
            t: RawNodes(cats={k: [v[i] for i in nodes[t]] for k, v in r.cats.items()},
                        num=r.num[nodes[t]], num_cols=r.num_cols)
            for t, r in self.raw.nodes.items()})
        return raw, {t: x[nodes[t]] for t, x in self.xs.items()}


def encode_graph(sg: Subgraph, spec: FeatureSpec) -> Encoded:
    """``sg`` cut to the spec's activity window (``FeatureSpec.window``), its raw values and
    encoded rows."""
    raw = extract(spec.window(sg))
    return Encoded(raw, {t: spec.encode_nodes(t, raw.nodes[t]) for t in NODE_TYPES})
