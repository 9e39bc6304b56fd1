"""The account stage's view of an entity's last version, to merge partial updates onto and to
tell a re-sent snapshot row from a change (docs/bring-your-own-crm.md, "Partial updates").

Stage 1 cannot merge: the entity's versions live in the graph store of the worker that owns its
account. ``Resolver`` reads the version valid at a change's time from the store, or from an
earlier event of the same batch (not applied yet), whichever is newer.

A partial update is merged onto the version known *when it is applied*: a whole version that
arrives later but is dated before it does not flow into it. Whole records and deletes are
order-free (each is a version at its own time); a feed of partial updates should deliver the
changes of one entity in order, as CDC feeds do (Salesforce CDC and Debezium keep per-key order).
"""
from __future__ import annotations

from typing import Optional, Union

from leadpulse.graph_store.base import GraphStore
from leadpulse.graph_store.records import to_record
from leadpulse.schemas.events import Delete, InputEvent
from leadpulse.schemas.parse import ParseError
from leadpulse.schemas.partial import ID_FIELD, TIME_FIELD, Partial, merge
from leadpulse.schemas.tables import format_time
from leadpulse.schemas.timeutil import from_micros, to_micros
from leadpulse.stream.ingest import Accepted, Snapshot

#: store attributes that are derived lists, not fields of the record
_DERIVED = ("timeline", "orders")
#: contract fields holding times (the store keeps them as integer micros)
_TIMES = ("updated_at", "created_at", "close_date", "timestamp")
#: a re-sent snapshot row equal to the version it meets: nothing to apply
DUPLICATE = None


class Resolver:
    """Turns a batch's items into whole events, in batch order.

    Args:
        store: the worker's graph store (read as of each change's time).
    """

    def __init__(self, store: GraphStore):
        self.store = store
        #: (kind, id) -> [(time micros, attrs or None for a delete)] of this batch's events so far
        self._batch: dict[tuple[str, str], list[tuple[int, Optional[dict]]]] = {}

    def resolve(self, item: Accepted) -> Union[InputEvent, ParseError, None]:
        """The event to apply for ``item``; a ``ParseError`` for a partial update that cannot be
        merged (its entity unknown as of its time, or the merge breaks the contract); ``None``
        for a snapshot row that repeats the version it meets."""
        if isinstance(item, Partial):
            event = self._merge(item)
        elif isinstance(item, Snapshot):
            event = DUPLICATE if self._repeats(item.event) else item.event
        else:
            event = item
        if event is not None and not isinstance(event, ParseError):
            self._remember(event)
        return event

    def _merge(self, p: Partial) -> Union[InputEvent, ParseError]:
        base = self._version(p.kind, p.entity_id, to_micros(p.event_time))
        if base is None:
            return ParseError(ID_FIELD[p.kind], f"unknown entity: partial update of {p.kind} {p.entity_id}, which "
                                            f"has no version as of {format_time(p.event_time)} (never seen "
                                            "whole, or deleted)")
        merged = merge(as_record(base), p)
        if isinstance(merged, ParseError):
            return ParseError(merged.field, f"merge: {merged.reason}", merged.details)
        return merged

    def _repeats(self, event: InputEvent) -> bool:
        record = to_record(event)
        base = self._version(record.kind, record.id, record.time)
        if base is None:
            return False
        time_field = TIME_FIELD[record.kind]
        return _without(base, time_field) == _without(record.attrs, time_field)

    def _version(self, kind: str, entity_id: str, t: int) -> Optional[dict]:
        """Attributes (store form) of the version valid at ``t``; None if absent or deleted."""
        stored = self.store.node(kind, entity_id, t)
        stored_time = stored.get(TIME_FIELD[kind]) if stored is not None else None
        best = (stored_time if stored_time is not None else -1 << 62, stored)
        for when, attrs in self._batch.get((kind, entity_id), ()):
            if when <= t and when >= best[0]:
                best = (when, attrs)
        return best[1]

    def _remember(self, event: InputEvent) -> None:
        if isinstance(event, Delete):
            self._batch.setdefault((event.entity, event.entity_id), []).append(
                (to_micros(event.deleted_at), None))
            return
        record = to_record(event)
        self._batch.setdefault((record.kind, record.id), []).append((record.time, record.attrs))


def _without(attrs: dict, time_field: str) -> dict:
    return {k: v for k, v in attrs.items() if k != time_field and k not in _DERIVED}


def as_record(attrs: dict) -> dict:
    """A stored version as a contract record (times back to RFC 3339)."""
    out = {}
    for k, v in attrs.items():
        if k in _DERIVED:
            continue
        out[k] = format_time(from_micros(v)) if k in _TIMES and isinstance(v, int) else v
    return out
