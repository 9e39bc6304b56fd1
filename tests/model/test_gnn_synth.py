"""Hand-built synthetic graphs for the model tests (no graph store, no simulator).

``make_graph`` draws a small CRM as a ``Subgraph`` whose labels follow a known rule:
a contact converts when it viewed pricing before requesting a demo in the last 30 days, or
(less often) when two or more colleagues were active in the last 14 days. Also runs a few
sanity tests of the builder itself.
"""
from __future__ import annotations

import numpy as np

from leadpulse.graph_store.base import Subgraph
from leadpulse.model.base import CutoffExamples
from leadpulse.schemas.types import BASE_EDGE_TYPES, reverse

DAY = 86_400_000_000
T0 = 20_000 * DAY  # ~2024-10
TYPES = ("page_view", "email_open", "email_click", "demo_request", "meeting", "webinar_attended")
PAGES = ("pricing", "blog", "docs", "home")
INDUSTRIES = ("software", "retail", "fintech")


DERIVED = ("timeline", "orders")


def build(as_of, nodes: dict, edges: dict, seeds=()) -> Subgraph:
    """``nodes``: type -> list of (id, attrs); ``edges``: base type -> list of (src_i, dst_i, time).
    A contact's ``"timeline"`` and a company's ``"orders"`` in ``attrs`` go to the Subgraph's
    ``timelines`` and ``orders``."""
    sg = Subgraph(as_of=as_of)
    for t in ("contact", "company", "activity", "opportunity", "order"):
        sg.node_ids[t] = [i for i, _ in nodes.get(t, [])]
        sg.attrs[t] = [{k: v for k, v in a.items() if k not in DERIVED} for _, a in nodes.get(t, [])]
    sg.timelines = [a.get("timeline", []) for _, a in nodes.get("contact", [])]
    sg.orders = [a.get("orders", []) for _, a in nodes.get("company", [])]
    for et in BASE_EDGE_TYPES:
        rows = edges.get(et, [])
        ei = np.array([[r[0] for r in rows], [r[1] for r in rows]], dtype=np.int64).reshape(2, -1)
        et_time = np.array([r[2] for r in rows], dtype=np.int64)
        sg.edges[et], sg.edge_time[et] = ei, et_time
        sg.edges[reverse(et)], sg.edge_time[reverse(et)] = ei[::-1].copy(), et_time.copy()
    sg.seeds = np.asarray(seeds, dtype=np.int64)
    return sg


def make_graph(seed: int = 0, companies: int = 30, per_company: int = 6, as_of: int = T0):
    """A random CRM as of ``as_of`` and the rule-based labels of its contacts."""
    rng = np.random.default_rng(seed)
    nodes = {t: [] for t in ("contact", "company", "activity", "opportunity", "order")}
    edges = {et: [] for et in BASE_EDGE_TYPES}
    labels = []
    for k in range(companies):
        ind = INDUSTRIES[k % 3]
        orders = [(as_of - int(rng.integers(1, 80)) * DAY, 1000.0)] if rng.random() < 0.2 else []
        nodes["company"].append((f"co{seed}_{k}", {"industry": ind, "employees": int(rng.integers(10, 5000)),
                                                   "country": "US", "tech_stack": ["aws", "kafka"], "orders": orders}))
        if k > 0 and rng.random() < 0.5:
            edges[BASE_EDGE_TYPES[5]].append((k, k - 1, as_of - 100 * DAY))  # industry_peer
        if rng.random() < 0.3:
            o = len(nodes["opportunity"])
            nodes["opportunity"].append((f"op{seed}_{k}", {"stage": "proposal", "amount": 5e4,
                                                           "created_at": as_of - 20 * DAY}))
            edges[BASE_EDGE_TYPES[4]].append((k, o, as_of - 20 * DAY))  # owns
        recent_active = 0
        members = []
        for j in range(int(rng.integers(1, per_company + 1))):
            c = len(nodes["contact"])
            timeline = []
            mode = rng.random()
            n_act = int(rng.poisson(2 if mode < 0.3 else 6))
            for _ in range(n_act):
                tt = as_of - int(rng.integers(0, 120 * DAY))
                typ = TYPES[int(rng.integers(0, 3))]
                page = PAGES[int(rng.integers(1, 4))] if typ == "page_view" else None
                timeline.append((tt, typ, page))
            if mode > 0.8:  # the converting pattern: pricing, then a demo
                tp = as_of - int(rng.integers(5, 20)) * DAY
                timeline += [(tp, "page_view", "pricing"), (tp + 2 * DAY, "demo_request", None)]
            elif mode > 0.7:  # reverse order
                tp = as_of - int(rng.integers(5, 20)) * DAY
                timeline += [(tp, "demo_request", None), (tp + 2 * DAY, "page_view", "pricing")]
            timeline.sort()
            seniority = ("ic", "manager", "director", "vp")[int(rng.integers(0, 4))]
            attrs = {"company_id": f"co{seed}_{k}", "title": f"{seniority.upper()} Engineering",
                     "seniority": seniority, "department": "engineering", "source": "organic",
                     "created_at": as_of - 200 * DAY, "timeline": timeline}
            nodes["contact"].append((f"ct{seed}_{k}_{j}", attrs))
            edges[BASE_EDGE_TYPES[0]].append((c, k, as_of - 200 * DAY))
            for (tt, typ, page) in timeline:
                a = len(nodes["activity"])
                nodes["activity"].append((f"ac{seed}_{a}", {"type": typ, "page": page, "timestamp": tt,
                                                            "duration_s": 30.0}))
                edges[BASE_EDGE_TYPES[1]].append((c, a, tt))
            if any(as_of - tt <= 14 * DAY for tt, _, _ in timeline):
                recent_active += 1
            members.append((c, mode))
        for _, mode in members:
            p = 0.02 + (0.85 if mode > 0.8 else 0.0) + (0.1 if recent_active >= 3 else 0.0)
            labels.append(float(rng.random() < p))
    return build(as_of, nodes, edges), np.array(labels)


def make_examples(seeds, as_of_step: int = 30, **kw):
    """One ``CutoffExamples`` per seed (independent graphs at successive cutoffs)."""
    out = []
    for i, s in enumerate(seeds):
        sg, y = make_graph(seed=s, as_of=T0 + i * as_of_step * DAY, **kw)
        out.append(CutoffExamples(as_of=sg.as_of, contact_ids=list(sg.node_ids["contact"]),
                                  labels=y, build_graph=lambda sg=sg: sg))
    return out


def test_builder_has_reverse_edges_and_positives():
    sg, y = make_graph(0)
    assert ("company", "rev_works_at", "contact") in sg.edges
    assert len(y) == len(sg.node_ids["contact"]) and 0 < y.sum() < len(y)
