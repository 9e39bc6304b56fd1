"""A person's activity history as stored rows, for a worker to hand to another one.

Activities are the one entity a worker keeps only for the accounts it owns (companies,
contacts, opportunities and orders are replicated to every worker: docs/stream.md). When a
person changes jobs, the worker of their old account passes their activities to the new
account (``leadpulse.stream.carry``); this reads what it passes: every row, versions and
tombstones, of every activity that ever named the person, at every time, so the receiver can
answer every as-of read of that person as the sender does. And the time of a node's newest
version, which tells a worker whether its record of who owns a lead is behind its store.
"""
from __future__ import annotations

from typing import Optional

from leadpulse.graph_store.records import Record
from leadpulse.graph_store.state import HAD_ACTIVITY_CODE, GraphState
from leadpulse.graph_store.table import rows_of
from leadpulse.schemas.types import ACTIVITY, CONTACT


def activity_rows(state: GraphState, contact_id: str) -> list[Record]:
    """Every stored row of every activity one of whose versions names ``contact_id``, in
    (activity id, time) order; tombstone rows have ``attrs is records.TOMB``."""
    ctab = state.tables[CONTACT]
    cidx = ctab.ids.get(contact_id)
    if cidx is None:
        return []
    tab = state.tables[ACTIVITY]
    # ``rev`` keeps every holder row that ever named the contact (as erasure relies on)
    nodes = sorted({tab.vn[h] for h in rows_of(ctab.rev[HAD_ACTIVITY_CODE][cidx])}, key=lambda n: tab.names[n])
    out = []
    for n in nodes:
        for r in tab.rows(n):  # oldest first
            out.append(Record(ACTIVITY, tab.names[n], tab.vt[r], state.row_attrs(tab, r)))
    return out


def newest_version_time(state: GraphState, kind: str, node_id: str) -> Optional[int]:
    """The time of the node's newest stored version (deletes left aside); None if it has none."""
    tab = state.tables[kind]
    idx = tab.ids.get(node_id)
    if idx is None:
        return None
    r = tab.latest[idx]
    while r >= 0 and r in tab.tombs:
        r = tab.vp[r]
    return tab.vt[r] if r >= 0 else None
