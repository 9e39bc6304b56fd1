"""Erasure of a person (docs/graph_store.md, "Erasure"): what goes, what it changes, the state without it.

Unlike a delete (a tombstone that hides an entity *after* its time and keeps its history), an
erasure removes the person at *every* time: afterwards every read answers as if the records had
never been applied. What goes:

* every row (versions and tombstones) of the contact;
* every row of each activity and order *one of whose stored versions* names it (``contact_id``):
  a re-delivered duplicate naming it was never applied, so it names nothing;
* the ``contact_id`` attribute of the opportunity versions naming it (the opportunity is the
  account's: it stays).

The state is rebuilt from the remaining rows rather than patched: rows, reverse lists, order
attribution, stub existence and the interned strings all depend on what was applied, and a
rebuild (like ``GraphState.without_partition``) gets every one of them right by construction.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

from leadpulse.graph_store import affected
from leadpulse.graph_store.records import EXTRA_REFS, REFS, Record
from leadpulse.graph_store.state import HAD_ACTIVITY_CODE, PLACED_CODE, GraphState
from leadpulse.graph_store.table import rows_of
from leadpulse.schemas.types import ACTIVITY, COMPANY, CONTACT, OPPORTUNITY, ORDER

#: the opportunity attribute that may name a contact (not a reference: no edge, no stub)
OPPORTUNITY_CONTACT = "contact_id"


class Erasure(NamedTuple):
    """What erasing ``contact_id`` takes out of a state."""
    contact_id: str
    rows: dict[str, frozenset[int]]   # contact, activity, order -> rows removed
    stripped: frozenset[int]          # opportunity rows that lose their ``contact_id``


def plan(state: GraphState, contact_id: str) -> Optional[Erasure]:
    """The erasure of ``contact_id`` from ``state``; None when the state holds no trace of it."""
    ctab = state.tables[CONTACT]
    rows: dict[str, frozenset[int]] = {}
    cidx = ctab.ids.get(contact_id)
    if cidx is not None:
        rows[CONTACT] = frozenset(ctab.rows(cidx))
        # ``rev`` keeps every holder row that ever named the contact: all its activities and orders
        for kind, code in ((ACTIVITY, HAD_ACTIVITY_CODE), (ORDER, PLACED_CODE)):
            tab = state.tables[kind]
            nodes = {tab.vn[h] for h in rows_of(ctab.rev[code][cidx])}
            rows[kind] = frozenset(r for n in nodes for r in tab.rows(n))
    otab = state.tables[OPPORTUNITY]
    stripped = frozenset(r for r in range(len(otab.vt))
                         if state.row_attrs(otab, r).get(OPPORTUNITY_CONTACT) == contact_id)
    if cidx is None and not stripped:
        return None
    return Erasure(contact_id, rows, stripped)


def strip(attrs: dict) -> dict:
    """An opportunity version's attributes without the person."""
    return {k: v for k, v in attrs.items() if k != OPPORTUNITY_CONTACT}


def removed(state: GraphState, erasure: Erasure) -> Iterator[tuple[Record, int]]:
    """Every row the erasure removes, as ``(record, partition mask)`` (the RocksDB keys to delete)."""
    for kind, rows in erasure.rows.items():
        tab = state.tables[kind]
        for r in sorted(rows):
            yield Record(kind, tab.names[tab.vn[r]], tab.vt[r], state.row_attrs(tab, r)), tab.parts[r]


def rewritten(state: GraphState, erasure: Erasure) -> Iterator[tuple[Record, int]]:
    """The opportunity versions that lose the person's id, as they are after the erasure."""
    tab = state.tables[OPPORTUNITY]
    for r in sorted(erasure.stripped):
        yield Record(OPPORTUNITY, tab.names[tab.vn[r]], tab.vt[r], strip(state.row_attrs(tab, r))), tab.parts[r]


def affected_contacts(state: GraphState, erasure: Erasure, as_of: int, hops: int = 2) -> set[str]:
    """The other contacts whose ``hops``-layer output as of ``as_of`` the erasure can change.

    The ``affected_leads`` rule on the graph *before* the erasure: erasing only removes nodes,
    edges and attributes (no edge appears: the tombstones that go belong to erased nodes), so
    every path of the graph after it exists before. Feature nodes: the erased nodes, the other
    contacts whose timelines lose an activity, the opportunities that lose the attribute, the
    companies whose order lists lose an order and the contacts who worked there at the order's
    time (their careers count it: ``career.py``), all as of ``as_of``; edge nodes: the ends of the
    edges removed as of ``as_of`` and every node an erased row dated up to ``as_of`` names. The
    latter may cease to exist at ``as_of`` (a stub only the person's records named), which only
    touches it and the erased nodes it hangs from, so it is in the set when it is a contact
    (its score goes, as a deleted contact's does).
    """
    feats: set = {(CONTACT, erasure.contact_id)}
    edges: set = set()
    tables = state.tables
    for kind, rows in erasure.rows.items():
        tab = tables[kind]
        for r in rows:
            feats.add((kind, tab.names[tab.vn[r]]))
            if tab.vt[r] > as_of:
                continue
            valid = as_of < tab.ve[r]
            for j, ref in enumerate(REFS[kind]):
                other = tab.refs[j][r]
                if other >= 0:
                    end = (ref.target, tables[ref.target].names[other])
                    edges.add(end)
                    if valid and kind == ACTIVITY and ref.target == CONTACT:
                        feats.add(end)
            for field, target in EXTRA_REFS.get(kind, ()):
                value = state.row_attrs(tab, r).get(field)
                if value is not None:
                    edges.add((target, value))
        if kind == ORDER:
            for oidx in {tab.vn[r] for r in rows}:
                for company, (tv, _, end, _) in state.oattr.get(oidx, ()):
                    if tv <= as_of < end:   # its order list, and the careers that count the order
                        feats.add((COMPANY, company))
                        feats.update((CONTACT, c) for c in state.staff_at(tables[COMPANY].ids[company], tv))
    otab = tables[OPPORTUNITY]
    for r in erasure.stripped:
        if otab.vt[r] <= as_of < otab.ve[r]:
            feats.add((OPPORTUNITY, otab.names[otab.vn[r]]))
    found = affected.affected(state, feats, edges, as_of, hops)
    found.discard(erasure.contact_id)
    return found


def without(state: GraphState, erasure: Erasure) -> GraphState:
    """A new state holding every row of ``state`` except the erased ones (bulk load: O(rows))."""
    fresh = GraphState(*state.options)
    fresh.loading = True
    batch: list[Record] = []
    mask = None
    for kind, tab in state.tables.items():
        gone = erasure.rows.get(kind, frozenset())
        stripped = erasure.stripped if kind == OPPORTUNITY else frozenset()
        names, vn, vt, parts = tab.names, tab.vn, tab.vt, tab.parts
        for r in range(len(vt)):
            if r in gone:
                continue
            attrs = state.row_attrs(tab, r)
            if r in stripped:
                attrs = strip(attrs)
            if parts[r] != mask:   # ``apply_batch`` takes one mask per call
                if batch:
                    fresh.apply_batch(batch, mask)
                    batch = []
                mask = parts[r]
            batch.append(Record(kind, names[vn[r]], vt[r], attrs))
    if batch:
        fresh.apply_batch(batch, mask)
    fresh.finish_load()
    return fresh
