"""Exact k-hop neighbourhoods inside an already extracted graph (a k-hop union or a snapshot).

Training samples seeds from big snapshots and explanations take one lead at a time; both need
the seeds' exact ``hops``-hop neighbourhood so a ``hops``-layer GNN gives the seeds exactly
the outputs it gives them on the whole graph.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from leadpulse.graph_store.base import Subgraph
from leadpulse.schemas.types import COMPANY, CONTACT, NODE_TYPES, NodeType

__all__ = ["khop_subgraph", "khop_nodes", "induced_subgraph"]


def khop_subgraph(sg: Subgraph, seed_idx: Iterable[int], hops: int = 2) -> Subgraph:
    """The induced subgraph on the union of the exact ``hops``-hop neighbourhoods of contacts.

    Used to train on big snapshots (a sample of seeds per cutoff) and to explain one lead at
    a time. Every edge incident to a node within ``hops - 1`` hops is kept, so a ``hops``-layer
    GNN gives the seeds exactly the outputs it gives them on ``sg``.
    """
    seeds = np.asarray(list(seed_idx), dtype=np.int64)
    return induced_subgraph(sg, khop_nodes(sg, seeds, hops), seeds)


def khop_nodes(sg: Subgraph, seeds: np.ndarray, hops: int = 2) -> dict[NodeType, np.ndarray]:
    """Sorted local indices, per node type, of the nodes within ``hops`` of contacts ``seeds``."""
    keep = {t: np.zeros(len(sg.node_ids.get(t, [])), dtype=bool) for t in NODE_TYPES}
    frontier = {t: np.zeros_like(m) for t, m in keep.items()}
    keep[CONTACT][seeds] = True
    frontier[CONTACT][seeds] = True
    for _ in range(hops):
        nxt = {t: np.zeros_like(m) for t, m in keep.items()}
        for (src, _rel, dst), ei in sg.edges.items():
            if ei.size and frontier[src].any():
                hit = frontier[src][ei[0]]
                nxt[dst][ei[1][hit]] = True
        for t in NODE_TYPES:
            nxt[t] &= ~keep[t]
            keep[t] |= nxt[t]
        frontier = nxt
    return {t: np.flatnonzero(keep[t]) for t in NODE_TYPES}


def induced_subgraph(sg: Subgraph, nodes: dict[NodeType, np.ndarray], seeds: np.ndarray) -> Subgraph:
    """``sg`` restricted to ``nodes`` (sorted local indices per type), seeds renumbered."""
    remap = {}
    out = Subgraph(as_of=sg.as_of)
    for t in NODE_TYPES:
        idx = nodes[t]
        m = np.full(len(sg.node_ids.get(t, [])), -1, dtype=np.int64)
        m[idx] = np.arange(len(idx))
        remap[t] = m
        ids, attrs = sg.node_ids.get(t, []), sg.attrs.get(t, [])
        out.node_ids[t] = [ids[i] for i in idx]
        out.attrs[t] = [attrs[i] if i < len(attrs) else {} for i in idx]
    for etype, ei in sg.edges.items():
        src, _rel, dst = etype
        if not ei.size:
            continue
        m = (remap[src][ei[0]] >= 0) & (remap[dst][ei[1]] >= 0)
        out.edges[etype] = np.stack([remap[src][ei[0][m]], remap[dst][ei[1][m]]]).astype(np.int64)
        if etype in sg.edge_time:
            out.edge_time[etype] = np.asarray(sg.edge_time[etype])[m]
    if len(sg.timelines):
        out.timelines = [sg.timeline(i) for i in nodes[CONTACT].tolist()]
    if len(sg.orders):
        out.orders = [sg.company_orders(i) for i in nodes[COMPANY].tolist()]
    if len(sg.careers):
        out.careers = [sg.career(i) for i in nodes[CONTACT].tolist()]
    out.seeds = remap[CONTACT][seeds]
    return out
