"""Validation at the edge: raw Kafka records in, events or dead letters out.

Pure functions (no I/O), so every rejection rule is testable without a broker; the Faust
agents only move bytes in and out. A record is first decoded from its feed's format (whole
record, Kafka Connect envelope, Debezium change event, Salesforce-style change, tombstone:
``leadpulse.schemas.feeds``) into a change, then validated: a whole record becomes its event, a
delete a ``Delete``, a partial update a ``Partial`` (merged onto the entity's last version by
the account stage, which owns the graph), a Debezium snapshot row a ``Snapshot``.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Union

from leadpulse.schemas.events import DeadLetter, Delete, InputEvent
from leadpulse.schemas.feeds import FeedSpec, Patch, Removal, Upsert, decode_change
from leadpulse.schemas.parse import ParseError, parse_record
from leadpulse.schemas.partial import TIME_FIELD, Partial, parse_partial
from leadpulse.schemas.tables import format_time
from leadpulse.schemas.timeutil import to_micros
from leadpulse.schemas.topics import input_spec_for_topic

#: reason kind of an event dated further ahead of the worker's clock than the tolerance
FUTURE = "future"
#: reason kind of a delete the contract does not allow (an order)
DELETE = "delete"
_DEFAULT_FEED = FeedSpec()


@dataclass(frozen=True)
class Snapshot:
    """A row re-sent by a snapshot (Debezium ``op=r``): applied only when it differs from the
    entity's version as of its time, so a re-snapshot of rows without a time of their own (dated
    by the snapshot) changes nothing (docs/bring-your-own-crm.md)."""
    event: InputEvent

    @property
    def event_time(self) -> datetime:
        return self.event.event_time


#: what stage 1 hands to the router
Accepted = Union[InputEvent, Partial, Snapshot]


@dataclass(frozen=True)
class RawRecord:
    """One consumed record, as the broker delivered it.

    Args:
        topic: the topic it came from (the configured name).
        partition: its partition.
        offset: its offset in that partition.
        key: raw key bytes (None if the producer sent none).
        value: raw value bytes (None for a tombstone).
        timestamp: the record's Kafka timestamp (epoch seconds), when the broker gave one.
    """
    topic: str
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    timestamp: Optional[float] = None


def reason_kind(error: ParseError) -> str:
    """A low-cardinality label for metrics: the error type without the message."""
    return error.reason.split(":", 1)[0].strip() or "invalid"


def validate(record: RawRecord, contract_topic: str, now: Optional[datetime] = None,
             max_future: Optional[float] = None,
             feed: FeedSpec = _DEFAULT_FEED) -> Union[Accepted, tuple[DeadLetter, str]]:
    """Decode ``record`` from its feed's format and validate it against the contract of
    ``contract_topic`` (its default name).

    Args:
        now: the worker's wall clock (default: the current time); a dead letter's ``received_at``.
        max_future: seconds an event's time may be ahead of ``now``; a later one is rejected
            with reason kind ``future`` (docs/architecture.md#invariant-7). None: no bound.
        feed: the topic's format and field mapping (``LEADPULSE_FEEDS``).

    Returns the event (a ``Delete`` for a delete or tombstone), a ``Partial`` or a ``Snapshot``;
    or ``(dead letter, reason kind)``: never raises for any input bytes.
    """
    stamp = datetime.fromtimestamp(record.timestamp, timezone.utc) if record.timestamp else None
    parsed = _parse(contract_topic, decode_change(contract_topic, record.key, record.value, stamp, feed), record)
    if isinstance(parsed, ParseError):
        return dead_letter(record, str(parsed), now), reason_kind(parsed)
    if max_future is not None:
        now = now or datetime.now(timezone.utc)
        error = too_far_ahead(parsed, now, max_future)
        if error is not None:
            return dead_letter(record, error, now), FUTURE
    return parsed


def _parse(topic: str, change, record: RawRecord) -> Union[Accepted, ParseError]:
    if isinstance(change, ParseError):
        return change
    if isinstance(change, Upsert):
        event = parse_record(topic, change.record)
        return Snapshot(event) if change.snapshot and not isinstance(event, ParseError) else event
    if isinstance(change, Patch):
        return parse_partial(topic, change.record)
    if isinstance(change, Removal):
        return _delete(topic, change, record)
    return ParseError("", f"internal: unknown change {type(change).__name__}")


def _delete(topic: str, change: Removal, record: RawRecord) -> Union[Delete, ParseError]:
    spec = input_spec_for_topic(topic)
    kind = spec.model.kind  # type: ignore[attr-defined]
    if kind == "order":
        return ParseError("", f"{DELETE}: orders are the account's revenue facts and are not deleted; "
                              "erase a person with `leadpulse erase --contact ID`")
    hints = {k: v for k, v in (change.hints or {}).items() if k in ("contact_id", "company_id") and v}
    if kind == "activity" and "contact_id" not in hints and record.key:
        # the contract keys activities by their contact (the router needs it to find the account)
        hints["contact_id"] = record.key.decode("utf-8", "replace")
    try:
        return Delete(entity=kind, entity_id=change.entity_id, deleted_at=change.deleted_at,
                      **{k: str(v) for k, v in hints.items()})
    except ValueError as exc:
        return ParseError("entity_id", f"{DELETE}: {exc}"[:500])


def too_far_ahead(event: Accepted, now: datetime, max_future: float) -> Optional[str]:
    """Why ``event`` is dated more than ``max_future`` seconds after ``now``, or None.

    In integer microseconds: a tolerance of years must not overflow ``datetime``.
    """
    ahead = to_micros(event.event_time) - to_micros(now)
    if ahead <= max_future * 1_000_000:
        return None
    kind = getattr(event.event if isinstance(event, Snapshot) else event, "kind", "")
    field = "deleted_at" if kind == "delete" else TIME_FIELD.get(kind, "updated_at")
    return (f"{field}: {FUTURE}: event time {format_time(event.event_time)} is {_span(ahead / 1e6)} ahead of "
            f"the worker's clock {format_time(now)} (tolerance {max_future:g} s, LEADPULSE_MAX_FUTURE_SECONDS)")


def _span(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.0f} {unit}"
    return f"{seconds:,.0f} s"


#: raw bytes kept in a dead letter; base64 grows them by a third, and the letter must stay
#: under the broker's default 1 MB message limit whatever the producer sent
MAX_RAW_BYTES = 512 * 1024


def dead_letter(record: RawRecord, error: str, now: Optional[datetime] = None) -> DeadLetter:
    """The ``crm.deadletter`` value for a rejected record (raw bytes kept, base64).

    An oversized record keeps its first ``MAX_RAW_BYTES`` and says so in ``error``; the whole
    record stays at (``source_topic``, ``partition``, ``offset``).
    """
    raw = record.value or b""
    if len(raw) > MAX_RAW_BYTES:
        error = f"{error} [raw truncated to the first {MAX_RAW_BYTES} of {len(raw)} bytes]"
        raw = raw[:MAX_RAW_BYTES]
    return DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        error=error[:2000],
        raw=base64.b64encode(raw).decode("ascii"),
        received_at=now or datetime.now(timezone.utc),
    )
