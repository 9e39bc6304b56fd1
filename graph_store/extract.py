"""Exact k-hop extraction and full snapshots over a ``GraphState`` (the affected-lead rule: ``affected.py``).

Receptive field. With message passing over base and reverse edges, a ``hops``-layer GNN's output
at a seed depends on the layer-(hops-1) states of its neighbours, down to the raw features of
nodes within ``hops``. ``subgraph`` therefore returns every node within ``hops`` of a seed and
every edge of the full graph that has an endpoint within ``hops - 1`` of a seed: the whole
neighbourhood of each node whose state feeds a seed. (Edges between two nodes at exactly
``hops`` are left out: they only feed states the seeds never read.) Seeds' outputs on the
subgraph equal their outputs on the snapshot.

Vectorised over the state's columns: each BFS level gathers, per node type, the version rows
valid at t of the frontier (holder side) and the holder rows listed under the frontier
(``rev``), filters them by ``vt <= t < ve`` with numpy, and assigns local indices with a
per-type scratch array of marks (reset before returning). Node attributes are the stored
dicts themselves (``Subgraph``: read-only); timelines are one set of columns for the read
(``Timelines``), and so are company orders (``Orders``); only column-only activity rows get
a dict built per node. Careers (``career.py``) are walked only for the read's movers.

Deletes (``state.py``): a deleted node's own edges end with its tombstone, so the BFS only has to
drop, when the state holds tombstones at all, the nodes a live node still names or is named by
that are not alive at t (``_hidden``); a snapshot numbers only live nodes and keeps the edges
with both ends numbered.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from leadpulse.graph_store.base import Subgraph, activity_cut
from leadpulse.graph_store.career import careers
from leadpulse.graph_store.records import ETYPES, NB, REFS, RING_KINDS
from leadpulse.graph_store.state import _ACTIVITY_CONTACT_J as _CONTACT_J
from leadpulse.graph_store.state import HAD_ACTIVITY_CODE, GraphState
from leadpulse.graph_store.table import HOLDER_OF
from leadpulse.graph_store.timeline import Orders, TimelineBlock, Timelines
from leadpulse.schemas.types import ACTIVITY, COMPANY, CONTACT, NODE_TYPES

_DST = [e[2] for e in ETYPES]
_EMPTY = np.zeros(0, dtype=np.int64)
_NO_PEERS = (_EMPTY, _EMPTY)


class _Cols:
    """int64 numpy columns of the state's tables for one read (``Table.columns``, synced once)."""

    def __init__(self, state: GraphState) -> None:
        self.state = state
        self.tables: dict = {}

    def __call__(self, kind: str, name: str, j: int = -1) -> np.ndarray:
        cols = self.tables.get(kind)
        if cols is None:
            cols = self.tables[kind] = self.state.tables[kind].columns()
        return cols[f"ref{j}" if name == "refs" else name]

    def close(self) -> None:
        self.tables.clear()


def _rows_at(cols: _Cols, kind: str, nodes: np.ndarray, t: int) -> np.ndarray:
    """Row of each node's version valid at ``t`` (-1: none): walk ``vp`` back from ``latest``."""
    rows = cols(kind, "latest")[nodes]
    vt = cols(kind, "vt")
    if not len(vt):
        return rows
    vp = cols(kind, "vp")
    while True:
        bad = rows >= 0
        bad[bad] = vt[rows[bad]] > t
        if not bad.any():
            return rows
        rows[bad] = vp[rows[bad]]


def _dead(state: GraphState, cols: _Cols, kind: str, nodes: np.ndarray, t: int) -> np.ndarray:
    """Per node: is it deleted at ``t`` (its valid row a tombstone)."""
    tab = state.tables[kind]
    if not tab.tombs or not len(nodes):
        return np.zeros(len(nodes), dtype=bool)
    rows = _rows_at(cols, kind, nodes, t)
    out = rows >= 0
    out[out] = tab.tomb_rows()[rows[out]]
    return out


def _hidden(state: GraphState, cols: _Cols, kind: str, nodes: np.ndarray, t: int) -> np.ndarray:
    """Per existing node: is it not alive at ``t`` (``GraphState.alive``): deleted, or an activity
    whose contact is."""
    out = _dead(state, cols, kind, nodes, t)
    if kind == ACTIVITY and state.tables[CONTACT].tombs and len(nodes):
        rows = _rows_at(cols, ACTIVITY, nodes, t)
        live = np.nonzero((rows >= 0) & ~out)[0]
        contacts = cols(ACTIVITY, "refs", _CONTACT_J)[rows[live]]
        out[live] = _dead(state, cols, CONTACT, contacts, t)
    return out


def _drop(ok: np.ndarray, bad: np.ndarray) -> None:
    """Clear the entries of mask ``ok`` whose kept position is flagged in ``bad``."""
    ok[np.nonzero(ok)[0][bad]] = False


def _marks(state: GraphState, kind: str) -> np.ndarray:
    """Scratch array of local index + 1 per node (all zero between reads)."""
    n = len(state.tables[kind].names)
    m = state.marks.get(kind)
    if m is None or len(m) < n:
        m = np.zeros(max(n + 1024, 2 * (0 if m is None else len(m))), dtype=np.int64)
        state.marks[kind] = m
    return m


def _gather(lists: list, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``lists[i]`` (rows as int64 bytes, or None) for each node: (rows, lengths)."""
    sel = list(map(lists.__getitem__, nodes.tolist()))
    lens = np.fromiter([len(x) >> 3 if x else 0 for x in sel], dtype=np.int64, count=len(sel))
    if not lens.any():
        return _EMPTY, lens
    return np.frombuffer(b"".join([x for x in sel if x]), dtype=np.int64), lens


def _kept(lens: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Run lengths after keeping the entries ``ok`` of runs of ``lens`` (entry after entry)."""
    return np.bincount(np.repeat(np.arange(len(lens)), lens)[ok], minlength=len(lens))


def _attrs(state: GraphState, cols: _Cols, kind: str, nodes: np.ndarray, t: int) -> list[dict]:
    """The stored attribute dicts of ``nodes`` valid at ``t`` (shared, not copied: see ``Subgraph``)."""
    stored = state.tables[kind].attrs
    at = _rows_at(cols, kind, nodes, t) if len(nodes) else _EMPTY
    rows = at.tolist()
    if kind == ACTIVITY:
        return _activity_attrs(state, cols, nodes, at, rows)
    if len(rows) and min(rows) >= 0:
        return list(map(stored.__getitem__, rows))
    return [stored[r] if r >= 0 else {} for r in rows]


def _activity_attrs(state: GraphState, cols: _Cols, nodes: np.ndarray, at: np.ndarray, rows: list[int]) -> list[dict]:
    """``_attrs`` of activities: rows kept as columns only (``GraphState.row_attrs``) get a dict
    rebuilt from column gathers, the others their stored dict."""
    tab = state.tables[ACTIVITY]
    stored = tab.attrs
    if all(r < 0 or stored[r] is not None for r in rows):
        return [stored[r] if r >= 0 else {} for r in rows]
    safe = np.maximum(at, 0)
    strings = state.string_array()
    cnames = state.tables[CONTACT].names
    contacts = [cnames[c] for c in cols(ACTIVITY, "refs", _CONTACT_J)[safe].tolist()]
    types = strings[cols(ACTIVITY, "ttype")[safe]].tolist()
    pages = strings[cols(ACTIVITY, "tpage")[safe]].tolist()
    times = cols(ACTIVITY, "vt")[safe].tolist()
    names = tab.names
    out = []
    for k, (g, r) in enumerate(zip(nodes.tolist(), rows)):
        if r < 0:
            out.append({})
            continue
        a = stored[r]
        if a is not None:
            out.append(a)
            continue
        a = {"activity_id": names[g], "contact_id": contacts[k], "type": types[k], "timestamp": times[k]}
        if pages[k] is not None:
            a["page"] = pages[k]
        out.append(a)
    return out


def _timelines(state: GraphState, cols: _Cols, contacts: np.ndarray, t: int) -> Timelines:
    """Every contact's timeline as of ``t``, as one ``TimelineBlock`` for the whole read."""
    rows, lens = _gather(state.tables[CONTACT].rev[HAD_ACTIVITY_CODE], contacts)
    if len(rows):
        ok = (cols(ACTIVITY, "vt")[rows] <= t) & (cols(ACTIVITY, "ve")[rows] > t)
        if not ok.all():
            rows, lens = rows[ok], _kept(lens, ok)
    block = TimelineBlock(cols(ACTIVITY, "vt")[rows], cols(ACTIVITY, "ttype")[rows], cols(ACTIVITY, "tpage")[rows],
                          state.string_array())
    return Timelines(block, lens)


def _orders(state: GraphState, companies: np.ndarray, t: int) -> Orders:
    """Every company's orders as of ``t``, gathered from the cached ``order_rows`` of each."""
    counted, rows_of_company = state.corders, state.order_rows
    sel = [rows_of_company(i) if i in counted else b"" for i in companies.tolist()]
    lens = np.fromiter(map(len, sel), dtype=np.int64, count=len(sel)) // 24
    rows = np.frombuffer(b"".join(sel), dtype=np.int64).reshape(-1, 3)
    ok = (rows[:, 0] <= t) & (rows[:, 1] > t)
    if not ok.all():
        rows, lens = rows[ok], _kept(lens, ok)
    return Orders(rows[:, 0].copy(), rows[:, 2].view(np.float64).copy(), lens)


def _assemble(state: GraphState, cols: _Cols, t: int, nodes: dict[str, np.ndarray],
              per: list[tuple[list, list, list]], n_seeds: int) -> Subgraph:
    """``per[code]`` = (source local indices, destination local indices, times) of base type ``code``."""
    g = Subgraph(as_of=t, seeds=np.arange(n_seeds, dtype=np.int64))
    for nt in NODE_TYPES:
        names = state.tables[nt].names
        g.node_ids[nt] = list(map(names.__getitem__, nodes[nt].tolist()))
        g.attrs[nt] = _attrs(state, cols, nt, nodes[nt], t)
    g.timelines = _timelines(state, cols, nodes[CONTACT], t)
    g.orders = _orders(state, nodes[COMPANY], t)
    g.careers = careers(state, nodes[CONTACT], t)
    for code in range(NB):
        src, dst, tim = per[code]
        if src:
            arr = np.stack([np.concatenate(src), np.concatenate(dst)]).astype(np.int64, copy=False)
            times = np.concatenate(tim).astype(np.int64, copy=False)
        else:
            arr, times = np.zeros((2, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
        g.edges[ETYPES[code]] = arr
        g.edge_time[ETYPES[code]] = times
        g.edges[ETYPES[code + NB]] = arr[::-1].copy()
        g.edge_time[ETYPES[code + NB]] = times.copy()
    return g


class _Bfs:
    """One extraction: local numbering, BFS levels and the emitted edges."""

    def __init__(self, state: GraphState, cols: _Cols, t: int, hops: int, activity_cut: Optional[int] = None) -> None:
        self.state, self.cols, self.t, self.hops = state, cols, t, hops
        self.activity_cut = activity_cut
        self.marks = {k: _marks(state, k) for k in NODE_TYPES}
        self.found: dict[str, list[np.ndarray]] = {k: [] for k in NODE_TYPES}
        self.count = {k: 0 for k in NODE_TYPES}
        self.per: list[tuple[list, list, list]] = [([], [], []) for _ in range(NB)]
        self.next: dict[str, list[np.ndarray]] = {}
        self.expand = False
        self.last = False
        self.start: dict[str, int] = {}

    def reset(self) -> None:
        for k, arrays in self.found.items():
            if arrays:
                self.marks[k][np.concatenate(arrays)] = 0

    def discover(self, kind: str, nodes: np.ndarray) -> np.ndarray:
        """Local indices of ``nodes``, numbering the new ones (they form the next frontier)."""
        m = self.marks[kind]
        loc = m[nodes]
        fresh = loc == 0
        if fresh.any():
            new = np.unique(nodes[fresh])
            c = self.count[kind]
            m[new] = np.arange(c + 1, c + 1 + len(new))
            self.count[kind] = c + len(new)
            self.found[kind].append(new)
            if self.expand:
                self.next.setdefault(kind, []).append(new)
            loc = m[nodes]
        return loc - 1

    def emit(self, code: int, src: np.ndarray, dst: np.ndarray, times: np.ndarray) -> None:
        if len(src):
            s, d, tm = self.per[code]
            s.append(src)
            d.append(dst)
            tm.append(times)

    def unscanned(self, kind: str, local: np.ndarray) -> np.ndarray:
        """Mask of nodes at distance ``hops`` (found in the last level, never scanned)."""
        return local >= self.start[kind]

    def scan(self, kind: str, frontier: np.ndarray) -> None:
        """Emit the edges of ``frontier`` nodes (edges to scanned nodes once, from the base source)."""
        state, cols, t, last = self.state, self.cols, self.t, self.last
        deletes = state.deletes
        tab = state.tables[kind]
        mine = self.marks[kind][frontier] - 1
        refs = REFS[kind]
        if refs:   # holder side: the valid version names its targets
            rows = _rows_at(cols, kind, frontier, t)
            ok = rows >= 0
            if ok.any():
                rows, me = rows[ok], mine[ok]
                times = cols(kind, "vt")[rows]
                for j, ref in enumerate(refs):
                    target = cols(kind, "refs", j)[rows]
                    has = target >= 0
                    if deletes and has.any():
                        _drop(has, _hidden(state, cols, ref.target, target[has], t))
                    if not has.any():
                        continue
                    other = self.discover(ref.target, target[has])
                    if ref.holder_is_src:
                        self.emit(ref.etype, me[has], other, times[has])
                    elif last:
                        keep = self.unscanned(ref.target, other)
                        self.emit(ref.etype, other[keep], me[has][keep], times[has][keep])
        for base, lists in tab.rev.items():   # target side: the holder rows that name the node
            rows, lens = _gather(lists, frontier)
            if not len(rows):
                continue
            hk, _, ref = HOLDER_OF[base]
            vt = cols(hk, "vt")[rows]
            ok = (vt <= t) & (cols(hk, "ve")[rows] > t)
            if hk == ACTIVITY and self.activity_cut is not None:   # the window: older activities are not nodes
                ok &= vt > self.activity_cut
            if deletes and hk == ACTIVITY and ok.any():   # a valid row's holder is alive, unless its contact is not
                _drop(ok, _dead(state, cols, CONTACT, cols(ACTIVITY, "refs", _CONTACT_J)[rows[ok]], t))
            me = np.repeat(mine, lens)[ok]
            times = vt[ok]
            other = self.discover(hk, cols(hk, "vn")[rows[ok]])
            if not ref.holder_is_src:
                self.emit(base, me, other, times)
            elif last:
                keep = self.unscanned(hk, other)
                self.emit(base, other[keep], me[keep], times[keep])
        if kind == COMPANY:
            self.scan_rings(tab, frontier, mine)

    def scan_rings(self, tab, frontier: np.ndarray, mine: np.ndarray) -> None:
        state, t = self.state, self.t
        names, cnodes, peers = tab.names, state.cnodes, state.rings.peer_arrays
        nids = [names[g] for g in frontier.tolist()]
        for r, code in enumerate(RING_KINDS):
            found = [peers(r, nid, t) if nid in cnodes else _NO_PEERS for nid in nids]
            lens = np.fromiter([len(p[0]) for p in found], dtype=np.int64, count=len(found))
            if not lens.any():
                continue
            me = np.repeat(mine, lens)
            times = np.concatenate([p[1] for p in found])
            other = self.discover(COMPANY, np.concatenate([p[0] for p in found]))
            self.emit(code, me, other, times)
            if self.last:
                keep = self.unscanned(COMPANY, other)
                self.emit(code, other[keep], me[keep], times[keep])

    def run(self, frontier: dict[str, np.ndarray]) -> None:
        for d in range(self.hops):
            self.last = d == self.hops - 1
            self.expand = not self.last
            self.start = dict(self.count)
            self.next = {}
            for kind in NODE_TYPES:
                nodes = frontier.get(kind)
                if nodes is not None and len(nodes):
                    self.scan(kind, nodes)
            frontier = {k: np.concatenate(v) for k, v in self.next.items()}

    def nodes(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) if v else _EMPTY for k, v in self.found.items()}


def subgraph(state: GraphState, seeds: Sequence[str], t: int, hops: int = 2,
             activity_days: Optional[float] = None) -> Subgraph:
    """Union of exact ``hops``-hop neighbourhoods of the seed contacts that exist at ``t``.

    Every edge with an endpoint within ``hops - 1`` is emitted once: by its base source when
    that is scanned (within ``hops - 1``), else by its destination. ``activity_days``: an
    activity is found only when its version time is after ``activity_cut`` (the rest of the
    read as it was: ``Subgraph.recent_activities`` of the whole union).
    """
    ctab = state.tables[CONTACT]
    seed_ids: list[int] = []
    seen: set[int] = set()
    for s in seeds:
        i = ctab.ids.get(s)
        if i is None or ctab.first[i] > t or i in seen or (state.deletes and not state.alive(CONTACT, i, t)):
            continue
        seen.add(i)
        seed_ids.append(i)
    cols = _Cols(state)
    bfs = _Bfs(state, cols, t, hops, activity_cut(t, activity_days))
    try:
        frontier = {}
        if seed_ids:
            g = np.array(seed_ids, dtype=np.int64)
            bfs.marks[CONTACT][g] = np.arange(1, len(g) + 1)
            bfs.found[CONTACT].append(g)
            bfs.count[CONTACT] = len(g)
            frontier[CONTACT] = g
        bfs.run(frontier)
        return _assemble(state, cols, t, bfs.nodes(), bfs.per, len(seed_ids))
    finally:
        bfs.reset()
        cols.close()


def snapshot(state: GraphState, t: int) -> Subgraph:
    """Every node and edge as of ``t`` (node ids sorted per type; edges from their holder rows)."""
    cols = _Cols(state)
    try:
        nodes: dict[str, np.ndarray] = {}
        local: dict[str, np.ndarray] = {}
        for nt in NODE_TYPES:
            names = state.tables[nt].names
            present = np.nonzero(cols(nt, "first") <= t)[0]
            if state.deletes:
                present = present[~_hidden(state, cols, nt, present, t)]
            present = present.tolist()
            order = np.array(sorted(present, key=names.__getitem__), dtype=np.int64)
            nodes[nt] = order
            loc = np.full(len(names), -1, dtype=np.int64)
            loc[order] = np.arange(len(order))
            local[nt] = loc
        per: list[tuple[list, list, list]] = [([], [], []) for _ in range(NB)]
        for code, (hk, j, ref) in HOLDER_OF.items():
            vt = cols(hk, "vt")
            target = cols(hk, "refs", j)
            ok = (vt <= t) & (cols(hk, "ve") > t) & (target >= 0)
            holder = local[hk][cols(hk, "vn")[ok]]
            other = local[ref.target][target[ok]]
            times = vt[ok]
            if state.deletes:   # only live nodes are numbered: keep the edges between two of them
                keep = (holder >= 0) & (other >= 0)
                holder, other, times = holder[keep], other[keep], times[keep]
            src, dst = (holder, other) if ref.holder_is_src else (other, holder)
            per[code][0].append(src)
            per[code][1].append(dst)
            per[code][2].append(times)
        ctab = state.tables[COMPANY]
        for r, code in enumerate(RING_KINDS):   # each company's peers: both directions overall
            src, dst, tim = [], [], []
            loc = local[COMPANY]
            for g in nodes[COMPANY].tolist():
                nid = ctab.names[g]
                if nid not in state.cnodes:
                    continue
                for peer, et in state.rings.peers(r, nid, t):
                    src.append(loc[g])
                    dst.append(loc[ctab.ids[peer]])
                    tim.append(et)
            if src:
                per[code][0].append(np.array(src, dtype=np.int64))
                per[code][1].append(np.array(dst, dtype=np.int64))
                per[code][2].append(np.array(tim, dtype=np.int64))
        return _assemble(state, cols, t, nodes, per, 0)
    finally:
        cols.close()
