"""A person's history follows them to their new account (docs/stream.md, "Job changes").

Every worker replicates companies, contacts, opportunities and orders, but keeps activities
only for the accounts it owns. When a contact's new version names another company, the router
sends that version to the new account *and* to the old one (a *departure*, ``Forward.departure``).
The account stage that owns the old account then passes the person's activities (every row it
holds, versions and deletes, at every time) to the account topic under the new company
(*carried* records), inside the same send → flush → commit checkpoint as its scores: a crash
replays the departure and carries again, and the receiver's store ignores what it already has.

Why this is complete: the router sends a person's activities to the account of their newest
version, so an activity sent to the old account before the router learnt of the move sits before
the departure in the old account's partition (one producer, one partition: in order), and the
departure carries it; an activity the router sees after the move goes to the new account
directly. The new owner therefore holds every activity of the person once the departure is
processed, and the old account's leads, scored as of a watermark the departure moved past the
move, no longer have the person as a colleague.
"""
from __future__ import annotations

from typing import Union

from leadpulse.graph_store.base import GraphStore
from leadpulse.graph_store.history import activity_rows
from leadpulse.graph_store.records import TOMB, Record
from leadpulse.schemas.events import Delete, InputEvent
from leadpulse.schemas.parse import ParseError, parse_record
from leadpulse.schemas.timeutil import from_micros
from leadpulse.stream.merge import as_record

ACTIVITIES = "crm.activities"


def event_of(record: Record, contact_id: str) -> Union[InputEvent, ParseError]:
    """The input event a stored activity row came from (a tombstone: its delete, with the
    person as the routing hint)."""
    if record.attrs is TOMB:
        return Delete(entity="activity", entity_id=record.id, deleted_at=from_micros(record.time),
                      contact_id=contact_id)
    return parse_record(ACTIVITIES, as_record(record.attrs))


def person_activities(store: GraphStore, contact_id: str) -> list[InputEvent]:
    """What a departure carries: every activity row of the person in ``store``, as events."""
    out = []
    for record in activity_rows(store.state, contact_id):
        event = event_of(record, contact_id)
        if not isinstance(event, ParseError):  # stored rows passed the contract when applied
            out.append(event)
    return out
