"""Every input contract accepts valid events and rejects each kind of bad value precisely."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from leadpulse.schemas import INPUT_TOPICS, OUTPUT_TOPICS, ParseError, parse_event, parse_record
from leadpulse.schemas.events import Activity, Company, LeadScore
from leadpulse.schemas.tables import event_json, event_key, read_tables, write_table
from leadpulse.schemas.topics import input_spec_for_topic
from leadpulse.schemas.types import BASE_EDGE_TYPES, EDGE_TYPES, NODE_TYPES, reverse

T = "2026-03-01T12:00:00Z"

VALID = {
    "crm.companies": {"company_id": "co1", "updated_at": T, "name": "Acme", "industry": "software",
                      "employees": 250, "revenue": 1.5e7, "tech_stack": ["aws", "snowflake"], "country": "DE"},
    "crm.contacts": {"contact_id": "ct1", "company_id": "co1", "updated_at": T, "title": "VP Engineering",
                     "department": "engineering", "seniority": "vp", "source": "webinar", "created_at": T},
    "crm.activities": {"activity_id": "a1", "contact_id": "ct1", "type": "page_view", "timestamp": T,
                       "page": "pricing", "duration_s": 42.5, "sentiment": 0.3, "opportunity_id": "op1"},
    "crm.opportunities": {"opportunity_id": "op1", "company_id": "co1", "stage": "proposal", "updated_at": T,
                          "contact_id": "ct1", "amount": 50000, "created_at": T, "close_date": T},
    "crm.orders": {"order_id": "or1", "contact_id": "ct1", "amount": 1200.0, "timestamp": T, "company_id": "co1"},
}

REQUIRED = {
    "crm.companies": ["company_id", "updated_at"],
    "crm.contacts": ["contact_id", "company_id", "updated_at"],
    "crm.activities": ["activity_id", "contact_id", "type", "timestamp"],
    "crm.opportunities": ["opportunity_id", "company_id", "stage", "updated_at"],
    "crm.orders": ["order_id", "contact_id", "amount", "timestamp"],
}


def _raw(d: dict) -> bytes:
    return json.dumps(d).encode()


@pytest.mark.parametrize("topic", list(VALID))
def test_valid_event_parses_with_only_required_fields_too(topic):
    full = parse_event(topic, _raw(VALID[topic]))
    assert not isinstance(full, ParseError), full
    minimal = {k: VALID[topic][k] for k in REQUIRED[topic]}
    ev = parse_event(topic, _raw(minimal))
    assert not isinstance(ev, ParseError), ev
    assert ev.event_time == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("topic,field", [(t, f) for t, fs in REQUIRED.items() for f in fs])
def test_missing_required_field_names_the_field(topic, field):
    d = dict(VALID[topic])
    del d[field]
    err = parse_event(topic, _raw(d))
    assert isinstance(err, ParseError)
    assert err.field == field and err.reason.startswith("missing")


@pytest.mark.parametrize("topic,field,value,kind", [
    ("crm.companies", "employees", "many", "int_parsing"),
    ("crm.companies", "employees", -5, "greater_than_equal"),
    ("crm.companies", "employees", 10**30, "less_than_equal"),
    ("crm.companies", "revenue", "NaN", "finite"),
    ("crm.companies", "tech_stack", "aws", "list_type"),
    ("crm.companies", "updated_at", "yesterday", "datetime"),
    ("crm.companies", "updated_at", "2026-03-01T12:00:00", "zone"),
    ("crm.companies", "company_id", 123, "string_type"),
    ("crm.companies", "company_id", "", "string_too_short"),
    ("crm.companies", "industry", "", "string_too_short"),
    ("crm.activities", "sentiment", 3, "less_than_equal"),
    ("crm.activities", "duration_s", -1, "greater_than_equal"),
    ("crm.activities", "type", None, "string_type"),
    ("crm.orders", "amount", "a lot", "float_parsing"),
    ("crm.orders", "amount", 1e300, "less_than_equal"),
    ("crm.orders", "amount", True, "boolean"),
    ("crm.companies", "employees", False, "boolean"),
    ("crm.activities", "sentiment", "inf", "finite"),
    ("crm.opportunities", "close_date", 17, "zone"),
])
def test_bad_value_is_a_precise_error(topic, field, value, kind):
    d = dict(VALID[topic])
    d[field] = value
    err = parse_event(topic, _raw(d))
    assert isinstance(err, ParseError), f"{field}={value!r} was accepted"
    assert err.field == field
    text = err.reason.lower().replace(" ", "_")
    assert kind in text or (kind == "zone" and ("zone" in text or "timezone" in text)) \
        or (kind == "datetime" and "datetime" in text), err.reason


@pytest.mark.parametrize("raw,kind", [
    (b"\xff\xfe garbage", "encoding"),
    (b"{not json", "json"),
    (b"[1, 2, 3]", "shape"),
    (b'"a string"', "shape"),
    (None, "shape"),
    (b"x" * 2_000_000, "size"),
    (b"[" * 100_000, "json"),
])
def test_garbage_is_an_error_never_an_exception(raw, kind):
    err = parse_event("crm.activities", raw)
    assert isinstance(err, ParseError)
    assert err.reason.startswith(kind), err.reason


def test_unknown_fields_are_kept_and_categories_are_open():
    d = dict(VALID["crm.activities"], type="podcast_listen", campaign="q3-launch")
    ev = parse_event("crm.activities", _raw(d))
    assert isinstance(ev, Activity) and ev.type == "podcast_listen"
    assert ev.model_extra == {"campaign": "q3-launch"}


def test_zones_are_normalised_to_utc():
    d = dict(VALID["crm.companies"], updated_at="2026-03-01T14:00:00+02:00")
    ev = parse_event("crm.companies", _raw(d))
    assert isinstance(ev, Company) and ev.updated_at == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def test_unknown_topic_is_an_error():
    assert isinstance(parse_record("crm.nope", {}), ParseError)


def test_wire_form_round_trips_and_keys_follow_the_contract():
    for spec in INPUT_TOPICS:
        ev = parse_event(spec.name, _raw(VALID[spec.name]))
        again = parse_event(spec.name, event_json(ev))
        assert again == ev
        assert event_key(ev) == str(VALID[spec.name][spec.key_field]).encode()


def test_tables_round_trip(tmp_path):
    events = [parse_event(s.name, _raw(VALID[s.name])) for s in INPUT_TOPICS]
    for spec, ev in zip(INPUT_TOPICS, events):
        write_table(tmp_path, spec, [ev])
    back, errors = read_tables(tmp_path)
    assert errors == []
    assert sorted(back, key=lambda e: e.kind) == sorted(events, key=lambda e: e.kind)


def test_bad_table_rows_are_reported_with_row_numbers(tmp_path):
    (tmp_path / "orders.csv").write_text(
        "order_id,contact_id,amount,timestamp\n"
        "or1,ct1,10,2026-01-01T00:00:00Z\n"
        "or2,ct1,ten,2026-01-01T00:00:00Z\n")
    events, errors = read_tables(tmp_path)
    assert len(events) == 1
    assert [(e.table, e.row, e.error.field) for e in errors] == [("orders", 2, "amount")]


def test_output_contracts_validate():
    score = LeadScore(contact_id="ct1", company_id="co1", score=0.7, tier="A", previous_score=None,
                      delta=0.7, model_version="v1", as_of=T, scored_at=T, cause="crm.activities:a1",
                      top_factors=[{"factor": "viewed pricing then requested a demo", "contribution": 0.2}])
    assert score.as_of.tzinfo is not None
    assert {s.name for s in OUTPUT_TOPICS} == {"leads.scores", "leads.alerts", "crm.deadletter", "models.updates"}
    with pytest.raises(ValueError):  # pydantic's ValidationError
        LeadScore(**{**score.model_dump(), "score": 1.5})


def test_type_names():
    assert set(NODE_TYPES) == {"contact", "company", "activity", "opportunity", "order"}
    assert len(EDGE_TYPES) == 2 * len(BASE_EDGE_TYPES)
    assert reverse(("contact", "works_at", "company")) == ("company", "rev_works_at", "contact")
    assert reverse(reverse(("contact", "works_at", "company"))) == ("contact", "works_at", "company")
    assert input_spec_for_topic("activity").name == "crm.activities"
