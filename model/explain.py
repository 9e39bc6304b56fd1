"""Top factors of a lead's score, in words a sales rep understands.

Method: **occlusion over feature groups**, batched. For each lead we take its exact 2-hop
neighbourhood, make one copy per evidence group with that evidence removed (columns replaced
by the values of a blank node — "nothing known" — or edges deleted), score the original and
all copies in one forward pass (a disjoint union), and report ``score - score_without_group``
in calibrated probability points: positive means the evidence raises the score.

**The words agree with the sign.** "Removed" means "nothing known", so a contribution compares
the lead with a lead we know nothing about, and evidence that sounds bad can still raise the
score (twelve activities, the last 78 days ago, beat no activity at all). Each group's text is
therefore chosen *after* its contribution is known, from a pair: what the evidence is when it
raises the score ("past activity: 12 activities, the last 78 days ago") and when it lowers it
("only 2 activities, the last 78 days ago"). Texts that state a plain fact (a title, a lead
source, firmographics) read the same either way. A silence of 30 days or more is its own
group, ``silence``, measured against the lead as it stood right after its last activity (its own
activity columns and its activities' ages recomputed as of that moment): "no activity for 78
days" is reported when, and because, the silence lowers the score; when the model does not
hold it against the lead the text is the neutral "last activity 78 days ago".
``explain_signed`` returns the factors that raise the score and those that lower it in two
lists, each sorted by size (docs/model.md#explanations-modelexplainpy). The factors, the groups
and their words live in ``model.factors``, shared with the models that explain themselves
(``model.tabular_explain``: LightGBM by TreeSHAP, the rules model by its points), which
``explain_signed`` hands over to.

Why not ``torch_geometric.explain`` (GNNExplainer, Captum): those return per-feature and
per-edge masks that must then be summed back into business concepts, optimise per node
(slow, seed-dependent) or give gradients that don't add up to a change in probability. Group
occlusion is exact for what it claims ("without the pricing-then-demo evidence the score would
be 0.12 lower"), deterministic, and costs one batched forward for all the leads explained together.

Groups (each only when its evidence exists): the order of key steps, the lead's own activity,
a silence since its last activity, the lead's career (a former employer, a purchase championed there: "champion at a previous
customer, joined 12 days ago"), title/seniority, lead source, colleagues' engagement, the account's own orders, orders at
industry-peer and similar-tech companies, firmographics, and the account's opportunities.

Example:
    >>> sorted(GROUPS)[:3]
    ['account_orders', 'career', 'colleagues']
    >>> _silence_texts(78.4)
    ('last activity 78 days ago', 'no activity for 78 days')
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np
import torch

from leadpulse.graph_store.base import Subgraph
from leadpulse.model import temporal
from leadpulse.model.base import LeadModel
from leadpulse.model.career import CAREER_COLUMNS
from leadpulse.model.factors import (  # the words and the shapes every model family explains with
    GROUPS,
    SILENCE_DAYS,
    Explanation,
    Factor,
    _activity_texts,
    _career_text,
    _silence_texts,
    _steps_order_text,
    sign_split,
)
from leadpulse.model.features import Encoded, FeatureSpec, RawGraph, RawNodes, encode_graph, extract, seed_index
from leadpulse.model.gnn import GNNLeadModel
from leadpulse.model.khop import induced_subgraph, khop_nodes, khop_subgraph
from leadpulse.schemas.timeutil import MICROS_PER_DAY
from leadpulse.schemas.types import (
    ACTIVITY,
    COMPANY,
    CONTACT,
    EDGE_TYPES,
    HAD_ACTIVITY,
    INDUSTRY_PEER,
    NODE_TYPES,
    OPPORTUNITY,
    OWNS,
    SIMILAR_TO,
    WORKS_AT,
    reverse,
)

logger = logging.getLogger(__name__)

__all__ = ["Factor", "Explanation", "explain", "explain_signed", "GROUPS", "SILENCE_DAYS"]

_ORDER_COLS = ("order_pricing_before_demo", "order_pricing_before_demo_recent")
_OWN_COLS = tuple(c for c in temporal.CONTACT_COLUMNS if c not in _ORDER_COLS)


# ------------------------------------------------------------------ perturbations
@dataclass
class _Copy:
    """One occluded copy. ``label`` is the text when the evidence raises the score, ``lowers``
    the text when it lowers it (None: the same, a plain fact); an empty text leaves the factor
    out in that direction (nothing true to say)."""
    group: str
    label: str
    xs: dict
    edges: dict
    lowers: Optional[str] = None

    def text(self, contribution: float) -> str:
        return self.label if contribution >= 0 or self.lowers is None else self.lowers


def _cols(spec: FeatureSpec, ntype: str, names=(), prefixes=()) -> np.ndarray:
    return _col_index(tuple(spec.column_names(ntype)), tuple(names), tuple(prefixes))


@lru_cache(maxsize=256)
def _col_index(cols: tuple, names: tuple, prefixes: tuple) -> np.ndarray:
    # cached: the same few selections are asked for every lead explained
    out = np.array([i for i, c in enumerate(cols)
                    if c in names or any(c.startswith(p) for p in prefixes)], dtype=np.int64)
    out.setflags(write=False)
    return out


def _blank_rows(spec: FeatureSpec, as_of: int) -> dict[str, np.ndarray]:
    sg = Subgraph(as_of=as_of, node_ids={t: ["_"] for t in NODE_TYPES},
                  attrs={t: [{}] for t in NODE_TYPES})
    raw = extract(sg)
    return {t: spec.encode_nodes(t, raw.nodes[t])[0] for t in NODE_TYPES}


def _neighbours(sg: Subgraph, etype, src: np.ndarray) -> np.ndarray:
    ei = sg.edges.get(etype)
    if ei is None or not ei.size or not len(src):
        return np.zeros(0, dtype=np.int64)
    return np.unique(ei[1][np.isin(ei[0], src)])


def _silence_copy(spec: FeatureSpec, sub: Subgraph, raw: RawGraph, xs: dict, c: int,
                  row: dict) -> Optional[_Copy]:
    """The lead as it stood right after its last activity, everything else as it is: its own
    activity columns recomputed as of that moment and its activities' ages shortened by the
    silence. ``score - score_then`` is what the silence costs (or, rarely, adds)."""
    if not row["has_activity"] or row["days_since_last_activity"] < SILENCE_DAYS:
        return None
    as_of = sub.as_of
    timeline = [e for e in sub.timeline(c) if e[0] <= as_of]
    if not timeline:
        return None
    last = max(int(e[0]) for e in timeline)
    shift = (as_of - last) / MICROS_PER_DAY
    cnum = raw.nodes[CONTACT]
    X, names = temporal.contact_features([timeline], last)
    num = cnum.num[[c]].copy()
    pos = {n: i for i, n in enumerate(cnum.num_cols)}
    for j, name in enumerate(names):
        if name in pos and name not in _ORDER_COLS:  # the order of steps is its own group
            num[0, pos[name]] = X[0, j]
    new = dict(xs)
    x = xs[CONTACT].copy()
    x[c] = spec.encode_nodes(CONTACT, RawNodes({k: [v[c]] for k, v in cnum.cats.items()}, num, cnum.num_cols))[0]
    new[CONTACT] = x
    acts = _neighbours(sub, HAD_ACTIVITY, np.array([c]))
    anum = raw.nodes[ACTIVITY]
    if len(acts) and "age_days" in anum.num_cols:
        age, missing = anum.num_cols.index("age_days"), anum.num_cols.index("missing_age_days")
        a = anum.num[acts].copy()
        known = a[:, missing] == 0
        a[known, age] = np.maximum(0.0, a[known, age] - shift)
        xa = xs[ACTIVITY].copy()
        xa[acts] = spec.encode_nodes(ACTIVITY, RawNodes({k: [v[i] for i in acts] for k, v in anum.cats.items()},
                                                        a, anum.num_cols))
        new[ACTIVITY] = xa
    raises, lowers = _silence_texts(row["days_since_last_activity"])
    return _Copy("silence", raises, new, sub.edges, lowers)


def _copies(model: GNNLeadModel, sub: Subgraph, raw: RawGraph, xs: dict, blank: dict) -> list[_Copy]:
    spec = model.spec
    c = int(sub.seeds[0])
    attrs = sub.attrs[CONTACT][c] or {}
    cnum = raw.nodes[CONTACT]
    row = dict(zip(cnum.num_cols, cnum.num[c]))
    out: list[_Copy] = []

    def cols_copy(group, label, ntype, rows, cols, lowers=None):
        if not len(rows) or not len(cols):
            return
        new = dict(xs)
        x = xs[ntype].copy()
        x[np.ix_(rows, cols)] = blank[ntype][cols]
        new[ntype] = x
        out.append(_Copy(group, label, new, sub.edges, lowers))

    def nodes_copy(group, label, ntype, nodes: np.ndarray):
        """The copy without ``nodes`` of ``ntype``: every edge that touches one is removed."""
        edges = dict(sub.edges)
        for et, ei in sub.edges.items():
            if ei.size and ntype in (et[0], et[2]):
                gone = np.zeros(ei.shape[1], dtype=bool)
                for side in (0, 2):
                    if et[side] == ntype:
                        gone |= np.isin(ei[side // 2], nodes)
                edges[et] = ei[:, ~gone]
        out.append(_Copy(group, label, xs, edges))

    order = row["order_pricing_before_demo"]
    if order:
        cols_copy("steps_order", _steps_order_text(order), CONTACT, [c], _cols(spec, CONTACT, _ORDER_COLS))
    # own activity: temporal columns blanked and the activity edges removed
    own_cols = _cols(spec, CONTACT, _OWN_COLS)
    new = dict(xs)
    x = xs[CONTACT].copy()
    x[np.ix_([c], own_cols)] = blank[CONTACT][own_cols]
    new[CONTACT] = x
    rev = reverse(HAD_ACTIVITY)
    edges = dict(sub.edges)
    for et, side in ((HAD_ACTIVITY, 0), (rev, 1)):
        ei = sub.edges.get(et)
        if ei is not None and ei.size:
            edges[et] = ei[:, ei[side] != c]
    raises, lowers = _activity_texts(row)
    out.append(_Copy("own_activity", raises, new, edges, lowers))
    silence = _silence_copy(spec, sub, raw, xs, c, row)
    if silence is not None:
        out.append(silence)

    career = _career_text(row)
    if career:
        cols_copy("career", career, CONTACT, [c], _cols(spec, CONTACT, CAREER_COLUMNS))

    title = attrs.get("title") or attrs.get("seniority")
    if title:
        cols_copy("title", f"title: {title}", CONTACT, [c],
                  _cols(spec, CONTACT, prefixes=("seniority=", "title_kw=", "department=")))
    if attrs.get("source"):
        cols_copy("source", f"lead source: {attrs['source']}", CONTACT, [c], _cols(spec, CONTACT, prefixes=("source=",)))

    company = _neighbours(sub, WORKS_AT, np.array([c]))
    colleagues = np.setdiff1d(_neighbours(sub, reverse(WORKS_AT), company), [c])
    if len(colleagues):
        # engaged in the last 14 days: an activity at most 14 days before as_of (the extracted
        # recency is of activities up to as_of only)
        cn = {name: i for i, name in enumerate(cnum.num_cols)}
        n14 = int(np.count_nonzero((cnum.num[colleagues, cn["has_activity"]] > 0)
                                   & (cnum.num[colleagues, cn["days_since_last_activity"]] <= 14)))
        if n14:
            label = f"{n14} colleague{'s' if n14 != 1 else ''} engaged in the last 14 days"
            lowers = f"only {n14} of {len(colleagues)} colleagues engaged in the last 14 days"
        else:
            label = "colleagues engaged earlier (none in the last 14 days)"
            lowers = "no colleague activity in the last 14 days"
        cols_copy("colleagues", label, CONTACT, colleagues, _cols(spec, CONTACT, temporal.CONTACT_COLUMNS),
                  lowers)
    order_cols = _cols(spec, COMPANY, temporal.ORDER_COLUMNS)
    comp_num = raw.nodes[COMPANY]
    oi = {n: i for i, n in enumerate(comp_num.num_cols)}
    if len(company) and comp_num.num[company, oi["orders_ever"]].sum():
        n90 = int(comp_num.num[company, oi["orders_90d"]].sum())
        recent = f" ({n90} orders in the last 90 days)" if n90 else ""
        cols_copy("account_orders", f"account placed {n90} orders in the last 90 days" if n90
                  else "account has bought before", COMPANY, company, order_cols,
                  "account is already a customer" + recent)
    peers = np.setdiff1d(np.union1d(
        np.concatenate([_neighbours(sub, e, company) for e in (INDUSTRY_PEER, reverse(INDUSTRY_PEER))]),
        np.concatenate([_neighbours(sub, e, company) for e in (SIMILAR_TO, reverse(SIMILAR_TO))])), company)
    if len(peers):
        n90 = int(comp_num.num[peers, oi["orders_90d"]].sum())
        if n90:
            label = f"industry peers bought recently ({n90} orders in 90 days)"
            lowers = f"only {n90} order{'s' if n90 != 1 else ''} at industry peers in 90 days"
        else:
            label = "industry peers bought before (none in the last 90 days)"
            lowers = "no recent orders at industry peers"
        cols_copy("peers", label, COMPANY, peers, order_cols, lowers)
    if len(company):
        ca = sub.attrs[COMPANY][int(company[0])] or {}
        bits = [str(ca["industry"])] if ca.get("industry") else []
        if ca.get("employees"):
            bits.append(f"{ca['employees']} employees")
        if bits:
            cols_copy("firmographics", "company: " + ", ".join(bits), COMPANY, company,
                      _cols(spec, COMPANY, ("employees", "missing_employees", "revenue", "missing_revenue",
                                            "tech_count"), ("industry=", "country=", "tech=")))
    opps = _neighbours(sub, OWNS, company)
    if len(opps):
        stage = (sub.attrs[OPPORTUNITY][int(opps[-1])] or {}).get("stage") or "unknown"
        label = f"account has {len(opps)} opportunit{'ies' if len(opps) > 1 else 'y'} (latest stage: {stage})"
        nodes_copy("opportunities", label, OPPORTUNITY, opps)
    return out


def _union(parts: list[tuple[dict, dict, int]]) -> tuple[dict, dict, torch.Tensor]:
    """Disjoint union of (xs, edges, seed) copies into one batch."""
    offs = {t: 0 for t in NODE_TYPES}
    xs_all = {t: [] for t in NODE_TYPES}
    ei_all = {e: [] for e in EDGE_TYPES}
    seeds = []
    for xs, edges, seed in parts:
        for et in EDGE_TYPES:
            ei = edges.get(et)
            if ei is not None and ei.size:
                ei_all[et].append(ei + np.array([[offs[et[0]]], [offs[et[2]]]]))
        seeds.append(offs[CONTACT] + seed)
        for t in NODE_TYPES:
            xs_all[t].append(xs[t])
            offs[t] += xs[t].shape[0]
    x_dict = {t: torch.from_numpy(np.concatenate(v)) for t, v in xs_all.items()}
    e_dict = {e: torch.from_numpy(np.concatenate(v, axis=1)) for e, v in ei_all.items()
              if v and x_dict[e[0]].shape[0]}
    return x_dict, e_dict, torch.as_tensor(seeds, dtype=torch.long)


def explain(model: LeadModel, graph: Subgraph, contact_ids: Sequence[str], top_k: int = 5,
            min_abs: float = 1e-4, encoded: Optional[object] = None) -> list[list[Factor]]:
    """Top factors per contact, largest absolute contribution first (both signs in one list;
    ``explain_signed`` splits them).

    Args:
        model: a fitted ``GNNLeadModel``, or any model with its own ``explain_signed``
            (``explain_signed``).
        graph: a graph containing every contact's 2-hop neighbourhood (k-hop union or snapshot).
        contact_ids: contacts to explain.
        top_k: factors kept per contact. Default 5.
        min_abs: contributions smaller than this are dropped (and zero ones always). Default 1e-4.
        encoded: the rows the caller's scoring of ``graph`` built (``ScoreBatch.encoded``: for
            the GNN ``encode_graph(graph, model.spec)``, for another family its own rows); built
            here otherwise. Each lead's rows are taken from it.

    Returns:
        One list of ``Factor`` per contact, aligned with ``contact_ids``.
    """
    return [e.top for e in explain_signed(model, graph, contact_ids, top_k, min_abs, encoded)]


def explain_signed(model: LeadModel, graph: Subgraph, contact_ids: Sequence[str], top_k: int = 5,
                   min_abs: float = 1e-4, encoded: Optional[object] = None) -> list[Explanation]:
    """Per contact, its factors as an ``Explanation``: the ``top_k`` largest of either sign, the
    ``top_k`` largest that raise the score and the ``top_k`` largest that lower it. Arguments
    as ``explain``. A factor's text agrees with its sign (module doc).

    The GNN is explained here, by occlusion. Any other model that has its own
    ``explain_signed(graph, contact_ids, top_k, min_abs)`` explains itself (the LightGBM and
    logistic-regression baselines by their per-column contributions, the rules model by its
    points: ``model.tabular_explain``), given ``encoded`` when the scoring built its rows (a
    tabular baseline's table, the hybrid's two parts' rows). A model without one has no
    factors: empty lists."""
    if not isinstance(model, GNNLeadModel):
        own = getattr(model, "explain_signed", None)
        if own is None:
            return [Explanation([], [], []) for _ in contact_ids]
        extra = {"encoded": encoded} if encoded is not None else {}
        return own(graph, contact_ids, top_k=top_k, min_abs=min_abs, **extra)
    spec = model.spec
    if spec is None:
        raise RuntimeError("model is not fitted")
    # the graph the scores were computed on: the encoded one's, or this one cut to the window
    graph = encoded.raw.subgraph if isinstance(encoded, Encoded) else spec.window(graph)
    local = seed_index(graph, list(contact_ids))
    blank = _blank_rows(spec, graph.as_of)
    if encoded is None:
        # rows depend only on each node and as_of: built once, on the leads' k-hop union only
        # (``graph`` may be a whole snapshot)
        graph = khop_subgraph(graph, local, hops=model.options.arch.layers)
        local = graph.seeds
        encoded = encode_graph(graph, spec)
    parts, per_lead = [], []
    for c in local:
        seed = np.array([int(c)], dtype=np.int64)
        nodes = khop_nodes(graph, seed, hops=model.options.arch.layers)
        sub = induced_subgraph(graph, nodes, seed)
        raw, xs = encoded.take(sub, nodes)
        copies = _copies(model, sub, raw, xs, blank)
        seed = int(sub.seeds[0])
        per_lead.append(copies)
        parts += [(xs, sub.edges, seed)] + [(k.xs, k.edges, seed) for k in copies]
    if not parts:
        return []
    # Every lead's original and occluded copies in one forward pass: the copies are disjoint
    # (no message crosses them), and one pass for all leads costs far less than one each.
    x_dict, e_dict, seeds = _union(parts)
    with torch.inference_mode():
        logits = model.eval_net()(x_dict, e_dict, seeds).double().numpy()
    p_all = model.calibration(logits)
    results, at = [], 0
    for copies in per_lead:
        p, at = p_all[at:at + 1 + len(copies)], at + 1 + len(copies)
        factors = [Factor(k.text(d), k.group, d) for k, d in ((k, float(p[0] - pk)) for k, pk in zip(copies, p[1:]))]
        # a zero contribution (the copy equals the original: nothing to remove) says nothing
        results.append(sign_split(factors, top_k, min_abs))
    return results
