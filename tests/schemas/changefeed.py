"""One logical change stream, rendered as each kind of feed writes it (schemas/feeds.py).

Tests use it to send the same changes as plain records, Kafka Connect envelopes, Debezium events
or Salesforce change events, and check that leadpulse ends up with the same graph whichever
form arrived. A *change* is one of:

- ``("upsert", record)``: a whole contract record (RFC 3339 times, contract field names);
- ``("snapshot", record)``: a row read by a snapshot (Debezium ``op=r``; a plain record elsewhere);
- ``("patch", partial, merged)``: an update carrying ``partial`` (the id, the event time and the
  changed fields; ``None`` clears a field); whole-record forms send ``merged``, the entity's
  full record after the update;
- ``("delete", entity_id, deleted_at, hints)``: ``deleted_at`` a datetime or RFC 3339 string,
  ``hints`` the deleted row's fields in contract names (activities and orders need its
  ``contact_id``, their contract key).

Every renderer returns ``(key, value)`` bytes; ``value`` is None for a tombstone. Keys are the
contract's: the UTF-8 id named by the topic's key field (activities and orders by
``contact_id``), as the documented Debezium setup produces them (``message.key.columns``, then
``ExtractField$Key`` and the ``StringConverter``), so a contact's records land on the same
partition number of every topic. Produce each message with ``record_time(topic, change)`` as
its Kafka timestamp: a tombstone's deletion time is its timestamp (milliseconds, so give deletes
whole-millisecond times if they must survive every form exactly).

``fields`` (source name -> contract name, like ``FeedSpec.fields``) renders the records in the
source's names instead, to exercise a mapping; decode them with the same ``fields``.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Optional

from leadpulse.schemas.feeds import ID_FIELD, TIME_FIELD
from leadpulse.schemas.topics import input_spec_for_topic

#: every form, for parametrised tests: name -> (renderer, keyword arguments)
FORMS: dict[str, tuple[Callable, dict]] = {}
#: contract fields holding times (rendered as Connect logical timestamps where a schema is sent)
TIME_FIELDS = ("updated_at", "created_at", "close_date", "timestamp")
#: the Salesforce object each topic's records come from
SF_ENTITY = {"crm.companies": "Account", "crm.contacts": "Contact", "crm.activities": "Task",
             "crm.opportunities": "Opportunity", "crm.orders": "Order"}
#: how far Debezium's own ts_ms trails the database commit (source.ts_ms) in rendered events
CONNECTOR_LAG_MS = 250

Change = tuple
Key = Optional[bytes]


def render(form: str, topic: str, change: Change, **kwargs: Any) -> tuple[bytes, Optional[bytes]]:
    """``change`` in the form named ``form`` (a key of ``FORMS``)."""
    renderer, defaults = FORMS[form]
    return renderer(topic, change, **{**defaults, **kwargs})


def record_time(topic: str, change: Change) -> datetime:
    """The Kafka timestamp to produce ``change`` with: the deletion time of a delete, else the
    record's event time."""
    if change[0] == "delete":
        return _instant(change[2])
    record = change[2] if change[0] == "patch" else change[1]
    return _instant(record[TIME_FIELD[topic]])


def as_record(topic: str, change: Change, partial: bool = False,
              fields: Optional[Mapping[str, str]] = None) -> tuple[bytes, Optional[bytes]]:
    """Today's contract form: the whole record as JSON.

    A patch sends the merged record (or, with ``partial``, only the partial: decode with
    ``FeedSpec(partial=True)``). A delete is a tombstone keyed by the entity id on companies,
    contacts and opportunities; on activities and orders, whose key is the contact id, a
    tombstone cannot name the entity, so it is a Debezium ``op=d`` event (decoded by the
    ``auto`` format, not ``record``).
    """
    kind = change[0]
    if kind == "delete":
        if _keyed_by_entity(topic):
            return _key(topic, change), None
        return as_debezium(topic, change, fields=fields)
    record = change[1] if kind != "patch" else (change[1] if partial else change[2])
    return _key(topic, change), _json(_rename(record, fields))


def as_connect(topic: str, change: Change, schemas: bool = True,
               fields: Optional[Mapping[str, str]] = None) -> tuple[bytes, Optional[bytes]]:
    """What a Kafka Connect source connector with the JsonConverter writes.

    ``schemas`` (``value.converter.schemas.enable``): ``{"schema": ..., "payload": record}``
    with the record's times as logical timestamps (``org.apache.kafka.connect.data.Timestamp``
    in ms when whole milliseconds, else ``io.debezium.time.MicroTimestamp``); without, the bare
    record. Patches send the merged record. Deletes are tombstones, except on activities and
    orders (see ``as_record``): a Debezium ``op=d`` event, in the envelope when ``schemas``.
    """
    kind = change[0]
    if kind == "delete":
        if _keyed_by_entity(topic):
            return _key(topic, change), None
        return as_debezium(topic, change, envelope=schemas, fields=fields)
    record = _rename(change[2] if kind == "patch" else change[1], fields)
    if not schemas:
        return _key(topic, change), _json(record)
    schema, payload = _struct(record, f"crm.{topic.split('.')[-1]}.Value", fields)
    return _key(topic, change), _json({"schema": schema, "payload": payload})


def as_debezium(topic: str, change: Change, envelope: bool = False, struct_key: bool = False,
                fields: Optional[Mapping[str, str]] = None) -> tuple[bytes, Optional[bytes]]:
    """A Debezium (Postgres connector) change event, optionally inside the Connect envelope
    with its schema (times then as ``io.debezium.time.MicroTimestamp``).

    upsert -> ``op=u``, snapshot -> ``op=r``, patch -> ``op=u`` with the merged row, delete ->
    ``op=d`` with ``before`` = hints plus the id (REPLICA IDENTITY FULL). ``source.ts_ms`` is
    the change's time, ``ts_ms`` trails it by ``CONNECTOR_LAG_MS``. ``struct_key``: the key as
    Debezium writes it before any key transform, ``{"<key field>": id}`` JSON (in the
    Connect envelope when ``envelope``) instead of the id text.
    """
    kind = change[0]
    when = record_time(topic, change)
    ms = _ms(when)
    source = {"version": "2.7.0.Final", "connector": "postgresql", "name": "crm", "db": "crm",
              "schema": "public", "table": topic.split(".")[-1], "snapshot": "true" if kind == "snapshot" else "false",
              "ts_ms": ms, "ts_us": _us(when)}
    if kind == "delete":
        before, after, op = _rename({**change[3], ID_FIELD[topic]: change[1]}, fields), None, "d"
    else:
        row = change[2] if kind == "patch" else change[1]
        before, after, op = None, _rename(row, fields), "r" if kind == "snapshot" else "u"
    event = {"before": before, "after": after, "source": source, "op": op, "ts_ms": ms + CONNECTOR_LAG_MS}
    key = _key(topic, change)
    if struct_key:
        name = _source_name(input_spec_for_topic(topic).key_field, fields)
        key_struct = {name: key.decode()}
        key = _json({"schema": {"type": "struct", "name": f"crm.public.{topic.split('.')[-1]}.Key", "optional": False,
                                "fields": [{"field": name, "type": "string", "optional": False}]},
                     "payload": key_struct} if envelope else key_struct)
    if not envelope:
        return key, _json(event)
    row_name = f"crm.public.{topic.split('.')[-1]}.Value"
    row_schema, before_payload = _struct(before, row_name, fields) if before else (None, None)
    after_schema, after_payload = _struct(after, row_name, fields) if after else (None, None)
    row_schema = row_schema or after_schema
    schema = {"type": "struct", "name": f"crm.public.{topic.split('.')[-1]}.Envelope", "optional": False, "fields": [
        {**row_schema, "field": "before", "optional": True},
        {**row_schema, "field": "after", "optional": True},
        {"type": "struct", "name": "io.debezium.connector.postgresql.Source", "field": "source", "optional": False,
         "fields": [{"field": k, "type": "int64" if isinstance(v, int) else "string", "optional": False}
                    for k, v in source.items()]},
        {"field": "op", "type": "string", "optional": False},
        {"field": "ts_ms", "type": "int64", "optional": True},
    ]}
    payload = {**event, "before": before_payload, "after": after_payload}
    return key, _json({"schema": schema, "payload": payload})


def as_salesforce(topic: str, change: Change, fields: Optional[Mapping[str, str]] = None
                  ) -> tuple[bytes, Optional[bytes]]:
    """A Salesforce Change Data Capture event (the JSON of the streaming API's payload).

    upsert and snapshot -> ``CREATE`` with every non-null field; patch -> ``UPDATE`` with the
    partial's fields, ``changedFields`` naming them and ``nulledFields`` those it clears; delete
    -> ``DELETE``. The id travels in ``recordIds``, not the body; ``commitTimestamp`` is the
    change's time in milliseconds.
    """
    kind = change[0]
    id_field = ID_FIELD[topic]
    header = {"entityName": SF_ENTITY[topic], "changeOrigin": "com/salesforce/api/soap/61.0;client=leadpulse-tests",
              "transactionKey": "0001a2b3-0000-0000-0000-000000000000", "sequenceNumber": 1,
              "commitTimestamp": _ms(record_time(topic, change)), "commitNumber": 1, "commitUser": "005000000000001",
              "diffFields": [], "changedFields": [], "nulledFields": []}
    if kind == "delete":
        header.update(changeType="DELETE", recordIds=[change[1]])
        return _key(topic, change), _json({"ChangeEventHeader": header})
    record = change[1]  # a patch sends only its partial: the event names what changed
    body = {k: v for k, v in _rename(record, fields).items() if k != _source_name(id_field, fields)}
    header["recordIds"] = [record[id_field]]
    if kind == "patch":
        header["changeType"] = "UPDATE"
        header["nulledFields"] = [k for k, v in body.items() if v is None]
        body = {k: v for k, v in body.items() if v is not None}
        header["changedFields"] = list(body) + header["nulledFields"]
    else:
        header["changeType"] = "CREATE"
        body = {k: v for k, v in body.items() if v is not None}
    return _key(topic, change), _json({"ChangeEventHeader": header, **body})


FORMS.update({
    "record": (as_record, {}),
    "connect": (as_connect, {"schemas": True}),
    "connect-schemaless": (as_connect, {"schemas": False}),
    "debezium": (as_debezium, {"envelope": False}),
    "debezium-connect": (as_debezium, {"envelope": True}),
    "salesforce": (as_salesforce, {}),
})


# ----------------------------------------------------------------------------- helpers
def _keyed_by_entity(topic: str) -> bool:
    return input_spec_for_topic(topic).key_field == ID_FIELD[topic]


def _key(topic: str, change: Change) -> bytes:
    key_field = input_spec_for_topic(topic).key_field
    if change[0] == "delete":
        value = change[1] if key_field == ID_FIELD[topic] else change[3].get(key_field)
        if value is None:
            raise ValueError(f"a delete on {topic} needs hints[{key_field!r}], its contract key")
    else:
        value = (change[2] if change[0] == "patch" else change[1])[key_field]
    return str(value).encode()


def _rename(record: Mapping[str, Any], fields: Optional[Mapping[str, str]]) -> dict:
    if not fields:
        return dict(record)
    back = {contract: source for source, contract in fields.items()}
    return {back.get(k, k): v for k, v in record.items()}


def _source_name(name: str, fields: Optional[Mapping[str, str]]) -> str:
    return next((s for s, c in (fields or {}).items() if c == name), name)


def _struct(record: Mapping[str, Any], name: str, fields: Optional[Mapping[str, str]]) -> tuple[dict, dict]:
    """A Connect struct schema for ``record`` and its payload (times as logical timestamps)."""
    times = {_source_name(f, fields) for f in TIME_FIELDS}
    specs, payload = [], {}
    for key, value in record.items():
        spec: dict = {"field": key, "optional": True}
        if key in times and isinstance(value, str):
            instant = _instant(value)
            if instant.microsecond % 1000 == 0:
                spec.update(type="int64", name="org.apache.kafka.connect.data.Timestamp", version=1)
                value = _ms(instant)
            else:
                spec.update(type="int64", name="io.debezium.time.MicroTimestamp", version=1)
                value = _us(instant)
        elif isinstance(value, bool):
            spec["type"] = "boolean"
        elif isinstance(value, int):
            spec["type"] = "int64"
        elif isinstance(value, float):
            spec["type"] = "double"
        elif isinstance(value, list):
            spec.update(type="array", items={"type": "string", "optional": False})
        else:
            spec["type"] = "string"
        specs.append(spec)
        payload[key] = value
    return {"type": "struct", "name": name, "optional": False, "fields": specs}, payload


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        instant = value
    else:
        instant = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return instant.astimezone(timezone.utc)


def _us(instant: datetime) -> int:
    return (instant - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def _ms(instant: datetime) -> int:
    return _us(instant) // 1000


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
