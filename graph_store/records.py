"""Events as store records: ``(kind, entity id, version time, attrs)``.

A record is what the store versions: the event's fields (and unknown extra fields) with
``None`` dropped and every timestamp as int micros (``schemas.timeutil``). References to other
entities (``REFS``) become edges; each edge is asserted by one version of its *holder* (the
entity whose field names the other one) and lasts until the holder's next version.

A ``Delete`` event becomes a *tombstone* record: ``(entity, id, deleted_at, TOMB)``. It is
versioned like any record (so the version before it ends at ``deleted_at``, and a later version
re-creates the entity); ``TOMB`` tells it apart (docs/graph_store.md, "Deletes").
"""
from __future__ import annotations

import hashlib
import json
import pickle
from datetime import datetime
from typing import Any, NamedTuple, Optional, get_args

from leadpulse.schemas.events import Delete, InputEvent
from leadpulse.schemas.timeutil import EPOCH, to_micros
from leadpulse.schemas.types import (
    ACTIVITY,
    BASE_EDGE_TYPES,
    COMPANY,
    CONTACT,
    HAD_ACTIVITY,
    OPPORTUNITY,
    ORDER,
    OWNS,
    PLACED,
    RELATED_TO,
    WORKS_AT,
    EdgeType,
    reverse,
)

KINDS: tuple[str, ...] = (COMPANY, CONTACT, ACTIVITY, OPPORTUNITY, ORDER)
KIND_CODE: dict[str, int] = {k: i for i, k in enumerate(KINDS)}

#: base edge types by index, then their reverses: ETYPES[i + NB] == reverse(ETYPES[i])
NB = len(BASE_EDGE_TYPES)
ETYPES: tuple[EdgeType, ...] = BASE_EDGE_TYPES + tuple(reverse(e) for e in BASE_EDGE_TYPES)
ETYPE_CODE: dict[EdgeType, int] = {e: i for i, e in enumerate(ETYPES)}
RING_KINDS: tuple[int, ...] = (ETYPE_CODE[("company", "industry_peer", "company")],
                               ETYPE_CODE[("company", "similar_to", "company")])


class Ref(NamedTuple):
    """``holder.field`` names an entity of type ``target``, giving an edge of base type ``etype``."""
    field: str
    target: str
    etype: int          # index into ETYPES (a base type)
    holder_is_src: bool


REFS: dict[str, tuple[Ref, ...]] = {
    COMPANY: (),
    CONTACT: (Ref("company_id", COMPANY, ETYPE_CODE[WORKS_AT], True),),
    ACTIVITY: (Ref("contact_id", CONTACT, ETYPE_CODE[HAD_ACTIVITY], False),
               Ref("opportunity_id", OPPORTUNITY, ETYPE_CODE[RELATED_TO], True)),
    OPPORTUNITY: (Ref("company_id", COMPANY, ETYPE_CODE[OWNS], False),),
    ORDER: (Ref("contact_id", CONTACT, ETYPE_CODE[PLACED], False),),
}

#: index of a contact's ``company_id`` reference among ``REFS[CONTACT]`` (its ``works_at`` edge)
WORKS_AT_J = [j for j, ref in enumerate(REFS[CONTACT]) if ref.field == "company_id"][0]

#: references that make the target exist without an edge (the company an order names)
EXTRA_REFS: dict[str, tuple[tuple[str, str], ...]] = {ORDER: (("company_id", COMPANY),)}


class Record(NamedTuple):
    kind: str
    id: str
    time: int
    attrs: dict


class _Tomb(dict):
    """The attributes of a tombstone: empty, and recognised by identity (``attrs is TOMB``)."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "TOMB"

    def __reduce__(self):
        return "TOMB"


#: the one attribute object of every tombstone record (never mutated: stored attrs are read-only)
TOMB: dict = _Tomb()


def micros(value: datetime) -> int:
    """``schemas.timeutil.to_micros`` for an aware datetime, without the division (hot path)."""
    d = value - EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_micros(value)
    return value


def to_record(event: InputEvent) -> Record:
    """The store record of a validated event (fields, then extras; ``None`` dropped).

    Example:
        >>> from leadpulse.schemas.events import Activity
        >>> to_record(Activity(activity_id="a1", contact_id="c1", type="call",
        ...                    timestamp="1970-01-01T00:00:01Z", mood="ok"))
        Record(kind='activity', id='a1', time=1000000, attrs={'activity_id': 'a1', 'contact_id': 'c1', \
'type': 'call', 'timestamp': 1000000, 'mood': 'ok'})
    """
    spec = _SPECS.get(event.__class__)
    if spec is None:
        if event.__class__ is Delete:   # never cached in _SPECS: versions pay no extra check
            return Record(event.entity, event.entity_id, micros(event.deleted_at), TOMB)
        spec = _SPECS[event.__class__] = _Spec.of(event)
    # built by insertion, not copy-and-delete: a dict without holes is smaller and copies faster
    attrs = {k: v for k, v in event.__dict__.items() if v is not None}
    for k in spec.times:
        v = attrs.get(k)
        if v.__class__ is datetime:
            attrs[k] = micros(v)
    extra = event.__pydantic_extra__
    if extra:
        for k, v in extra.items():
            if v is not None and k not in attrs:
                attrs[k] = _plain(v)
    when = attrs.get(spec.time_field)
    if when is None:
        when = to_micros(event.event_time)
    nid = attrs.get(spec.id_field)
    return _tuple_new(Record, (spec.kind, event.entity_id if nid is None else nid, when, attrs))


_tuple_new = tuple.__new__


def _mentions_datetime(tp: Any) -> bool:
    return tp is datetime or any(_mentions_datetime(a) for a in get_args(tp))


class _Spec(NamedTuple):
    """Per event class: the fields that may hold a datetime, the time field, the id field."""
    kind: str
    times: tuple[str, ...]
    time_field: str
    id_field: str

    @staticmethod
    def of(event: InputEvent) -> "_Spec":
        fields = getattr(type(event), "model_fields", {})
        return _Spec(event.kind,
                     tuple(n for n in event.__dict__ if n not in fields or _mentions_datetime(fields[n].annotation)),
                     _TIME_FIELD[event.kind], f"{event.kind}_id")


_SPECS: dict[type, _Spec] = {}
_TIME_FIELD = {COMPANY: "updated_at", CONTACT: "updated_at", ACTIVITY: "timestamp", OPPORTUNITY: "updated_at",
               ORDER: "timestamp"}
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
PICKLE_PROTOCOL = 5


def encode_attrs(attrs: dict) -> bytes:
    """The stored form of a version's attributes: a pickle (protocol 5, always starts ``0x80``).

    Half the cost of compact JSON per value, and as fast to read back at open
    (docs/graph_store.md#measurements-behind-the-code). Stores written before (format 1)
    hold compact UTF-8 JSON objects (starting ``{``); ``decode_attrs`` reads both.

    Example:
        >>> decode_attrs(encode_attrs({"a": 1, "b": [1.5, None]})), decode_attrs(b'{"a":1}')
        ({'a': 1, 'b': [1.5, None]}, {'a': 1})
    """
    return _dumps(attrs, PICKLE_PROTOCOL)


def decode_attrs(raw: bytes) -> dict:
    return _loads(raw) if raw[0] == 0x80 else json.loads(raw)


def decode_many(raws: list[bytes]) -> list[dict]:
    """``decode_attrs`` of many values (legacy JSON values in one parser call)."""
    loads = _loads
    out: list = []
    legacy: list[int] = []
    for raw in raws:
        if raw[0] == 0x80:
            out.append(loads(raw))
        else:
            legacy.append(len(out))
            out.append(None)
    if legacy:
        for i, attrs in zip(legacy, json.loads(b"[" + b",".join([raws[i] for i in legacy]) + b"]")):
            out[i] = attrs
    return out


_dumps, _loads = pickle.dumps, pickle.loads


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def industry_bucket(attrs: dict) -> Optional[str]:
    value = attrs.get("industry")
    return value if isinstance(value, str) and value else None


def similar_bucket(attrs: dict) -> Optional[str]:
    """MinHash of the tech stack: the item with the smallest stable hash (P(same) = Jaccard)."""
    stack = attrs.get("tech_stack")
    if not stack:
        return None
    return min((stable_hash(str(item)), str(item)) for item in stack)[1]
