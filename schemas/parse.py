"""Turning raw bytes or records into events, with bad input as a value, never an exception.

>>> ev = parse_event("crm.companies", b'{"company_id": "c1", "updated_at": "2026-01-01T00:00:00Z"}')
>>> ev.company_id
'c1'
>>> err = parse_event("crm.companies", b'{"company_id": "c1"}')
>>> (err.field, err.reason)
('updated_at', 'missing: Field required')
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Union

from pydantic import ValidationError

from leadpulse.schemas.events import InputEvent
from leadpulse.schemas.topics import TopicSpec, input_spec_for_topic

MAX_MESSAGE_BYTES = 1_000_000


@dataclass(frozen=True)
class ParseError:
    """Why an input was rejected.

    Args:
        field: dotted path of the first offending field, or ``""`` for the whole message.
        reason: ``<kind>: <message>`` (kind is pydantic's error type, or
            ``encoding``/``json``/``shape``/``size``/``topic`` for message-level faults).
        details: every error found, as ``field: reason`` strings.
    """
    field: str
    reason: str
    details: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


ParseResult = Union[InputEvent, ParseError]


def record_spec(topic: str, record: Any) -> Union[TopicSpec, ParseError]:
    """The contract of ``topic`` (name, kind or table stem) if ``record`` can be one of its
    records (a JSON object), else why not."""
    try:
        spec = input_spec_for_topic(topic)
    except KeyError as exc:
        return ParseError("", f"topic: {exc.args[0]}")
    if not isinstance(record, Mapping):
        return ParseError("", f"shape: expected a JSON object, got {type(record).__name__}")
    return spec


def parse_record(topic: str, record: Mapping[str, Any]) -> ParseResult:
    """Validate a decoded record for ``topic`` (name, kind or table stem)."""
    spec = record_spec(topic, record)
    if isinstance(spec, ParseError):
        return spec
    try:
        return spec.model.model_validate(record)  # type: ignore[return-value]
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        details = tuple(f"{_loc(e['loc'])}: {e['type']}: {e['msg']}" for e in errors)
        first = errors[0]
        return ParseError(_loc(first["loc"]), f"{first['type']}: {first['msg']}", details)
    except Exception as exc:  # a validator bug must still not escape to the worker
        return ParseError("", f"internal: {type(exc).__name__}: {exc}")


def parse_event(topic: str, raw: bytes | str | None) -> ParseResult:
    """Decode UTF-8 JSON bytes and validate them for ``topic``."""
    if raw is None:
        return ParseError("", "shape: empty message (tombstone)")
    record = load_json(raw)
    if isinstance(record, ParseError):
        return record
    return parse_record(topic, record)


def load_json(raw: bytes | str) -> Any:
    """The JSON value in ``raw``, or a ``ParseError`` (kind ``size``, ``encoding`` or ``json``).

    Shared by every decoder of message bytes (values and keys, here and in ``schemas.feeds``) so
    the limits are the same everywhere. No JSON value is a ``ParseError``, so callers tell the two
    apart with ``isinstance``.

    >>> load_json(b'{"a": 1}')
    {'a': 1}
    >>> load_json(b"\\xff").reason
    'encoding: not UTF-8 (invalid start byte at byte 0)'
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        return ParseError("", f"size: message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
    except UnicodeDecodeError as exc:
        return ParseError("", f"encoding: not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        return ParseError("", f"json: {exc}"[:300])


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)
