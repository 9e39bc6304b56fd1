"""Validation at the edge: raw Kafka records in, events or dead letters out.

Pure functions (no I/O), so every rejection rule is testable without a broker; the Faust
agents only move bytes in and out.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Union

from leadpulse.schemas.events import DeadLetter, InputEvent
from leadpulse.schemas.parse import ParseError, parse_event


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


def validate(record: RawRecord, contract_topic: str,
             now: Optional[datetime] = None) -> Union[InputEvent, tuple[DeadLetter, str]]:
    """Parse ``record`` against the contract of ``contract_topic`` (its default name).

    Returns the event, or ``(dead letter, reason kind)``: never raises for any input bytes.
    """
    parsed = parse_event(contract_topic, record.value)
    if not isinstance(parsed, ParseError):
        return parsed
    return dead_letter(record, str(parsed), now), reason_kind(parsed)


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
