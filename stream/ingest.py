"""Validation at the edge: raw Kafka records in, events or dead letters out.

Pure functions (no I/O), so every rejection rule is testable without a broker; the Faust
agents only move bytes in and out.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Union

from leadpulse.schemas.events import Activity, DeadLetter, InputEvent, Order
from leadpulse.schemas.parse import ParseError, parse_event
from leadpulse.schemas.tables import format_time
from leadpulse.schemas.timeutil import to_micros

#: reason kind of an event dated further ahead of the worker's clock than the tolerance
FUTURE = "future"


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
             max_future: Optional[float] = None) -> Union[InputEvent, tuple[DeadLetter, str]]:
    """Parse ``record`` against the contract of ``contract_topic`` (its default name).

    Args:
        now: the worker's wall clock (default: the current time); a dead letter's ``received_at``.
        max_future: seconds an event's time may be ahead of ``now``; a later one is rejected
            with reason kind ``future`` (docs/architecture.md#invariant-7). None: no bound.

    Returns the event, or ``(dead letter, reason kind)``: never raises for any input bytes.
    """
    parsed = parse_event(contract_topic, record.value)
    if isinstance(parsed, ParseError):
        return dead_letter(record, str(parsed), now), reason_kind(parsed)
    if max_future is not None:
        now = now or datetime.now(timezone.utc)
        error = too_far_ahead(parsed, now, max_future)
        if error is not None:
            return dead_letter(record, error, now), FUTURE
    return parsed


def too_far_ahead(event: InputEvent, now: datetime, max_future: float) -> Optional[str]:
    """Why ``event`` is dated more than ``max_future`` seconds after ``now``, or None.

    In integer microseconds: a tolerance of years must not overflow ``datetime``.
    """
    ahead = to_micros(event.event_time) - to_micros(now)
    if ahead <= max_future * 1_000_000:
        return None
    field = "timestamp" if isinstance(event, (Activity, Order)) else "updated_at"
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
