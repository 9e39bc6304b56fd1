"""Exact k-hop extraction, full snapshots and the affected-lead rule, over a ``GraphState``.

Receptive field. With message passing over base and reverse edges, a ``hops``-layer GNN's output
at a seed depends on the layer-(hops-1) states of its neighbours, down to the raw features of
nodes within ``hops``. ``subgraph`` therefore returns every node within ``hops`` of a seed and
every edge of the full graph that has an endpoint within ``hops - 1`` of a seed: the whole
neighbourhood of each node whose state feeds a seed. (Edges between two nodes at exactly
``hops`` are left out: they only feed states the seeds never read.) Seeds' outputs on the
subgraph equal their outputs on the snapshot.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Iterable, Sequence

import numpy as np

from graph_store.base import Subgraph
from graph_store.records import ETYPES, NB, RING_KINDS
from graph_store.state import GraphState
from schemas.types import COMPANY, CONTACT, NODE_TYPES

_DST = [e[2] for e in ETYPES]


def _assemble(state: GraphState, t: int, ids: dict[str, list[str]], per: list[tuple[list, list, list]],
              seeds: Sequence[int]) -> Subgraph:
    """``per[code]`` = (source local indices, destination local indices, times) of base type ``code``."""
    g = Subgraph(as_of=t, seeds=np.asarray(seeds, dtype=np.int64))
    for nt in NODE_TYPES:
        g.node_ids[nt] = ids[nt]
        g.attrs[nt] = _attrs(state, nt, ids[nt], t)
    for code in range(NB):
        src, dst, tim = per[code]
        arr = np.array([src, dst], dtype=np.int64).reshape(2, len(src))
        times = np.array(tim, dtype=np.int64)
        g.edges[ETYPES[code]] = arr
        g.edge_time[ETYPES[code]] = times
        g.edges[ETYPES[code + NB]] = arr[::-1].copy()
        g.edge_time[ETYPES[code + NB]] = times.copy()
    return g


def _attrs(state: GraphState, nt: str, ids: list[str], t: int) -> list[dict]:
    """``GraphState.attrs`` for many nodes known to exist at ``t`` (the hot loop, inlined)."""
    nodes = state.nodes[nt]
    out = []
    append = out.append
    timeline, orders = state.timeline_of, state.orders_of
    for nid in ids:
        node = nodes[nid]
        times = node.times
        if len(times) == 1:
            a = dict(node.vals[0]) if times[0] <= t else {}
        elif times:
            i = bisect_right(times, t) - 1
            a = dict(node.vals[i]) if i >= 0 else {}
        else:
            a = {}
        if nt == CONTACT:
            a["timeline"] = timeline(node, t)
        elif nt == COMPANY:
            a["orders"] = orders(node, t)
        append(a)
    return out


def _by_index(ids: dict[str, list[str]], edges: Iterable[tuple]) -> list[tuple[list, list, list]]:
    index = {nt: {nid: i for i, nid in enumerate(lst)} for nt, lst in ids.items()}
    per: list[tuple[list, list, list]] = [([], [], []) for _ in range(NB)]
    for code, src, dst, et in edges:
        s, d, tm = per[code]
        s.append(index[ETYPES[code][0]][src])
        d.append(index[ETYPES[code][2]][dst])
        tm.append(et)
    return per


def subgraph(state: GraphState, seeds: Sequence[str], t: int, hops: int = 2) -> Subgraph:
    """Union of exact ``hops``-hop neighbourhoods of the seed contacts that exist at ``t``.

    Each edge is emitted once: by the first of its endpoints whose edges are scanned (the
    nodes within ``hops - 1``); a scanned node skips edges to nodes already scanned.
    """
    ids: dict[str, list[str]] = {nt: [] for nt in NODE_TYPES}
    local: dict[str, dict[str, int]] = {nt: {} for nt in NODE_TYPES}
    per: list[tuple[list, list, list]] = [([], [], []) for _ in range(NB)]
    scanned: dict[str, set] = {nt: set() for nt in NODE_TYPES}
    frontier = []
    seed_idx = []
    nodes = state.nodes
    contacts, clocal, cids = nodes[CONTACT], local[CONTACT], ids[CONTACT]
    for s in seeds:
        node = contacts.get(s)
        if node is None or node.first > t or s in clocal:
            continue
        seed_idx.append(len(cids))
        clocal[s] = len(cids)
        cids.append(s)
        frontier.append((CONTACT, s, node))
    peers = state.rings.peer_entries
    for d in range(hops):
        nxt = []
        expand = d + 1 < hops
        for ntype, nid, node in frontier:
            scanned[ntype].add(nid)
            me = local[ntype][nid]
            lists = []
            if node.adj:
                lists = [(code, entries) for code, entries in node.adj.items()]
            if ntype == COMPANY and node.bk:
                for r in (0, 1):
                    pl = peers(r, nid, t)
                    if pl:
                        code = RING_KINDS[r]
                        lists.append((code, pl))
                        lists.append((code + NB, pl))
            for code, entries in lists:
                otype = _DST[code]
                oloc, oids, osc = local[otype], ids[otype], scanned[otype]
                if code < NB:
                    src_l, dst_l, tim_l = per[code]
                    fwd = True
                else:
                    src_l, dst_l, tim_l = per[code - NB]
                    fwd = False
                for s, e, other in entries:
                    if s > t or e <= t:
                        continue
                    j = oloc.get(other)
                    if j is None:
                        j = oloc[other] = len(oids)
                        oids.append(other)
                        if expand:
                            nxt.append((otype, other, nodes[otype][other]))
                    elif other in osc:
                        continue
                    if fwd:
                        src_l.append(me)
                        dst_l.append(j)
                    else:
                        src_l.append(j)
                        dst_l.append(me)
                    tim_l.append(s)
        frontier = nxt
    return _assemble(state, t, ids, per, seed_idx)


def snapshot(state: GraphState, t: int) -> Subgraph:
    """Every node and edge as of ``t`` (edges collected from their source side)."""
    ids = {nt: state.ids(nt, t) for nt in NODE_TYPES}
    edges = []
    nodes = state.nodes
    for nt in NODE_TYPES:
        for nid in ids[nt]:
            for code, other, et in state.edges_at(nt, nid, nodes[nt][nid], t):
                if code < NB:
                    edges.append((code, nid, other, et))
    return _assemble(state, t, ids, _by_index(ids, edges), [])


def affected(state: GraphState, feature_nodes: Iterable, edge_nodes: Iterable, t: int,
             hops: int = 2) -> set[str]:
    """Contacts within ``hops`` of a feature change or within ``hops - 1`` of an edge change."""
    dist: dict = {}
    levels: list[list] = [[] for _ in range(hops + 1)]
    for key in feature_nodes:
        if key not in dist and state.get(key[0], key[1], t) is not None:
            dist[key] = 0
            levels[0].append(key)
    if hops >= 1:
        for key in edge_nodes:
            if key not in dist and state.get(key[0], key[1], t) is not None:
                dist[key] = 1
                levels[1].append(key)
    nodes = state.nodes
    for d in range(hops):
        for ntype, nid in levels[d]:
            for code, other, _ in state.edges_at(ntype, nid, nodes[ntype][nid], t):
                key = (_DST[code], other)
                if key not in dist:
                    dist[key] = d + 1
                    levels[d + 1].append(key)
    return {nid for (ntype, nid) in dist if ntype == CONTACT}
