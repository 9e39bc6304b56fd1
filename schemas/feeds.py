"""Change-data-capture feeds: what CDC tools write to a topic, decoded into changes.

A CRM reaches Kafka through a change-data-capture tool more often than through a producer that
writes our contract. This module turns each message of such a feed into one *change*: a whole
record (``Upsert``), some fields of one (``Patch``) or a delete (``Removal``), in contract field
names. It neither validates against the contract (the caller does, with ``parse_record``) nor
touches the stream. Formats, auto-detection and the ``LEADPULSE_FEEDS`` setting:
docs/bring-your-own-crm.md#change-data-capture-feeds.

>>> decode_change("crm.contacts", b"c1", b'{"contact_id": "c1", "company_id": "a1", '
...               b'"updated_at": "2026-01-31T12:00:00Z"}', None)
Upsert(record={'contact_id': 'c1', 'company_id': 'a1', 'updated_at': '2026-01-31T12:00:00Z'}, snapshot=False)
>>> spec = FeedSpec(fields={"id": "contact_id", "modified": "updated_at"}, epoch={"updated_at": "ms"})
>>> decode_change("crm.contacts", b"7", b'{"before": null, "after": {"id": 7, "company_id": "a1", '
...               b'"modified": 1769860800123}, "op": "u", "ts_ms": 1769860800500}', None, spec).record
{'contact_id': '7', 'company_id': 'a1', 'updated_at': '2026-01-31T12:00:00.123000Z'}
>>> when = datetime(2026, 2, 1, tzinfo=timezone.utc)
>>> decode_change("crm.contacts", b"c1", None, when)
Removal(entity_id='c1', deleted_at=datetime.datetime(2026, 2, 1, 0, 0, tzinfo=datetime.timezone.utc), hints={'contact_id': 'c1'})
>>> print(decode_change("crm.activities", b"c1", None, when))
key: tombstone: a tombstone on crm.activities is keyed by contact_id (the contract key), which cannot name the activity: key it by activity_id (a JSON object key) or send a change event with op=d
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Annotated, Any, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadpulse.schemas.events import MAX_ID
from leadpulse.schemas.parse import ParseError, load_json
from leadpulse.schemas.tables import format_time
from leadpulse.schemas.timeutil import from_micros
from leadpulse.schemas.topics import ENTITY_ID_FIELD, EVENT_TIME_FIELD, INPUT_TOPICS, input_spec_for_topic

#: the entity's own id field per input topic (the message key differs on activities and orders)
ID_FIELD = {s.name: ENTITY_ID_FIELD[s.model.kind] for s in INPUT_TOPICS}  # type: ignore[attr-defined]
#: the field holding the event time per input topic
TIME_FIELD = {s.name: EVENT_TIME_FIELD[s.model.kind] for s in INPUT_TOPICS}  # type: ignore[attr-defined]
#: fields whose integer values become strings (databases key rows by integers; contract ids are strings)
ID_FIELDS = frozenset(ID_FIELD.values())

#: Debezium's stand-in for a Postgres TOASTed column the change did not touch
UNAVAILABLE = "__debezium_unavailable_value"
#: Connect/Debezium logical types of instants held as integers since 1970
_INSTANTS = {"org.apache.kafka.connect.data.Timestamp": "ms", "io.debezium.time.Timestamp": "ms",
             "io.debezium.time.MicroTimestamp": "us", "io.debezium.time.NanoTimestamp": "ns"}
#: logical types of dates held as days since 1970 (a DATE column such as a close date)
_DATES = frozenset({"org.apache.kafka.connect.data.Date", "io.debezium.time.Date"})
_DECIMAL = "org.apache.kafka.connect.data.Decimal"
_VARIABLE_DECIMAL = "io.debezium.data.VariableScaleDecimal"
#: fields ExtractNewRecordState adds (``add.fields``, default prefix) that mark a flattened row
_FLAT_MARKERS = ("__op", "__deleted", "__source_ts_ms", "__ts_ms")
_UPSERT_OPS = {"c": False, "u": False, "r": True}  # op -> snapshot
_OP_NAMES = {"t": "truncate", "m": "message"}
_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1}

Unit = Literal["s", "ms", "us", "ns"]
_Name = Annotated[str, Field(min_length=1)]


class FeedFormat(str, Enum):
    """What a topic's values look like (docs/bring-your-own-crm.md#change-data-capture-feeds)."""
    AUTO = "auto"
    RECORD = "record"
    CONNECT = "connect"
    DEBEZIUM = "debezium"
    SALESFORCE = "salesforce"


class FeedSpec(BaseModel):
    """How to read one input topic: its format and how its field names map onto the contract's.

    Args:
        format: the value format; ``auto`` detects it per message by shape.
        fields: source field name -> contract field name; unmapped fields keep their names.
        epoch: contract field -> unit (``s``, ``ms``, ``us``, ``ns``) for times sent as numbers
            since 1970, after mapping.
        partial: plain records (``record`` and ``connect``) that carry the entity id but lack
            other required fields are partial updates (``Patch``), not whole records.
    """
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: FeedFormat = FeedFormat.AUTO
    fields: dict[_Name, _Name] = {}
    epoch: dict[_Name, Unit] = {}
    partial: bool = False


def feed_specs(raw: Mapping[str, Any]) -> dict[str, FeedSpec]:
    """Parse ``{"crm.contacts": {...}, ...}`` (the ``LEADPULSE_FEEDS`` JSON, decoded).

    Keys are the contract's default input topic names, whatever the topics are called at run
    time. Raises ``ValueError`` naming the offending key.

    >>> feed_specs({"crm.contacts": {"format": "debezium", "fields": {"id": "contact_id"}}})["crm.contacts"].format
    <FeedFormat.DEBEZIUM: 'debezium'>
    >>> feed_specs({"contacts": {}})
    Traceback (most recent call last):
    ...
    ValueError: 'contacts' is not an input topic: use one of crm.companies, crm.contacts, crm.activities, crm.opportunities, crm.orders
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"expected a JSON object of input topic -> feed spec, got {type(raw).__name__}")
    known = [s.name for s in INPUT_TOPICS]
    specs = {}
    for name, value in raw.items():
        if name not in known:
            raise ValueError(f"{name!r} is not an input topic: use one of {', '.join(known)}")
        if isinstance(value, FeedSpec):
            specs[name] = value
            continue
        try:
            specs[name] = FeedSpec.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}"
                                 for e in exc.errors(include_url=False))
            raise ValueError(f"{name}: {problems}") from None
    return specs


@dataclass(frozen=True)
class Upsert:
    """A whole record in contract field names, not validated yet.

    ``snapshot`` marks a row re-read by a snapshot (Debezium ``op=r``) rather than a change.
    """
    record: dict
    snapshot: bool = False


@dataclass(frozen=True)
class Patch:
    """Some fields of one entity, in contract names; always has the entity id and the event time.

    A field set to ``None`` clears it. Not validated.
    """
    record: dict


@dataclass(frozen=True)
class Removal:
    """A delete of the topic's entity ``entity_id`` as of ``deleted_at`` (UTC).

    ``hints``: what the feed said about the deleted row, in contract names, ``None`` values left
    out: the mapped ``before`` row of a Debezium delete, or the key's fields. Always holds the
    entity id field; on activities and orders keyed by contact, the contact id from the key.
    """
    entity_id: str
    deleted_at: datetime
    hints: dict = field(default_factory=dict)


Change = Union[Upsert, Patch, Removal]

_DEFAULT = FeedSpec()


class _Reject(Exception):
    """Unwinds to ``decode_change`` with the error to return."""

    def __init__(self, where: str, reason: str):
        super().__init__(reason)
        self.error = ParseError(where, reason[:500])


@dataclass(frozen=True)
class _Topic:
    name: str
    id_field: str
    time_field: str
    key_field: str
    required: frozenset


def decode_change(topic: str, key: Optional[bytes], value: Optional[bytes], record_time: Optional[datetime],
                  spec: FeedSpec = _DEFAULT) -> Union[Change, ParseError]:
    """Decode one message of a CDC feed into a change.

    Args:
        topic: the contract topic name (``crm.contacts``), not the configured one.
        key: the message key bytes (None when absent).
        value: the message value bytes (None for a tombstone).
        record_time: the message's Kafka timestamp, the time of a tombstone.
        spec: the topic's feed configuration.

    Returns an ``Upsert``, ``Patch`` or ``Removal``, or a ``ParseError`` whose reason starts
    with a low-cardinality kind (``envelope``, ``op``, ``tombstone``, ``delete``, ``mapping``,
    ``time``, ``json``, ``encoding``, ``size``, ``shape``, ``topic``). Never raises.
    """
    try:
        return _decode(_topic(topic), key, value, _utc(record_time), spec if isinstance(spec, FeedSpec) else _DEFAULT)
    except _Reject as exc:
        return exc.error
    except RecursionError:
        return ParseError("", "shape: nested too deeply")
    except Exception as exc:  # a decoder bug must still not escape to the worker
        return ParseError("", f"internal: {type(exc).__name__}: {exc}"[:300])


@lru_cache(maxsize=64)
def _topic(name: str) -> _Topic:
    try:
        spec = input_spec_for_topic(name)
    except KeyError as exc:
        raise _Reject("", f"topic: {exc.args[0]}") from None
    required = frozenset(n for n, f in spec.model.model_fields.items() if f.is_required())
    return _Topic(spec.name, ID_FIELD[spec.name], TIME_FIELD[spec.name], spec.key_field, required)


def _utc(value: Optional[datetime]) -> Optional[datetime]:
    if not isinstance(value, datetime):
        return None
    # Kafka timestamps are instants; a naive one can only have meant UTC
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _decode(t: _Topic, key: Optional[bytes], value: Optional[bytes], record_time: Optional[datetime],
            spec: FeedSpec) -> Change:
    if value is None:
        return _tombstone(t, key, record_time, spec)
    data = load_json(value)
    if isinstance(data, ParseError):
        raise _Reject(data.field, data.reason)
    fmt = spec.format
    # A plain contract record keeps the contract's strictness (an id is a string, a number is an
    # error); a CDC tool's rows, or a feed given a mapping, have their integer keys made ids.
    configured = bool(spec.fields or spec.epoch)
    if fmt is FeedFormat.RECORD:  # declared plain: no shape is read into the value
        return _plain(t, data, spec, configured)
    wrapped = fmt is FeedFormat.CONNECT or _is_connect(data)
    if wrapped:
        data = _unwrap_connect(data, required=fmt is FeedFormat.CONNECT)
    if not isinstance(data, dict):
        raise _Reject("", f"shape: expected a JSON object, got {type(data).__name__}")
    if fmt is FeedFormat.SALESFORCE:
        if "ChangeEventHeader" not in data:
            raise _Reject("ChangeEventHeader", "envelope: a Salesforce change event has a ChangeEventHeader")
        return _salesforce(t, data, key, record_time, spec)
    if fmt is FeedFormat.DEBEZIUM:
        if "op" in data:
            return _debezium(t, data, key, record_time, spec)
        if "before" in data or "after" in data:
            raise _Reject("op", "envelope: a Debezium change event has an op")
        return _flat(t, data, key, record_time, spec)  # ExtractNewRecordState, with or without add.fields
    if "ChangeEventHeader" in data:
        return _salesforce(t, data, key, record_time, spec)
    if "op" in data and ("after" in data or "before" in data):
        return _debezium(t, data, key, record_time, spec)
    if any(m in data for m in _FLAT_MARKERS):
        return _flat(t, data, key, record_time, spec)
    return _plain(t, data, spec, configured or wrapped)


# ----------------------------------------------------------------------------- Kafka Connect
def _is_connect(data: Any) -> bool:
    return isinstance(data, dict) and "schema" in data and "payload" in data


def _unwrap_connect(data: Any, required: bool) -> Any:
    """The payload of a JsonConverter envelope, its logical types converted; a bare payload
    (``schemas.enable=false``) as it is."""
    if not isinstance(data, dict) or "schema" not in data:
        return data
    schema = data["schema"]
    if not required and not isinstance(schema, (dict, str, type(None))):
        return data  # fields that happen to be called schema and payload, not an envelope
    if data.get("payload") is None:
        raise _Reject("payload", "envelope: a Kafka Connect envelope without a payload")
    # a string schema is the id of a Salesforce streaming event: nothing to convert with
    return _convert(schema, data["payload"]) if isinstance(schema, dict) else data["payload"]


def _convert(schema: Any, value: Any) -> Any:
    if not isinstance(schema, dict) or value is None:
        return value
    name = schema.get("name")
    name = name if isinstance(name, str) else None
    if name in _INSTANTS and _is_number(value):
        return format_time(_from_epoch(value, _INSTANTS[name], "payload"))
    if name in _DATES and _is_number(value):
        return format_time(_from_epoch(value * 86_400, "s", "payload"))
    if name == _DECIMAL and isinstance(value, str):
        return _decimal(value, (schema.get("parameters") or {}).get("scale", 0))
    if name == _VARIABLE_DECIMAL and isinstance(value, dict) and isinstance(value.get("value"), str):
        return _decimal(value["value"], value.get("scale", 0))
    kind = schema.get("type")
    if kind == "struct" and isinstance(value, dict):
        fields = {f.get("field"): f for f in schema.get("fields") or () if isinstance(f, dict)}
        return {k: _convert(fields.get(k), v) for k, v in value.items()}
    if kind == "array" and isinstance(value, list):
        return [_convert(schema.get("items"), v) for v in value]
    return value


def _decimal(encoded: str, scale: Any) -> Any:
    # Debezium's decimal.handling.mode=precise: big-endian two's complement unscaled value
    try:
        unscaled = int.from_bytes(base64.b64decode(encoded, validate=True), "big", signed=True)
        return float(Decimal(unscaled).scaleb(-int(scale)))
    except (ValueError, TypeError, ArithmeticError):
        return encoded


# ----------------------------------------------------------------------------- Debezium
def _debezium(t: _Topic, env: dict, key: Optional[bytes], record_time: Optional[datetime],
              spec: FeedSpec) -> Change:
    op = env.get("op")
    op = op if isinstance(op, str) else repr(op)  # any JSON value, hashable from here on
    when = _envelope_time(env)
    if op in _UPSERT_OPS:
        after = env.get("after")
        if not isinstance(after, dict):
            raise _Reject("after", f"envelope: a Debezium op={op} event without an after row")
        return _row(t, after, spec, when, snapshot=_UPSERT_OPS[op])
    if op == "d":
        before = env.get("before")
        return _removal(t, before if isinstance(before, dict) else None, key, when or record_time, spec, "delete")
    name = f" ({_OP_NAMES[op]})" if op in _OP_NAMES else ""
    raise _Reject("op", f"op: Debezium op {op!r}{name} is not a change of one row: expected c, u, r or d")


def _envelope_time(env: dict) -> Optional[datetime]:
    """When the change happened: the source database's commit time first (``source.ts_*``), then
    when Debezium read it (``ts_*``), which lags by however far behind the connector was."""
    source = env.get("source") if isinstance(env.get("source"), dict) else {}
    for holder, name, unit in ((source, "ts_us", "us"), (source, "ts_ms", "ms"), (env, "ts_us", "us"),
                               (env, "ts_ms", "ms")):
        if _is_number(holder.get(name)):
            return _from_epoch(holder[name], unit, name)
    return None


def _flat(t: _Topic, data: dict, key: Optional[bytes], record_time: Optional[datetime], spec: FeedSpec) -> Change:
    """A row flattened by ExtractNewRecordState; its ``__`` fields say what happened."""
    meta = {k: v for k, v in data.items() if k.startswith("__")}
    row = {k: v for k, v in data.items() if not k.startswith("__")}
    op = meta.get("__op")
    if op is not None and (not isinstance(op, str) or op not in _UPSERT_OPS and op != "d"):
        raise _Reject("__op", f"op: Debezium op {op!r} is not a change of one row: expected c, u, r or d")
    when = None
    for name in ("__source_ts_ms", "__ts_ms"):
        if _is_number(meta.get(name)):
            when = _from_epoch(meta[name], "ms", name)
            break
    if meta.get("__deleted") in (True, "true") or op == "d":
        return _removal(t, row, key, when or record_time, spec, "delete")
    return _row(t, row, spec, when, snapshot=op == "r")


def _row(t: _Topic, row: dict, spec: FeedSpec, when: Optional[datetime], snapshot: bool) -> Change:
    kept = {k: v for k, v in row.items() if not _unavailable(v)}
    record = _fill_time(t, _map(kept, spec), when)
    if len(kept) < len(row):  # TOASTed columns the change did not touch: only the others are known
        return _patch(t, record)
    return Upsert(record, snapshot)


def _unavailable(value: Any) -> bool:
    return value == UNAVAILABLE or (isinstance(value, list) and UNAVAILABLE in value)


# ----------------------------------------------------------------------------- Salesforce
def _salesforce(t: _Topic, data: dict, key: Optional[bytes], record_time: Optional[datetime],
                spec: FeedSpec) -> Change:
    header = data["ChangeEventHeader"]
    if not isinstance(header, dict):
        raise _Reject("ChangeEventHeader", "envelope: ChangeEventHeader is not an object")
    change = header.get("changeType")
    if isinstance(change, str) and (change.startswith("GAP_") or change == "OVERFLOW"):
        raise _Reject("ChangeEventHeader.changeType",
                      f"op: {change} is a gap event: resynchronise this entity (send its whole record)")
    ids = header.get("recordIds")
    if not isinstance(ids, list) or not ids:
        raise _Reject("ChangeEventHeader.recordIds", "envelope: recordIds names no record")
    if len(ids) > 1:
        raise _Reject("ChangeEventHeader.recordIds",
                      f"shape: one change event for {len(ids)} records; leadpulse needs one event per record")
    when = None
    if _is_number(header.get("commitTimestamp")):
        when = _from_epoch(header["commitTimestamp"], "ms", "ChangeEventHeader.commitTimestamp")
    body = {k: v for k, v in data.items() if k != "ChangeEventHeader"}
    if change == "DELETE":
        return _removal(t, {t.id_field: ids[0]}, key, when or record_time, spec, "delete", mapped=True)
    if change in ("CREATE", "UNDELETE"):
        return Upsert(_fill_time(t, {**_map(body, spec), t.id_field: _id(ids[0], t.id_field)}, when))
    if change == "UPDATE":
        # an update carries the fields that changed; a null among them means "unchanged" in
        # the Avro form, so only nulledFields clear a field
        changed = {k: v for k, v in body.items() if v is not None}
        for name in header.get("nulledFields") or ():
            if isinstance(name, str) and not name.startswith(("0x", "0-", "1-")):
                changed[name] = None
        record = {**_map(changed, spec), t.id_field: _id(ids[0], t.id_field)}
        return _patch(t, _fill_time(t, record, when))
    raise _Reject("ChangeEventHeader.changeType",
                  f"op: changeType {change!r}: expected CREATE, UPDATE, DELETE or UNDELETE")


# ----------------------------------------------------------------------------- plain records, deletes
def _plain(t: _Topic, data: Any, spec: FeedSpec, ids: bool = True) -> Change:
    if not isinstance(data, dict):
        raise _Reject("", f"shape: expected a JSON object, got {type(data).__name__}")
    record = _map(data, spec, ids)
    missing = [f for f in t.required if record.get(f) is None]
    if spec.partial and missing and record.get(t.id_field) is not None:
        return _patch(t, record)
    return Upsert(record)


def _patch(t: _Topic, record: dict) -> Patch:
    if record.get(t.id_field) is None:
        raise _Reject(t.id_field, f"mapping: a partial update must carry {t.id_field} "
                                  "(map the source's id field onto it with \"fields\")")
    if record.get(t.time_field) is None:
        raise _Reject(t.time_field, f"time: a partial update must carry {t.time_field}, and the feed gives "
                                    "no time of its own")
    return Patch(record)


def _tombstone(t: _Topic, key: Optional[bytes], record_time: Optional[datetime], spec: FeedSpec) -> Removal:
    if not key:
        raise _Reject("key", "tombstone: a tombstone without a key names no entity")
    if record_time is None:
        raise _Reject("", "tombstone: a tombstone without a record timestamp has no deletion time")
    return _removal(t, None, key, record_time, spec, "tombstone")


def _removal(t: _Topic, row: Optional[dict], key: Optional[bytes], when: Optional[datetime], spec: FeedSpec,
             kind: str, mapped: bool = False) -> Removal:
    hints = {}
    if row is not None:
        kept = {k: v for k, v in row.items() if v is not None and not _unavailable(v)}
        hints = _ids(kept) if mapped else _map(kept, spec)
    entity = hints.get(t.id_field)
    if entity is None:
        entity, from_key = _key(t, key, spec, kind, strict=True)
    else:
        # the key only adds what the row lacks (the contact of an activity keyed by contact)
        from_key = _key(t, key, spec, kind, strict=False)[1]
    hints = {**from_key, **hints}
    if entity is None:
        if row is None and t.key_field != t.id_field:
            fix = (f"key it by {t.id_field} (a JSON object key) or send a change event with op=d"
                   if kind == "tombstone" else "its before row is missing (set REPLICA IDENTITY FULL)")
            raise _Reject("key", f"{kind}: a {kind} on {t.name} is keyed by {t.key_field} (the contract key), "
                                 f"which cannot name the {t.id_field.removesuffix('_id')}: {fix}")
        raise _Reject(t.id_field, f"{kind}: no {t.id_field} in the deleted row or the key (map the source's "
                                  "id field onto it with \"fields\")")
    entity = _entity_id(entity, t.id_field, kind)
    if when is None:
        raise _Reject("", f"{kind}: the delete carries no time (no source.ts_ms, ts_ms or record timestamp)")
    hints[t.id_field] = entity
    return Removal(entity, when, hints)


def _key(t: _Topic, key: Optional[bytes], spec: FeedSpec, kind: str, strict: bool) -> tuple[Any, dict]:
    """(entity id or None, hints) from the message key; errors only when ``strict``."""
    if not key:
        return None, {}
    data = load_json(key)
    if isinstance(data, ParseError):
        if not data.reason.startswith("json"):
            if strict:
                raise _Reject("key", data.reason)
            return None, {}
        data = key.decode("utf-8")  # raw UTF-8 text, the contract's own keys
    if _is_connect(data):
        try:
            data = _unwrap_connect(data, required=False)
        except _Reject:
            if strict:
                raise
            return None, {}
    if isinstance(data, dict):
        hints = {k: v for k, v in _map(data, spec).items() if v is not None}
        return hints.get(t.id_field), hints
    if isinstance(data, bool) or not isinstance(data, (str, int)):
        if strict:
            raise _Reject("key", f"{kind}: the key must be an id (text, a JSON string or integer) or a "
                                 f"JSON object, got {type(data).__name__}")
        return None, {}
    text = str(data)
    if t.key_field == t.id_field:
        return text, {t.id_field: text}
    return None, {t.key_field: text}


def _entity_id(value: Any, name: str, kind: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_ID:
        raise _Reject(name, f"{kind}: {name} must be a non-empty string (or integer) of at most {MAX_ID} "
                            f"characters, got {str(value)[:40]!r}")
    return value.strip()


# ----------------------------------------------------------------------------- fields and times
def _map(record: Mapping[str, Any], spec: FeedSpec, ids: bool = True) -> dict:
    """``record`` in contract names: renamed, integer ids as strings (``ids``), epoch times as
    RFC 3339."""
    out: dict = {}
    source: dict = {}
    for name, value in record.items():
        target = spec.fields.get(name, name)
        if target in out and out[target] != value:
            raise _Reject(target, f"mapping: {source[target]!r} and {name!r} both give {target!r}, "
                                  "with different values")
        out[target], source[target] = value, name
    out = _ids(out) if ids else out
    for name, unit in spec.epoch.items():
        value = out.get(name)
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                continue  # already a text time: the contract parses it
        if _is_number(value):
            out[name] = format_time(_from_epoch(value, unit, name))
    return out


def _ids(record: dict) -> dict:
    return {k: _id(v, k) for k, v in record.items()}


def _id(value: Any, name: str) -> Any:
    if name in ID_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _fill_time(t: _Topic, record: dict, when: Optional[datetime]) -> dict:
    if record.get(t.time_field) is None and when is not None:
        record[t.time_field] = format_time(when)
    return record


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _from_epoch(value: Any, unit: str, name: str) -> datetime:
    """An instant from a number of ``unit`` since 1970; integers exactly, to the microsecond."""
    try:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError("not finite")
            micros = round(value / 1000) if unit == "ns" else round(value * _MICROS[unit])
        else:
            micros = value // 1000 if unit == "ns" else value * _MICROS[unit]
        return from_micros(micros)
    except (OverflowError, ValueError) as exc:
        raise _Reject(name, f"time: {value!r} {unit} since 1970 is not a time ({exc})") from None
