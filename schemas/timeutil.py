"""Event time as integer microseconds since the Unix epoch (UTC).

Every store key and every as-of read uses this one representation, so comparisons are
exact integers, never floating point or time-zone arithmetic.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROS_PER_DAY = 86_400_000_000


def to_micros(value: datetime | int) -> int:
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        raise ValueError("naive datetime: event times must carry a zone")
    return (value - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)
