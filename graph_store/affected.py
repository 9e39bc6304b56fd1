"""The affected-lead rule over a ``GraphState``: which contacts' GNN outputs an applied change can
move (docs/graph_store.md, "affected_leads").
"""
from __future__ import annotations

from typing import Iterable, Optional

from leadpulse.graph_store.records import REFS
from leadpulse.graph_store.state import HAD_ACTIVITY_CODE, GraphState
from leadpulse.graph_store.table import HOLDER_OF, rows_of
from leadpulse.schemas.types import ACTIVITY, CONTACT, NODE_TYPES


def affected(state: GraphState, feature_nodes: Iterable, edge_nodes: Iterable, t: int,
             hops: int = 2, memo: Optional[dict] = None) -> set[str]:
    """Contacts within ``hops`` of a feature change or within ``hops - 1`` of an edge change.

    ``memo`` (node -> its neighbours at ``t``) may be shared by calls at the same ``t`` on an
    unchanged graph: the events of one batch mostly touch the same few companies, whose
    neighbour lists (every colleague, opportunity and peer) are the costly part.
    """
    memo = {} if memo is None else memo
    dist: dict = {}
    levels: list[list] = [[] for _ in range(hops + 1)]
    for ntype, nid in feature_nodes:
        idx = state.get(ntype, nid, t)
        if idx is not None and (ntype, idx) not in dist:
            dist[(ntype, idx)] = 0
            levels[0].append((ntype, idx))
    if hops >= 1:
        for ntype, nid in edge_nodes:
            idx = state.get(ntype, nid, t)
            if idx is not None and (ntype, idx) not in dist:
                dist[(ntype, idx)] = 1
                levels[1].append((ntype, idx))
    for d in range(hops):
        last = d == hops - 1  # only contacts found by the last step matter
        # the step before it can pass over a contact's activities: an activity's one contact at t
        # is the contact it was found from, already counted. That list grows with the person's
        # history; everything else a contact touches (company, opportunities) does not.
        skip = _OWN_TIMELINE if d == hops - 2 else _NOTHING
        for node in levels[d]:
            mkey = (node, last, bool(skip))
            near = memo.get(mkey)
            if near is None:
                near = memo[mkey] = _contacts_at(state, *node, t) if last else \
                    [(otype, other) for _, otype, other, _ in state.edges_at(*node, t, skip)]
            for key in near:
                if key not in dist:
                    dist[key] = d + 1
                    levels[d + 1].append(key)
    names = state.tables[CONTACT].names
    return {names[i] for (ntype, i) in dist if ntype == CONTACT}


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


def _contacts_at(state: GraphState, ntype: str, idx: int, t: int) -> list[tuple[str, int]]:
    """The contacts adjacent to a node at ``t`` (the part of ``edges_at`` the last BFS step needs;
    an activity or order names one, a company is named by its staff)."""
    refs, held_by = _TO_CONTACT[ntype]
    tab = state.tables[ntype]
    out = []
    if refs:
        r = tab.row_at(idx, t)
        if r >= 0:
            out += [(CONTACT, tab.refs[j][r]) for j in refs if tab.refs[j][r] >= 0]
    if held_by:
        ctab = state.tables[CONTACT]
        vt, ve, vn = ctab.vt, ctab.ve, ctab.vn
        for code in held_by:
            held = tab.rev[code][idx]
            if held:
                out += [(CONTACT, vn[h]) for h in rows_of(held) if vt[h] <= t < ve[h]]
    if refs and state.deletes:   # a contact an activity or order names may be deleted (staff rows end)
        ctab = state.tables[CONTACT]
        out = [x for x in out if not ctab.dead(x[1], t)]
    return out
