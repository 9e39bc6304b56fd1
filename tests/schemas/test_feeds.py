"""CDC feeds decode into the same changes whatever tool wrote them, and bad input is a value."""
from __future__ import annotations

import base64
import doctest
import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leadpulse.schemas.feeds
from leadpulse.schemas.events import Contact
from leadpulse.schemas.feeds import (
    FeedFormat,
    FeedSpec,
    Patch,
    Removal,
    Upsert,
    decode_change,
    feed_specs,
)
from leadpulse.schemas.parse import MAX_MESSAGE_BYTES, ParseError, parse_record
from tests.schemas import changefeed
from tests.schemas.changefeed import FORMS, record_time, render

T = "2026-03-01T12:00:00Z"
T_DT = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
T_MS = 1772366400000  # T in ms since 1970
WHEN = datetime(2026, 3, 2, tzinfo=timezone.utc)
CONTACT = {"contact_id": "c1", "company_id": "a1", "updated_at": T, "title": "CTO"}


def _j(value) -> bytes:
    return json.dumps(value).encode()


def _kind(result) -> str:
    assert isinstance(result, ParseError), result
    return result.reason.split(":", 1)[0]


def _debezium(after=None, before=None, op="u", **extra) -> dict:
    return {"before": before, "after": after, "op": op, "ts_ms": T_MS + 500,
            "source": {"connector": "postgresql", "ts_ms": T_MS}, **extra}


def test_module_doctests():
    result = doctest.testmod(leadpulse.schemas.feeds)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- feed_specs
def test_feed_specs_parse_the_setting():
    specs = feed_specs({"crm.contacts": {"format": "debezium", "fields": {"id": "contact_id"},
                                         "epoch": {"updated_at": "ms"}},
                        "crm.orders": {"partial": True}})
    assert specs["crm.contacts"] == FeedSpec(format=FeedFormat.DEBEZIUM, fields={"id": "contact_id"},
                                             epoch={"updated_at": "ms"})
    assert specs["crm.orders"].format is FeedFormat.AUTO and specs["crm.orders"].partial


@pytest.mark.parametrize("raw,needle", [
    ({"contacts": {}}, "'contacts' is not an input topic"),
    ({"crm.leads": {}}, "'crm.leads'"),
    ({"crm.contacts": {"format": "avro"}}, "crm.contacts: format"),
    ({"crm.contacts": {"epoch": {"updated_at": "days"}}}, "crm.contacts: epoch.updated_at"),
    ({"crm.contacts": {"field": {}}}, "crm.contacts: field"),
    ({"crm.contacts": {"fields": {"id": ""}}}, "crm.contacts: fields.id"),
    ({"crm.contacts": []}, "crm.contacts"),
    (["crm.contacts"], "expected a JSON object"),
])
def test_feed_specs_name_what_is_wrong(raw, needle):
    with pytest.raises(ValueError) as info:
        feed_specs(raw)
    assert needle in str(info.value)


def test_feed_spec_is_frozen():
    with pytest.raises(ValueError):
        FeedSpec().partial = True  # type: ignore[misc]


# ----------------------------------------------------------------------------- plain records
def test_record_is_an_upsert_as_sent():
    assert decode_change("crm.contacts", b"c1", _j(CONTACT), None) == Upsert(CONTACT)
    assert decode_change("crm.contacts", b"c1", _j(CONTACT), None, FeedSpec(format="record")) == Upsert(CONTACT)


def test_record_format_reads_no_shape_into_the_value():
    odd = {**CONTACT, "op": "d", "before": None}  # fields that look like Debezium's
    assert decode_change("crm.contacts", b"c1", _j(odd), None, FeedSpec(format="record")) == Upsert(odd)


def test_mapping_renames_and_integer_ids_become_strings():
    spec = FeedSpec(fields={"id": "contact_id", "account_id": "company_id", "modified": "updated_at"})
    got = decode_change("crm.contacts", b"42", _j({"id": 42, "account_id": 7, "modified": T, "vip": True}),
                        None, spec)
    assert got == Upsert({"contact_id": "42", "company_id": "7", "updated_at": T, "vip": True})
    assert parse_record("crm.contacts", got.record).contact_id == "42"


def test_booleans_are_not_ids():
    got = decode_change("crm.contacts", b"c1", _j({**CONTACT, "company_id": True}), None)
    assert got.record["company_id"] is True
    assert isinstance(parse_record("crm.contacts", got.record), ParseError)


def test_two_fields_mapped_onto_one_with_different_values_is_a_mapping_error():
    spec = FeedSpec(fields={"id": "contact_id"})
    err = decode_change("crm.contacts", b"c1", _j({**CONTACT, "id": "other"}), None, spec)
    assert _kind(err) == "mapping" and err.field == "contact_id"
    same = decode_change("crm.contacts", b"c1", _j({**CONTACT, "id": "c1"}), None, spec)
    assert same == Upsert(CONTACT)


@pytest.mark.parametrize("unit,value,expected", [
    ("s", 1772366400, "2026-03-01T12:00:00Z"),
    ("s", 1772366400.5, "2026-03-01T12:00:00.500000Z"),
    ("ms", 1772366400123, "2026-03-01T12:00:00.123000Z"),
    ("us", 1772366400123456, "2026-03-01T12:00:00.123456Z"),
    ("ns", 1772366400123456789, "2026-03-01T12:00:00.123456Z"),
    ("ms", "1772366400123", "2026-03-01T12:00:00.123000Z"),
    ("ms", -1000, "1969-12-31T23:59:59Z"),
])
def test_epoch_units(unit, value, expected):
    spec = FeedSpec(epoch={"updated_at": unit, "created_at": unit})
    got = decode_change("crm.contacts", b"c1", _j({**CONTACT, "updated_at": value, "created_at": value}), None, spec)
    assert got.record["updated_at"] == expected == got.record["created_at"]
    event = parse_record("crm.contacts", got.record)
    assert not isinstance(event, ParseError), event


def test_epoch_leaves_text_times_alone_and_rejects_out_of_range_numbers():
    spec = FeedSpec(epoch={"updated_at": "ms"})
    assert decode_change("crm.contacts", b"c1", _j(CONTACT), None, spec).record["updated_at"] == T
    err = decode_change("crm.contacts", b"c1", _j({**CONTACT, "updated_at": 10**30}), None, spec)
    assert _kind(err) == "time" and err.field == "updated_at"


def test_without_epoch_a_number_stays_a_number_for_the_contract_to_reject():
    got = decode_change("crm.contacts", b"c1", _j({**CONTACT, "updated_at": T_MS}), None)
    assert got.record["updated_at"] == T_MS
    assert isinstance(parse_record("crm.contacts", got.record), ParseError)


def test_partial_records_are_patches_when_asked():
    spec = FeedSpec(partial=True)
    part = {"contact_id": "c1", "updated_at": T, "title": None}
    assert decode_change("crm.contacts", b"c1", _j(part), None, spec) == Patch(part)
    assert decode_change("crm.contacts", b"c1", _j(CONTACT), None, spec) == Upsert(CONTACT)
    assert decode_change("crm.contacts", b"c1", _j(part), None) == Upsert(part)  # not asked: whole, and invalid
    err = decode_change("crm.contacts", b"c1", _j({"contact_id": "c1", "title": "CTO"}), None, spec)
    assert _kind(err) == "time" and err.field == "updated_at"
    # no id: a whole record missing its id, for the contract to name
    assert decode_change("crm.contacts", b"c1", _j({"updated_at": T}), None, spec) == Upsert({"updated_at": T})


@pytest.mark.parametrize("value,kind", [
    (b"\xff\xfe", "encoding"),
    (b"{not json", "json"),
    (b"", "json"),
    (b"[1, 2]", "shape"),
    (b'"text"', "shape"),
    (b"[" * 100_000 + b"]" * 100_000, "json"),
])
@pytest.mark.parametrize("fmt", list(FeedFormat))
def test_bad_bytes_are_errors_in_every_format(value, kind, fmt):
    assert _kind(decode_change("crm.contacts", b"c1", value, None, FeedSpec(format=fmt))) == kind


def test_oversize_message_is_a_size_error():
    big = _j({**CONTACT, "title": "x" * MAX_MESSAGE_BYTES})
    assert _kind(decode_change("crm.contacts", b"c1", big, None)) == "size"
    assert _kind(decode_change("crm.contacts", b"c" * (MAX_MESSAGE_BYTES + 1), None, WHEN)) == "size"


def test_unknown_topic():
    assert _kind(decode_change("crm.leads", b"c1", _j(CONTACT), None)) == "topic"
    # kinds and table stems name the topics too, as everywhere in schemas
    assert decode_change("contacts", b"c1", _j(CONTACT), None) == Upsert(CONTACT)


# ----------------------------------------------------------------------------- Kafka Connect
def _schema(*fields: dict, name: str = "crm.public.contacts.Value") -> dict:
    return {"type": "struct", "name": name, "optional": False, "fields": list(fields)}


def _f(field: str, type_: str = "string", name: str | None = None, **extra) -> dict:
    return {"field": field, "type": type_, "optional": True, **({"name": name} if name else {}), **extra}


@pytest.mark.parametrize("logical,value", [
    ("org.apache.kafka.connect.data.Timestamp", 1772366400123),
    ("io.debezium.time.Timestamp", 1772366400123),
    ("io.debezium.time.MicroTimestamp", 1772366400123000),
    ("io.debezium.time.NanoTimestamp", 1772366400123000000),
])
def test_connect_logical_timestamps_become_rfc3339(logical, value):
    schema = _schema(_f("contact_id"), _f("company_id"), _f("updated_at", "int64", logical))
    payload = {"contact_id": "c1", "company_id": "a1", "updated_at": value}
    for fmt in ("auto", "connect"):
        got = decode_change("crm.contacts", b"c1", _j({"schema": schema, "payload": payload}), None,
                            FeedSpec(format=fmt))
        assert got == Upsert({**payload, "updated_at": "2026-03-01T12:00:00.123000Z"})
        assert parse_record("crm.contacts", got.record).updated_at == datetime(2026, 3, 1, 12, 0, 0, 123000,
                                                                                tzinfo=timezone.utc)


def test_connect_zoned_timestamps_dates_and_decimals():
    schema = _schema(_f("opportunity_id"), _f("company_id"), _f("stage"),
                     _f("updated_at", "string", "io.debezium.time.ZonedTimestamp"),
                     _f("close_date", "int32", "io.debezium.time.Date"),
                     _f("amount", "bytes", "org.apache.kafka.connect.data.Decimal", parameters={"scale": "2"}),
                     name="crm.public.opportunities.Value")
    cents = (3000050).to_bytes(4, "big", signed=True)
    payload = {"opportunity_id": "o1", "company_id": "a1", "stage": "proposal",
               "updated_at": "2026-03-01T13:00:00+01:00", "close_date": 20543,
               "amount": base64.b64encode(cents).decode()}
    got = decode_change("crm.opportunities", b"o1", _j({"schema": schema, "payload": payload}), None)
    assert got.record["updated_at"] == "2026-03-01T13:00:00+01:00"
    assert got.record["close_date"] == "2026-03-31T00:00:00Z"
    assert got.record["amount"] == 30000.50
    assert not isinstance(parse_record("crm.opportunities", got.record), ParseError)


def test_connect_without_schemas_is_the_bare_payload():
    assert decode_change("crm.contacts", b"c1", _j(CONTACT), None, FeedSpec(format="connect")) == Upsert(CONTACT)


@pytest.mark.parametrize("value", [{"schema": _schema(_f("contact_id"))},
                                   {"schema": _schema(_f("contact_id")), "payload": None}])
def test_connect_envelope_without_payload(value):
    err = decode_change("crm.contacts", b"c1", _j(value), None, FeedSpec(format="connect"))
    assert _kind(err) == "envelope" and err.field == "payload"


def test_connect_envelope_around_a_debezium_event():
    row = _schema(_f("contact_id"), _f("company_id"), _f("updated_at", "int64", "io.debezium.time.MicroTimestamp"))
    schema = _schema({**row, "field": "before", "optional": True}, {**row, "field": "after", "optional": True},
                     _f("op"), _f("ts_ms", "int64"), name="crm.public.contacts.Envelope")
    payload = {"before": None, "after": {"contact_id": "c1", "company_id": "a1", "updated_at": T_MS * 1000},
               "op": "c", "ts_ms": T_MS}
    for fmt in ("auto", "connect", "debezium"):
        got = decode_change("crm.contacts", b"c1", _j({"schema": schema, "payload": payload}), None,
                            FeedSpec(format=fmt))
        assert got == Upsert({"contact_id": "c1", "company_id": "a1", "updated_at": T})


# ----------------------------------------------------------------------------- Debezium
@pytest.mark.parametrize("op,snapshot", [("c", False), ("u", False), ("r", True)])
def test_debezium_rows_are_upserts(op, snapshot):
    got = decode_change("crm.contacts", b"c1", _j(_debezium(CONTACT, op=op)), None)
    assert got == Upsert(CONTACT, snapshot=snapshot)


def test_debezium_delete_is_a_removal_at_the_commit_time_with_the_before_row_as_hints():
    spec = FeedSpec(fields={"id": "contact_id", "account_id": "company_id"})
    before = {"id": 5, "account_id": 9, "updated_at": T, "title": None}
    got = decode_change("crm.contacts", b"5", _j(_debezium(before=before, op="d")), None, spec)
    assert got == Removal("5", T_DT, {"contact_id": "5", "company_id": "9", "updated_at": T})


def test_debezium_delete_time_falls_back_to_ts_ms_then_the_record_time():
    event = _debezium(before=CONTACT, op="d")
    del event["source"]
    assert decode_change("crm.contacts", b"c1", _j(event), None).deleted_at.timestamp() * 1000 == T_MS + 500
    del event["ts_ms"]
    assert decode_change("crm.contacts", b"c1", _j(event), WHEN).deleted_at == WHEN
    assert _kind(decode_change("crm.contacts", b"c1", _j(event), None)) == "delete"


def test_debezium_delete_without_before_takes_the_id_from_the_key():
    event = _debezium(op="d")
    assert decode_change("crm.contacts", b"c1", _j(event), None) == Removal("c1", T_DT, {"contact_id": "c1"})
    key = _j({"schema": _schema(_f("id"), name="crm.public.contacts.Key"), "payload": {"id": 5}})
    assert decode_change("crm.contacts", key, _j(event), None, FeedSpec(fields={"id": "contact_id"})) == \
        Removal("5", T_DT, {"contact_id": "5"})
    err = decode_change("crm.activities", b"c1", _j(event), None)
    assert _kind(err) == "delete" and "REPLICA IDENTITY FULL" in err.reason


def test_debezium_activity_delete_keyed_by_contact_names_the_activity_from_before():
    before = {"activity_id": "a1", "contact_id": "c1", "type": "call", "timestamp": T}
    assert decode_change("crm.activities", b"c1", _j(_debezium(before=before, op="d")), None) == \
        Removal("a1", T_DT, before)
    # REPLICA IDENTITY DEFAULT: before holds the primary key only; the key adds the contact
    got = decode_change("crm.activities", b"c1", _j(_debezium(before={"activity_id": "a1", "type": None}, op="d")),
                        None)
    assert got == Removal("a1", T_DT, {"activity_id": "a1", "contact_id": "c1"})


@pytest.mark.parametrize("op,word", [("t", "truncate"), ("m", "message"), ("x", "'x'"), (None, "None")])
def test_debezium_other_ops_are_op_errors(op, word):
    for fmt in ("auto", "debezium"):
        err = decode_change("crm.contacts", b"c1", _j(_debezium(op=op)), None, FeedSpec(format=fmt))
        assert _kind(err) == "op" and word in err.reason and err.field == "op"


def test_debezium_message_event_without_rows_is_an_op_error_when_declared():
    event = {"op": "m", "ts_ms": T_MS, "message": {"prefix": "x", "content": "eA=="}}
    assert _kind(decode_change("crm.contacts", b"c1", _j(event), None, FeedSpec(format="debezium"))) == "op"


def test_debezium_upsert_without_after_is_an_envelope_error():
    assert _kind(decode_change("crm.contacts", b"c1", _j(_debezium(op="c")), None)) == "envelope"
    no_op = {"before": None, "after": CONTACT}
    assert _kind(decode_change("crm.contacts", b"c1", _j(no_op), None, FeedSpec(format="debezium"))) == "envelope"


def test_debezium_event_time_falls_back_to_the_commit_time():
    row = {"contact_id": 1, "company_id": 2}
    got = decode_change("crm.contacts", b"1", _j(_debezium(row)), None)
    assert got == Upsert({"contact_id": "1", "company_id": "2", "updated_at": T})
    none = {"before": None, "after": row, "op": "u"}
    assert decode_change("crm.contacts", b"1", _j(none), None) == Upsert({"contact_id": "1", "company_id": "2"})


def test_debezium_source_ts_us_gives_microseconds():
    event = _debezium({"contact_id": "c1", "company_id": "a1"})
    event["source"]["ts_us"] = T_MS * 1000 + 7
    assert decode_change("crm.contacts", b"c1", _j(event), None).record["updated_at"] == "2026-03-01T12:00:00.000007Z"


def test_toasted_columns_make_a_patch_without_them():
    after = {**CONTACT, "title": "__debezium_unavailable_value", "tags": ["__debezium_unavailable_value"]}
    got = decode_change("crm.contacts", b"c1", _j(_debezium(after)), None)
    assert got == Patch({"contact_id": "c1", "company_id": "a1", "updated_at": T})
    no_time = {"contact_id": "c1", "title": "__debezium_unavailable_value"}
    got = decode_change("crm.contacts", b"c1", _j(_debezium(no_time)), None)
    assert got == Patch({"contact_id": "c1", "updated_at": T})  # the commit time dates it
    got = decode_change("crm.contacts", b"c1", _j({"before": None, "after": no_time, "op": "u"}), None)
    assert _kind(got) == "time"


def test_extract_new_record_state_rows():
    flat = {**CONTACT, "__op": "u", "__source_ts_ms": T_MS, "__table": "contacts", "__deleted": "false"}
    for fmt in ("auto", "debezium", "connect"):
        assert decode_change("crm.contacts", b"c1", _j(flat), None, FeedSpec(format=fmt)) == Upsert(CONTACT)
    assert decode_change("crm.contacts", b"c1", _j({**flat, "__op": "r"}), None) == Upsert(CONTACT, snapshot=True)
    deleted = {**CONTACT, "__op": "d", "__deleted": "true", "__source_ts_ms": T_MS + 60_000}
    got = decode_change("crm.contacts", b"c1", _j(deleted), None)
    assert got == Removal("c1", datetime(2026, 3, 1, 12, 1, tzinfo=timezone.utc), CONTACT)
    rewrite = {**CONTACT, "__deleted": True}  # delete.handling.mode=rewrite without add.fields: the record time
    assert decode_change("crm.contacts", b"c1", _j(rewrite), WHEN) == Removal("c1", WHEN, CONTACT)
    assert _kind(decode_change("crm.contacts", b"c1", _j({**flat, "__op": "t"}), None)) == "op"
    no_time = {"contact_id": "c1", "company_id": "a1", "__op": "c", "__source_ts_ms": T_MS}
    assert decode_change("crm.contacts", b"c1", _j(no_time), None).record["updated_at"] == T


def test_debezium_format_takes_a_row_without_added_fields_as_a_row():
    assert decode_change("crm.contacts", b"c1", _j(CONTACT), None, FeedSpec(format="debezium")) == Upsert(CONTACT)


# ----------------------------------------------------------------------------- Salesforce
def _sf(change_type: str, ids=("003A",), **body) -> dict:
    header = {"entityName": "Contact", "changeType": change_type, "recordIds": list(ids),
              "commitTimestamp": T_MS, "changedFields": list(body), "nulledFields": [], "diffFields": []}
    return {"ChangeEventHeader": header, **body}


SF = FeedSpec(format="salesforce", fields={"Id": "contact_id", "AccountId": "company_id",
                                           "LastModifiedDate": "updated_at", "Title": "title"})


def test_salesforce_update_is_a_patch_with_nulled_fields_cleared():
    event = _sf("UPDATE", Title="VP Sales", LastModifiedDate="2026-03-01T12:00:00.000+0000", Department=None)
    event["ChangeEventHeader"]["nulledFields"] = ["Description"]
    for spec in (SF, SF.model_copy(update={"format": FeedFormat.AUTO})):
        got = decode_change("crm.contacts", b"003A", _j(event), None, spec)
        assert got == Patch({"title": "VP Sales", "updated_at": "2026-03-01T12:00:00.000+0000",
                             "Description": None, "contact_id": "003A"})
    without_time = _sf("UPDATE", Title="VP Sales")
    assert decode_change("crm.contacts", b"003A", _j(without_time), None, SF).record["updated_at"] == T


@pytest.mark.parametrize("change_type", ["CREATE", "UNDELETE"])
def test_salesforce_create_and_undelete_are_upserts(change_type):
    event = _sf(change_type, AccountId="001B", Title="CTO", LastModifiedDate="2026-03-01T12:00:00.000Z")
    got = decode_change("crm.contacts", b"003A", _j(event), None, SF)
    assert got == Upsert({"company_id": "001B", "title": "CTO", "updated_at": "2026-03-01T12:00:00.000Z",
                          "contact_id": "003A"})
    assert not isinstance(parse_record("crm.contacts", got.record), ParseError)


def test_salesforce_delete_is_a_removal_at_the_commit_time():
    assert decode_change("crm.contacts", b"003A", _j(_sf("DELETE")), None, SF) == \
        Removal("003A", T_DT, {"contact_id": "003A"})


@pytest.mark.parametrize("change_type", ["GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW",
                                         "OVERFLOW"])
def test_salesforce_gap_events_ask_for_a_resync(change_type):
    err = decode_change("crm.contacts", b"003A", _j(_sf(change_type)), None, SF)
    assert _kind(err) == "op" and "gap event: resynchronise this entity" in err.reason


def test_salesforce_bad_events():
    assert _kind(decode_change("crm.contacts", b"003A", _j(_sf("UPDATE", ids=("003A", "003B"))), None, SF)) == "shape"
    assert _kind(decode_change("crm.contacts", b"003A", _j(_sf("UPDATE", ids=())), None, SF)) == "envelope"
    assert _kind(decode_change("crm.contacts", b"003A", _j(_sf("MERGE")), None, SF)) == "op"
    assert _kind(decode_change("crm.contacts", b"003A", _j(CONTACT), None, SF)) == "envelope"
    assert _kind(decode_change("crm.contacts", b"003A", _j({"ChangeEventHeader": 3}), None)) == "envelope"


def test_salesforce_streaming_message_wrapper_is_unwrapped():
    message = {"schema": "x4Ah_Vo3pVvq0GZzPxR-fQ", "payload": _sf("DELETE"), "event": {"replayId": 12}}
    assert decode_change("crm.contacts", b"003A", _j(message), None) == Removal("003A", T_DT, {"contact_id": "003A"})


# ----------------------------------------------------------------------------- tombstones
@pytest.mark.parametrize("key,spec,hints", [
    (b"c1", FeedSpec(), {"contact_id": "c1"}),
    (b'"c1"', FeedSpec(), {"contact_id": "c1"}),
    (b"42", FeedSpec(), {"contact_id": "42"}),
    (b'{"id": 42}', FeedSpec(fields={"id": "contact_id"}), {"contact_id": "42"}),
    (b'{"contact_id": "c1", "company_id": "a1"}', FeedSpec(), {"contact_id": "c1", "company_id": "a1"}),
    (_j({"schema": {"type": "string", "optional": False}, "payload": "c1"}), FeedSpec(), {"contact_id": "c1"}),
    (_j({"schema": _schema(_f("id", "int64")), "payload": {"id": 42}}), FeedSpec(fields={"id": "contact_id"}),
     {"contact_id": "42"}),
])
def test_tombstone_keys(key, spec, hints):
    assert decode_change("crm.contacts", key, None, WHEN, spec) == Removal(hints["contact_id"], WHEN, hints)


def test_tombstone_with_naive_record_time_is_utc():
    naive = datetime(2026, 3, 2)
    assert decode_change("crm.contacts", b"c1", None, naive).deleted_at == WHEN


@pytest.mark.parametrize("key,when,field", [(None, WHEN, "key"), (b"", WHEN, "key"), (b"c1", None, ""),
                                            (b"null", WHEN, "key"), (b"[1]", WHEN, "key"), (b"true", WHEN, "key"),
                                            (b'{"id": 42}', WHEN, "contact_id"), (b'"  "', WHEN, "contact_id"),
                                            (b"\xff", WHEN, "key")])
def test_bad_tombstones(key, when, field):
    err = decode_change("crm.contacts", key, None, when)
    assert isinstance(err, ParseError) and err.field == field
    assert _kind(err) in ("tombstone", "encoding")


@pytest.mark.parametrize("topic", ["crm.activities", "crm.orders"])
def test_tombstone_keyed_by_contact_cannot_delete_an_activity_or_order(topic):
    for key in (b"c1", b'"c1"', b'{"contact_id": "c1"}'):
        err = decode_change(topic, key, None, WHEN)
        assert _kind(err) == "tombstone" and "op=d" in err.reason, err
    entity = changefeed.ID_FIELD[topic]
    keyed = decode_change(topic, _j({entity: "x1", "contact_id": "c1"}), None, WHEN)
    assert keyed == Removal("x1", WHEN, {entity: "x1", "contact_id": "c1"})


# ----------------------------------------------------------------------------- never raises
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["op", "before", "after", "schema", "payload", "ChangeEventHeader", "changeType",
                         "recordIds", "nulledFields", "commitTimestamp", "source", "ts_ms", "__op", "__deleted",
                         "contact_id", "updated_at", "type", "name", "fields", "field", "x"]), inner, max_size=5),
    max_leaves=20)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(list(changefeed.ID_FIELD)), fmt=st.sampled_from(list(FeedFormat)),
       key=st.none() | st.binary(max_size=12) | _json_values.map(_j),
       value=st.none() | st.binary(max_size=40) | _json_values.map(_j), partial=st.booleans())
def test_never_raises(topic, fmt, key, value, partial):
    spec = FeedSpec(format=fmt, partial=partial, fields={"x": "contact_id"}, epoch={"updated_at": "ms"})
    result = decode_change(topic, key, value, WHEN, spec)
    assert isinstance(result, (Upsert, Patch, Removal, ParseError))
    if isinstance(result, ParseError):
        assert result.reason.split(":", 1)[0] in {"envelope", "op", "tombstone", "delete", "mapping", "time", "json",
                                                  "encoding", "size", "shape"}, result
    if isinstance(result, Removal):
        assert isinstance(result.entity_id, str) and result.deleted_at.tzinfo is not None


# ----------------------------------------------------------------------------- one stream, every form
RECORDS = {
    "crm.companies": {"company_id": "co1", "updated_at": "2026-03-01T12:00:00Z", "name": "Acme",
                      "industry": "software", "employees": 250, "revenue": 1.5e7, "tech_stack": ["aws", "dbt"],
                      "country": "DE"},
    "crm.contacts": {"contact_id": "ct1", "company_id": "co1", "updated_at": "2026-03-01T13:00:00.123456+01:00",
                     "title": "VP Engineering", "seniority": "vp", "created_at": "2026-01-01T00:00:00Z"},
    "crm.activities": {"activity_id": "a1", "contact_id": "ct1", "type": "page_view",
                       "timestamp": "2026-03-01T12:00:00.250Z", "page": "/pricing", "duration_s": 42.5},
    "crm.opportunities": {"opportunity_id": "op1", "company_id": "co1", "stage": "proposal",
                          "updated_at": "2026-03-01T12:00:00Z", "contact_id": "ct1", "amount": 50000.0,
                          "close_date": "2026-03-31T00:00:00Z"},
    "crm.orders": {"order_id": "or1", "contact_id": "ct1", "amount": 1200.0, "timestamp": "2026-03-01T12:00:00Z",
                   "company_id": "co1"},
}
LATER = "2026-03-02T09:30:00Z"
PATCHED = {"crm.companies": {"employees": 300, "country": None}, "crm.contacts": {"title": "CTO", "seniority": None},
           "crm.activities": {"duration_s": 60.0}, "crm.opportunities": {"stage": "negotiation", "amount": None},
           "crm.orders": {"amount": 1300.0}}


def _changes(topic: str) -> list[tuple]:
    record = RECORDS[topic]
    id_field, time_field = changefeed.ID_FIELD[topic], changefeed.TIME_FIELD[topic]
    partial = {id_field: record[id_field], time_field: LATER, **PATCHED[topic]}
    merged = {k: v for k, v in {**record, **partial}.items() if v is not None}
    hints = {k: v for k, v in record.items() if k in ("contact_id", "company_id")}
    return [("upsert", record), ("snapshot", record), ("patch", partial, merged),
            ("delete", record[id_field], datetime(2026, 3, 3, 8, 0, 0, 125000, tzinfo=timezone.utc), hints)]


def _expected(topic: str, change: tuple, form: str):
    kind = change[0]
    if kind == "upsert":
        return Upsert(change[1])
    if kind == "snapshot":
        return Upsert(change[1], snapshot=form.startswith("debezium"))
    if kind == "patch":
        return Patch(change[1]) if form == "salesforce" else Upsert(change[2])
    return Removal(change[1], change[2], {changefeed.ID_FIELD[topic]: change[1], **change[3]})


def _same(topic: str, got, want) -> None:
    assert type(got) is type(want), got
    if isinstance(want, Upsert):
        assert got.snapshot == want.snapshot
        event = parse_record(topic, got.record)
        assert not isinstance(event, ParseError), event  # what every form decodes to meets the contract
        assert event == parse_record(topic, want.record)
    elif isinstance(want, Patch):
        assert got.record.keys() == want.record.keys()
        for name, value in want.record.items():
            if name in changefeed.TIME_FIELDS:
                assert changefeed._instant(got.record[name]) == changefeed._instant(value)
            else:
                assert got.record[name] == value, name
    else:
        assert (got.entity_id, got.deleted_at) == (want.entity_id, want.deleted_at)
        # hints: as much of the deleted row as the form carries (a tombstone only its key), never
        # anything else, and always the contract key (an activity's or order's contact)
        assert all(want.hints.get(k) == v for k, v in got.hints.items()), got.hints
        key_field = changefeed.input_spec_for_topic(topic).key_field
        assert got.hints[key_field] == want.hints[key_field]


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("topic", list(RECORDS))
def test_every_form_decodes_to_the_same_changes(topic, form):
    for change in _changes(topic):
        key, value = render(form, topic, change)
        assert key.decode() == str((change[2] if change[0] == "patch" else change[1])[
            changefeed.input_spec_for_topic(topic).key_field] if change[0] != "delete" else
            (change[1] if topic in ("crm.companies", "crm.contacts", "crm.opportunities") else change[3]["contact_id"]))
        got = decode_change(topic, key, value, record_time(topic, change))
        _same(topic, got, _expected(topic, change, form))


@pytest.mark.parametrize("form", list(FORMS))
def test_every_form_decodes_the_same_through_a_field_mapping(form):
    fields = {"Id": "contact_id", "AccountId": "company_id", "LastModifiedDate": "updated_at"}
    for change in _changes("crm.contacts"):
        key, value = render(form, "crm.contacts", change, fields=fields)
        if value is not None:
            assert b"AccountId" in value or change[0] in ("patch", "delete")
        got = decode_change("crm.contacts", key, value, record_time("crm.contacts", change), FeedSpec(fields=fields))
        _same("crm.contacts", got, _expected("crm.contacts", change, form))


def test_declared_formats_decode_their_own_forms():
    declared = {"record": "record", "connect": "connect", "connect-schemaless": "connect", "debezium": "debezium",
                "debezium-connect": "debezium", "salesforce": "salesforce"}
    for form, fmt in declared.items():
        for topic in RECORDS:
            for change in _changes(topic):
                if change[0] == "delete" and form in ("record", "connect", "connect-schemaless") \
                        and topic in ("crm.activities", "crm.orders"):
                    continue  # a Debezium op=d event, for the auto format (changefeed.as_record)
                key, value = render(form, topic, change)
                got = decode_change(topic, key, value, record_time(topic, change), FeedSpec(format=fmt))
                _same(topic, got, _expected(topic, change, form))


def test_record_form_with_partial_patches():
    for topic in RECORDS:
        change = _changes(topic)[2]
        key, value = changefeed.as_record(topic, change, partial=True)
        got = decode_change(topic, key, value, None, FeedSpec(partial=True))
        if topic == "crm.companies":
            # id and time are all a company requires: a partial record cannot be told from a
            # whole one (docs/bring-your-own-crm.md, "Partial updates")
            assert got == Upsert(change[1])
        else:
            _same(topic, got, Patch(change[1]))


def test_debezium_struct_keys_decode_with_the_key_mapping():
    change = _changes("crm.contacts")[3]
    for envelope in (False, True):
        key, value = changefeed.as_debezium("crm.contacts", change, envelope=envelope, struct_key=True)
        assert key.startswith(b"{")
        assert decode_change("crm.contacts", key, value, None).entity_id == "ct1"
        assert decode_change("crm.contacts", key, None, WHEN) == Removal("ct1", WHEN, {"contact_id": "ct1"})


_contacts = st.fixed_dictionaries(
    {"contact_id": st.text("abc123-", min_size=1, max_size=12), "company_id": st.text("xyz9", min_size=1, max_size=8),
     "updated_at": st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1),
                                timezones=st.just(timezone.utc)).map(lambda d: d.isoformat())},
    optional={"title": st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s),
              "seniority": st.sampled_from(["ic", "vp", "c_level"]),
              "created_at": st.just("2025-12-31T23:00:00-01:00")})


@settings(max_examples=60, deadline=None)
@given(record=_contacts, form=st.sampled_from(list(FORMS)))
def test_any_contact_survives_every_form(record, form):
    for kind in ("upsert", "snapshot"):
        change = (kind, record)
        key, value = render(form, "crm.contacts", change)
        got = decode_change("crm.contacts", key, value, record_time("crm.contacts", change))
        _same("crm.contacts", got, _expected("crm.contacts", change, form))
        assert isinstance(parse_record("crm.contacts", got.record), Contact)


# ----------------------------------------------------------------------------- the docs' examples
def test_the_docs_examples_decode_as_the_docs_say():
    """docs/bring-your-own-crm.md#change-data-capture-feeds: its settings parse and its events
    decode to what the text says."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "bring-your-own-crm.md").read_text()
    feeds = {name: feed_specs(json.loads(body))
             for name, body in re.findall(r"<!-- feeds: (\S+) -->\n```json\n(.*?)```", text, flags=re.S)}
    assert set(feeds) == {"debezium", "salesforce"}
    config = json.loads(re.search(r"<!-- feed-config: debezium -->\n```json\n(.*?)```", text, flags=re.S).group(1))
    assert "public.activities:contact_id" in config["config"]["message.key.columns"]
    assert config["config"]["tombstones.on.delete"] == "false"
    events = re.findall(r"<!-- event: (\S+) (\S+) (\S+) -->\n```json\n(.*?)```", text, flags=re.S)
    got = {name: decode_change(topic, key.encode(), body.encode(), None, feeds[name][topic])
           for name, topic, key, body in events}
    at = datetime(2026, 2, 1, 10, tzinfo=timezone.utc)
    assert got["debezium"] == Removal("9001", at, {"activity_id": "9001", "contact_id": "17", "type": "call",
                                                   "timestamp": "2026-01-30T15:00:00Z"})
    assert got["salesforce"] == Patch({"title": "VP Sales", "updated_at": "2026-02-01T10:00:00.000Z",
                                       "department": None, "contact_id": "0035g00000XyZaBAAV"})


def test_a_plain_record_keeps_the_contracts_string_ids_a_cdc_row_gets_them():
    from leadpulse.schemas.parse import ParseError, parse_record
    plain = json.dumps({"activity_id": "a1", "contact_id": 17, "type": "call",
                        "timestamp": "2026-01-05T00:00:00Z"}).encode()
    change = decode_change("crm.activities", b"17", plain, None)
    assert isinstance(parse_record("crm.activities", change.record), ParseError), "a number is not an id"
    row = json.dumps({"op": "c", "before": None, "after": json.loads(plain), "ts_ms": 1767225600000}).encode()
    assert decode_change("crm.activities", b"17", row, None).record["contact_id"] == "17"
    mapped = decode_change("crm.activities", b"17", plain, None, FeedSpec(fields={"type": "type"}))
    assert mapped.record["contact_id"] == "17", "a configured feed maps integer keys too"
