"""The affected-lead rule over a ``GraphState``: which contacts' GNN outputs an applied change can
move (docs/graph_store.md, "affected_leads").
"""
from __future__ import annotations

from typing import Iterable, Optional

from leadpulse.graph_store.records import REFS
from leadpulse.graph_store.rings import INF
from leadpulse.graph_store.state import HAD_ACTIVITY_CODE, GraphState
from leadpulse.graph_store.table import HOLDER_OF, at_only, held_at, narrow, row_span
from leadpulse.schemas.types import ACTIVITY, CONTACT, NODE_TYPES


def affected(state: GraphState, feature_nodes: Iterable, edge_nodes: Iterable, t: int,
             hops: int = 2, memo: Optional[dict] = None) -> set[str]:
    """Contacts within ``hops`` of a feature change or within ``hops - 1`` of an edge change.

    The contacts within ``k`` hops of a set of nodes are the union of those within ``k`` hops of
    each, so each node's reach is computed once per ``(node, k)`` and kept in ``memo`` with the
    interval of time around ``t`` over which it holds: the events of one batch mostly touch the
    same few companies and contacts, and an event's search is then the union of a few kept sets
    rather than a walk over every colleague, opportunity and peer again. ``memo`` may be shared
    by calls on an unchanged graph at any times: the stream searches one batch as of each owned
    partition's watermark, and a reach found as of one mostly holds for the others.
    """
    memo = {} if memo is None else memo
    found: set[str] = set()
    for nodes, k in ((feature_nodes, hops), (edge_nodes, hops - 1)):
        if k < 0:
            continue
        for ntype, nid in nodes:
            idx = state.get(ntype, nid, t)
            if idx is not None:
                found |= _reach(state, ntype, idx, k, t, memo)[0]
    return found


def _reach(state: GraphState, ntype: str, idx: int, k: int, t: int, memo: dict) -> tuple[frozenset, int, int]:
    """The names of the contacts within ``k`` hops of node ``idx`` at ``t`` (itself included),
    and ``[lo, hi)`` around ``t`` over which they are the same: the intersection of the
    intervals over which each step's neighbour list holds (``GraphState.edges_at``'s ``span``)."""
    key = (ntype, idx, k)
    kept = memo.get(key)
    if kept is not None:
        for got in kept:
            if got[1] <= t < got[2]:
                return got
    names = state.tables[CONTACT].names
    near: set = {names[idx]} if ntype == CONTACT else set()
    span = [-INF, INF]
    if k == 1:
        near.update(names[i] for i in _contacts_at(state, ntype, idx, t, span))
    elif k >= 2:
        # two hops out, a contact's own activities can be passed over: an activity's one contact
        # at any time is the contact it was found from, already counted. That list grows with
        # the person's history; everything else a contact touches (company, opportunities) does not.
        skip = _OWN_TIMELINE if k == 2 else _NOTHING
        for _, otype, other, _ in state.edges_at(ntype, idx, t, skip, span):
            part, lo, hi = _reach(state, otype, other, k - 1, t, memo)
            near |= part
            narrow(span, lo, hi)
    got = (frozenset(near), span[0], span[1])
    if kept is None:
        memo[key] = [got]
    else:
        kept.append(got)
    return got


_NOTHING: frozenset = frozenset()
#: the base edge type of a contact's activities (``GraphState.edges_at``'s ``skip``)
_OWN_TIMELINE = frozenset({HAD_ACTIVITY_CODE})

#: per node type: (reference fields of its versions that name a contact, edge types whose
#: holder is a contact and whose target is it) — the only ways a node neighbours a contact
_TO_CONTACT = {kind: ([j for j, ref in enumerate(REFS[kind]) if ref.target == CONTACT],
                      [code for code, (hk, _, ref) in HOLDER_OF.items() if hk == CONTACT and ref.target == kind])
               for kind in NODE_TYPES}
# what ``_OWN_TIMELINE`` relies on: an activity neighbours no contact but the one it names
assert len(_TO_CONTACT[ACTIVITY][0]) == 1 and not _TO_CONTACT[ACTIVITY][1]


def _contacts_at(state: GraphState, ntype: str, idx: int, t: int, span: list) -> list[int]:
    """The contacts adjacent to a node at ``t`` (the part of ``edges_at`` the last step needs;
    an activity or order names one, a company is named by its staff), ``span`` narrowed as in
    ``edges_at``."""
    refs, held_by = _TO_CONTACT[ntype]
    tab = state.tables[ntype]
    out = []
    if refs:
        r = tab.row_at(idx, t)
        row_span(tab, r, t, span)
        if r >= 0:
            out += [tab.refs[j][r] for j in refs if tab.refs[j][r] >= 0]
    if held_by:
        ctab = state.tables[CONTACT]
        vn = ctab.vn
        for code in held_by:
            held = tab.rev[code][idx]
            if held:
                out += [vn[h] for h in held_at(held, ctab.vt, ctab.ve, t, span)]
    if state.deletes:   # a contact an activity or order names may be deleted (staff rows end)
        at_only(span, t)
        if refs:
            ctab = state.tables[CONTACT]
            out = [c for c in out if not ctab.dead(c, t)]
    return out
