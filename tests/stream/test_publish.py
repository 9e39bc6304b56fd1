"""Publishing CSV tables to a real broker and reading them back (no mocks)."""
from __future__ import annotations

import re
import time
from collections import defaultdict
from pathlib import Path

import pytest

from leadpulse.schemas.parse import ParseError, parse_event
from leadpulse.schemas.tables import event_key, read_tables
from leadpulse.schemas.topics import INPUT_TOPICS, input_spec_for_topic
from leadpulse.stream.consume import consume
from leadpulse.stream.publish import publish

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tables.md"


def doc_tables() -> dict[str, str]:
    """File name -> CSV text of every example in docs/tables.md."""
    found = dict(re.findall(r"### (\w+\.csv)\n.*?```csv\n(.*?)```", DOCS.read_text(), re.S))
    assert set(found) == {f"{s.table}.csv" for s in INPUT_TOPICS}
    return found


@pytest.fixture
def tables(tmp_path: Path) -> Path:
    for name, text in doc_tables().items():
        (tmp_path / name).write_text(text)
    return tmp_path


def _inverse(topic_map: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in topic_map.items()}


def test_doc_examples_are_valid(tables: Path) -> None:
    events, errors = read_tables(tables)
    assert errors == []
    assert len(events) == 14
    contact = next(e for e in events if getattr(e, "contact_id", None) == "c-ada" and e.kind == "contact")
    assert contact.model_extra == {"linkedin_url": "https://example.com/ada"}  # extra column kept


def test_publish_round_trips_every_event(broker: str, topic_map: dict[str, str], tables: Path) -> None:
    events, _ = read_tables(tables)
    report = publish(tables, broker, progress=False, topics=topic_map, partitions=3)
    assert report.errors == [] and report.sent == len(events)
    expected_counts = defaultdict(int)
    for ev in events:
        expected_counts[topic_map[input_spec_for_topic(ev.kind).name]] += 1
    assert {t: n for t, n in report.counts.items() if n} == dict(expected_counts)

    inputs = [topic_map[s.name] for s in INPUT_TOPICS]
    records = consume(broker, inputs, expected=len(events), timeout=30)
    assert len(records) == len(events)
    default_of = _inverse(topic_map)
    got = []
    for r in records:
        parsed = parse_event(default_of[r.topic], r.value)
        assert not isinstance(parsed, ParseError), parsed
        assert r.key == event_key(parsed)
        got.append((r.topic, r.partition, r.offset, parsed))
    # every event arrives unchanged (extras included), each exactly once
    assert sorted(map(repr, (g[3] for g in got))) == sorted(map(repr, events))
    # and within a partition in event-time order (publish sends in time order)
    by_partition = defaultdict(list)
    for topic, partition, _offset, ev in sorted(got, key=lambda g: (g[0], g[1], g[2])):
        by_partition[(topic, partition)].append(ev.event_time)
    for times in by_partition.values():
        assert times == sorted(times)
    # one key always lands on one partition
    partitions_of_key = defaultdict(set)
    for r in records:
        partitions_of_key[(r.topic, r.key)].add(r.partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())


def test_bad_rows_are_reported_not_raised(broker: str, topic_map: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "activities.csv").write_text(
        "activity_id,contact_id,type,timestamp,sentiment\n"
        "a1,c1,page_view,2026-01-01T00:00:00Z,\n"
        "a2,c1,page_view,2026-01-01T00:00:00,\n"         # no zone
        "a3,,email_open,2026-01-02T00:00:00Z,\n"          # empty required field
        "a4,c2,call,2026-01-03T00:00:00Z,7\n"             # sentiment out of range
        "a5,c2,call,2026-01-04T00:00:00Z,-0.5\n")
    (tmp_path / "orders.csv").write_text("order_id,contact_id,amount,timestamp\nr1,c1,lots,2026-01-05T00:00:00Z\n")
    report = publish(tmp_path, broker, progress=False, topics=topic_map, partitions=1)
    assert report.sent == 2
    assert report.counts[topic_map["crm.activities"]] == 2 and report.counts[topic_map["crm.orders"]] == 0
    assert [(e.table, e.row) for e in report.errors] == [("activities", 2), ("activities", 3),
                                                          ("activities", 4), ("orders", 1)]
    assert "timestamp" in str(report.errors[0]) and "sentiment" in str(report.errors[2])
    records = consume(broker, [topic_map["crm.activities"]], expected=2, timeout=30)
    assert sorted(r.key for r in records) == [b"c1", b"c2"]


def test_missing_directory_is_an_error(broker: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        publish(tmp_path / "nope", broker, progress=False)


def _activities(path: Path, n: int, step_s: int) -> None:
    rows = [f"a{i},c{i % 3},page_view,2026-01-01T{(i * step_s) // 3600:02d}:{(i * step_s) // 60 % 60:02d}:{i * step_s % 60:02d}Z"
            for i in range(n)]
    (path / "activities.csv").write_text("activity_id,contact_id,type,timestamp\n" + "\n".join(rows) + "\n")


def test_paced_by_rate(broker: str, topic_map: dict[str, str], tmp_path: Path) -> None:
    _activities(tmp_path, 30, 1)
    t = time.monotonic()
    report = publish(tmp_path, broker, rate=100, progress=False, topics=topic_map, partitions=2)
    assert report.sent == 30
    assert time.monotonic() - t >= 0.5 * 29 / 100  # loose lower bound only; never an upper one
    assert len(consume(broker, [topic_map["crm.activities"]], expected=30, timeout=30)) == 30


def test_paced_by_speedup(broker: str, topic_map: dict[str, str], tmp_path: Path) -> None:
    _activities(tmp_path, 20, 60)  # 19 minutes of event time
    report = publish(tmp_path, broker, speedup=19 * 60 / 0.3, progress=False, topics=topic_map, partitions=2)
    assert report.sent == 20
    assert report.elapsed_s >= 0.5 * 0.3
    assert len(consume(broker, [topic_map["crm.activities"]], expected=20, timeout=30)) == 20


def test_rate_and_speedup_are_exclusive(broker: str, tables: Path) -> None:
    with pytest.raises(ValueError):
        publish(tables, broker, rate=10, speedup=10, progress=False, partitions=None)


def test_empty_directory_sends_nothing(broker: str, topic_map: dict[str, str], tmp_path: Path) -> None:
    report = publish(tmp_path, broker, progress=False, topics=topic_map, partitions=1)
    assert report.sent == 0 and report.errors == []
    assert set(report.counts) == {topic_map[s.name] for s in INPUT_TOPICS}
