"""The demo's live view over the worker's real /metrics exposition."""
from __future__ import annotations

import json

import pytest

from leadpulse.stream.liveview import LiveView, MetricsSample, parse_metrics
from leadpulse.stream.metrics import Metrics


def _sample(m: Metrics):
    return parse_metrics(m.exposition().decode())


def test_quantiles_interpolate_inside_buckets() -> None:
    m = Metrics()
    assert _sample(m).quantile(0.5) is None
    for _ in range(100):
        m.event_to_publish_seconds.observe(0.004)
    p50 = _sample(m).quantile(0.5)
    assert 0.0 < p50 <= 0.005  # inside the bucket holding 4 ms


def test_since_shows_the_recent_latency_a_cumulative_histogram_hides() -> None:
    """A worker that was 20 s behind and then caught up: the window says milliseconds."""
    m = Metrics()
    m.consumed.labels(topic="crm.activities").inc(1000)
    for _ in range(1000):
        m.event_to_publish_seconds.observe(20.0)
    earlier = _sample(m)
    m.consumed.labels(topic="crm.activities").inc(300)
    for _ in range(300):
        m.event_to_publish_seconds.observe(0.05)
    now = _sample(m)
    recent = now.since(earlier)
    assert recent.consumed == 300
    assert recent.quantile(0.99) <= 0.1
    assert now.quantile(0.5) > 10  # the cumulative median is still the backlog's
    screen = LiveView().render(now, 150.0, 12.0, (10.0, recent))
    assert "last 10 s p50" in screen and "since start p50" in screen


def test_since_after_a_restart_is_the_new_sample() -> None:
    old, new = Metrics(), Metrics()
    old.consumed.labels(topic="crm.contacts").inc(50)
    old.event_to_publish_seconds.observe(1.0)
    new.consumed.labels(topic="crm.contacts").inc(5)
    new.event_to_publish_seconds.observe(0.01)
    later = _sample(new)
    assert later.since(_sample(old)) is later


@pytest.mark.parametrize("factors, shown", [([{"factor": "viewed pricing then requested a demo",
                                               "contribution": 0.2}], "viewed pricing"), ([], "-")])
def test_render_lists_top_leads_and_jumps(factors: list, shown: str) -> None:
    view = LiveView()
    view.add_score(json.dumps({"contact_id": "c1", "company_id": "k1", "score": 0.7, "tier": "A",
                               "as_of": "2026-05-01T10:00:00Z"}).encode())
    view.add_alert(json.dumps({"contact_id": "c1", "kind": "jump", "score": 0.7, "previous_score": 0.1,
                               "top_factors": factors}).encode())
    screen = view.render(None, None, 3.0)
    assert "c1" in screen and "0.100 → 0.700" in screen and shown in screen
    assert view.top_contact() == "c1"


def test_applied_counts_what_the_account_stage_worked_through() -> None:
    m = Metrics()
    m.consumed.labels(topic="crm.activities").inc(10)
    m.applied.labels(kind="activity").inc(6)
    m.duplicates.labels(kind="activity").inc(1)
    m.unpublished_events.set(3)  # applied, their scores not sent yet (a gauge: not a difference)
    sample = _sample(m)
    assert sample.applied == 7 and sample.unpublished == 3
    assert "applied 7   unpublished 3" in LiveView().render(sample, None, 1.0)
    assert sample.since(MetricsSample()).unpublished == 3


def test_a_baseline_makes_the_cumulative_latency_the_live_parts() -> None:
    """The demo snapshots the buckets when the live part starts: the history's backlog drops out."""
    m = Metrics()
    for _ in range(1000):
        m.event_to_publish_seconds.observe(20.0)  # the history, scored behind a backlog
    m.held_events.set_function(lambda: 2)
    baseline = _sample(m)
    assert baseline.held == 2
    for _ in range(300):
        m.event_to_publish_seconds.observe(0.3)  # the live part
    screen = LiveView().render(_sample(m), 250.0, 40.0, note="live part: 300 of 300 events published",
                               baseline=baseline)
    assert "live part: 300 of 300" in screen.splitlines()[1]
    latency = next(line for line in screen.splitlines() if line.startswith("event→publish"))
    assert "since the live part started p50" in latency and "since start" not in latency
    p99 = _sample(m).since(baseline).quantile(0.99)
    assert p99 is not None and p99 <= 0.5
