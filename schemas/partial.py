"""Partial updates: a change that carries only some fields of an entity (Salesforce CDC, a
Debezium row with unchanged TOASTed columns, a producer that sends what changed).

``parse_partial`` checks each field it carries against the contract's type for that field, so a
wrong type is a dead letter at the edge with the field named; ``merge`` lays the fields onto the
entity's last known version as of the change's time, and the result is validated whole
(``parse_record``), so a merge that breaks the contract is a dead letter too
(docs/bring-your-own-crm.md, "Partial updates").

>>> p = parse_partial("crm.contacts", {"contact_id": "c1", "updated_at": "2026-02-01T00:00:00Z",
...                                    "title": "CTO"})
>>> p.kind, p.entity_id, p.fields["title"]
('contact', 'c1', 'CTO')
>>> base = {"contact_id": "c1", "company_id": "a1", "updated_at": "2026-01-01T00:00:00Z", "title": "Eng"}
>>> merged = merge(base, p)
>>> merged.title, merged.company_id, merged.updated_at.month
('CTO', 'a1', 2)
>>> parse_partial("crm.contacts", {"contact_id": "c1", "updated_at": "2026-02-01T00:00:00Z",
...                                "created_at": 5}).field
'created_at'
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Mapping, Union

from pydantic import TypeAdapter, ValidationError

from leadpulse.schemas.events import InputEvent
from leadpulse.schemas.parse import ParseError, parse_record, record_spec
from leadpulse.schemas.topics import ENTITY_ID_FIELD, EVENT_TIME_FIELD, input_spec_for_topic

#: per node kind: the field holding the event time, and the entity's own id
TIME_FIELD, ID_FIELD = EVENT_TIME_FIELD, ENTITY_ID_FIELD


@dataclass(frozen=True)
class Partial:
    """Some fields of one entity at one time.

    Args:
        topic: the contract topic it came from (``crm.contacts``, ...).
        kind: the entity's node kind.
        entity_id: its id.
        event_time: the change's time (UTC).
        fields: the fields it carries, in contract names, each valid for its type (the id and
            time fields included); ``None`` clears an optional field.
    """
    topic: str
    kind: str
    entity_id: str
    event_time: datetime
    fields: Mapping[str, Any]

    def wire(self) -> dict:
        """The JSON-plain form (times as the producer gave them)."""
        return dict(self.fields)


@lru_cache(maxsize=None)
def _adapter(topic: str, name: str) -> TypeAdapter:
    field = input_spec_for_topic(topic).model.model_fields[name]
    if not field.metadata:
        return TypeAdapter(field.annotation)
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)])


def parse_partial(topic: str, record: Mapping[str, Any]) -> Union[Partial, ParseError]:
    """Check the fields of a partial record of ``topic``; it must name the entity and its time."""
    spec = record_spec(topic, record)
    if isinstance(spec, ParseError):
        return spec
    kind = spec.model.kind  # type: ignore[attr-defined]
    id_field, time_field = ID_FIELD[kind], TIME_FIELD[kind]
    for required in (id_field, time_field):
        if record.get(required) is None:
            return ParseError(required, "missing: a partial update must name its entity and its time")
    known = spec.model.model_fields
    values = {}
    for name, value in record.items():
        if name not in known or (value is None and not known[name].is_required()):
            values[name] = value
            continue
        try:
            values[name] = _adapter(topic, name).validate_python(value)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            return ParseError(name, f"{first['type']}: {first['msg']}")
        except Exception as exc:  # a validator bug must still not escape to the worker
            return ParseError(name, f"internal: {type(exc).__name__}: {exc}")
    return Partial(topic, kind, values[id_field], values[time_field], dict(record))


def merge(base: Mapping[str, Any], partial: Partial) -> Union[InputEvent, ParseError]:
    """``partial`` laid onto ``base`` (a whole record in contract names), validated whole.

    A field the partial sets to ``None`` is cleared; the partial's time is the new version's.
    """
    merged = {**base, **partial.fields}
    return parse_record(partial.topic, {k: v for k, v in merged.items() if v is not None})
