"""Stage-1 validation of event time against the worker's clock (docs/architecture.md#invariant-7):
an event dated further ahead than the tolerance is a dead letter with its reason, one within it
is an event."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from leadpulse.schemas.events import Activity, Contact
from leadpulse.schemas.tables import format_time
from leadpulse.stream.ingest import FUTURE, RawRecord, validate

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=timezone.utc)


def _activity(when: str) -> RawRecord:
    value = {"activity_id": "ac_1", "contact_id": "ct_1", "type": "page_view", "timestamp": when}
    return RawRecord("crm.activities", 3, 41, b"ct_1", json.dumps(value).encode())


def test_a_far_future_event_is_a_dead_letter_that_says_why():
    record = _activity("2099-01-01T00:00:00Z")
    letter, kind = validate(record, "crm.activities", NOW, 3600)
    assert kind == FUTURE == "future"
    assert letter.error == ("timestamp: future: event time 2099-01-01T00:00:00Z is 26,325 days ahead of the "
                            "worker's clock 2026-12-05T09:00:00Z (tolerance 3600 s, LEADPULSE_MAX_FUTURE_SECONDS)")
    assert (letter.source_topic, letter.partition, letter.offset) == ("crm.activities", 3, 41)
    assert base64.b64decode(letter.raw) == record.value
    assert letter.received_at == NOW


@pytest.mark.parametrize("ahead, accepted", [(timedelta(seconds=3600), True), (timedelta(minutes=5), True),
                                             (timedelta(days=-400), True),
                                             (timedelta(seconds=3600, microseconds=1), False)])
def test_the_tolerance_is_inclusive(ahead, accepted):
    result = validate(_activity(format_time(NOW + ahead)), "crm.activities", NOW, 3600)
    assert isinstance(result, Activity) is accepted
    if not accepted:
        assert result[1] == FUTURE and "is 60 minutes ahead" in result[0].error


def test_a_version_is_checked_on_updated_at():
    value = {"contact_id": "ct_1", "company_id": "co_1", "updated_at": "2026-12-05T12:00:00Z",
             "created_at": "2026-01-01T00:00:00Z"}
    record = RawRecord("crm.contacts", 0, 0, b"ct_1", json.dumps(value).encode())
    letter, kind = validate(record, "crm.contacts", NOW, 600)
    assert kind == "future" and letter.error.startswith("updated_at: future: event time 2026-12-05T12:00:00Z is 3 hours")
    assert isinstance(validate(record, "crm.contacts", NOW, 4 * 3600), Contact)


def test_without_a_bound_or_with_a_huge_one_any_time_is_accepted():
    record = _activity("9999-12-31T23:59:59Z")
    assert isinstance(validate(record, "crm.activities", NOW), Activity)
    assert isinstance(validate(record, "crm.activities", NOW, 1e15), Activity)  # no datetime overflow


def test_a_malformed_record_keeps_its_parse_reason():
    record = RawRecord("crm.activities", 0, 0, None, b'{"timestamp": "2099-01-01T00:00:00Z"}')
    _, kind = validate(record, "crm.activities", NOW, 3600)
    assert kind != FUTURE
