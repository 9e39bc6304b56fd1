"""Coercion of raw attribute values (as stored in the graph) into numbers, in one place.

Attributes keep what the event carried: times may be micros, datetimes or RFC 3339 strings,
numbers may be missing or non-finite. Features and baselines read them through these.

>>> as_micros("1970-01-01T00:00:01Z"), as_micros(True), as_number("x")
(1000000, None, nan)
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Optional

import numpy as np

from leadpulse.schemas.timeutil import to_micros


def as_micros(value: Any) -> Optional[int]:
    """A time attribute as micros since the epoch, or None when absent or unparsable."""
    if type(value) is int:  # the store's own times: the common case, checked first
        return value
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return to_micros(value)
    if isinstance(value, str):
        try:
            return to_micros(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def as_number(value: Any) -> float:
    """A numeric attribute as a finite float, or NaN."""
    if value is None:  # most optional fields are absent: no exception for them
        return math.nan
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


_PLAIN = frozenset((float, int, type(None)))


def as_numbers(values: list) -> np.ndarray:
    """``as_number`` of each value, as one float64 array: in one numpy conversion when every
    value is a float, an int or None (the store's own values), one by one otherwise."""
    if set(map(type, values)) <= _PLAIN:
        out = np.array(values, dtype=np.float64).reshape(len(values))  # None -> NaN
        out[~np.isfinite(out)] = np.nan
        return out
    return np.array([as_number(v) for v in values], dtype=np.float64).reshape(len(values))
