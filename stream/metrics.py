"""Prometheus metrics of a worker (prometheus-client), one registry per worker.

A registry per instance, not the process-global default, so tests and an embedded demo can
run several workers in one process without metric collisions. It also carries the process's
own figures (``process_*``: RSS, CPU seconds, open fds; ``python_*``: GC, version), which
prometheus_client registers only on its global registry unless told otherwise.

Figures that are state rather than events (held events, the applied event time per partition)
are read at each scrape from the functions ``Metrics.watch`` is given: nothing scans state per
batch, and an age keeps growing while nothing is applied, which is what stale data looks like.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Seconds buckets from 1 ms to 30 s: scoring is milliseconds, event-time→publish under load is seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZE_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
# a coalescing window holds several seconds' worth of events when the worker is far behind
WINDOW_BUCKETS = SIZE_BUCKETS + (10000, 20000, 50000)


class _Freshness(Collector):
    """The newest applied event time of each account partition, and its age on the wall clock."""

    def __init__(self) -> None:
        #: partition -> newest applied event time (epoch seconds), of the partitions this worker owns
        self.source: Callable[[], Mapping[int, float]] = dict

    def collect(self) -> Iterable[Metric]:
        at = GaugeMetricFamily(
            "leadpulse_applied_event_time_seconds",
            "Newest event time applied in each account partition this worker owns (the partition's "
            "watermark, the time its leads are scored as of)", labels=["partition"])
        age = GaugeMetricFamily(
            "leadpulse_applied_event_age_seconds",
            "Wall-clock time minus the newest event time applied in each account partition this worker owns",
            labels=["partition"])
        now = time.time()
        for partition, t in sorted(self.source().items()):
            at.add_metric([str(partition)], t)
            age.add_metric([str(partition)], now - t)
        return [at, age]


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.consumed = Counter("leadpulse_events_consumed", "Input events consumed", ["topic"], registry=r)
        self.rejected = Counter("leadpulse_events_rejected", "Input events sent to the dead-letter topic",
                                ["topic", "reason"], registry=r)
        self.applied = Counter("leadpulse_events_applied", "Events applied to the graph (duplicates excluded)",
                               ["kind"], registry=r)
        self.duplicates = Counter("leadpulse_events_duplicate", "Events already applied (no effect)",
                                  ["kind"], registry=r)
        self.late = Counter(
            "leadpulse_events_late",
            "Events applied with a time before their account partition's scoring time (the watermark): "
            "applied at their own time, their leads scored as of the watermark", ["kind"], registry=r)
        self.apply_seconds = Histogram("leadpulse_apply_seconds", "Graph store apply latency per batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.score_seconds = Histogram("leadpulse_score_seconds", "Scoring latency per micro-batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.event_to_publish_seconds = Histogram(
            "leadpulse_event_to_publish_seconds",
            "Wall-clock time from an event's arrival to the publication of the scores it caused",
            buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("leadpulse_microbatch_leads", "Leads per scoring micro-batch",
                                    buckets=SIZE_BUCKETS, registry=r)
        self.flush_events = Histogram(
            "leadpulse_flush_events",
            "Events applied per scoring flush (a batch when caught up, a coalescing window when behind)",
            buckets=WINDOW_BUCKETS, registry=r)
        self.unpublished_events = Gauge(
            "leadpulse_unpublished_events",
            "Events applied to the graph whose score changes are not published yet (the coalescing "
            "window, and the batch being scored or sent)", registry=r)
        self.affected = Histogram("leadpulse_affected_leads", "Affected leads per applied event",
                                  ["kind"], buckets=SIZE_BUCKETS, registry=r)
        self.scores_published = Counter("leadpulse_scores_published", "Score changes published",
                                        ["cause"], registry=r)
        self.alerts = Counter("leadpulse_alerts", "Alerts published", ["kind"], registry=r)
        self.graph_nodes = Gauge("leadpulse_graph_nodes", "Nodes in the local graph", ["type"], registry=r)
        self.model_info = Gauge("leadpulse_model_info", "The model version in use (value 1)",
                                ["model_version"], registry=r)
        self.model_auroc = Gauge("leadpulse_model_auroc", "Held-out AUROC of the model in use", registry=r)
        self.retrains = Counter("leadpulse_retrain_runs", "Retraining runs by outcome", ["outcome"], registry=r)
        for outcome in ("ok", "skipped", "failed"):  # present at 0, so increase() sees the first failure
            self.retrains.labels(outcome=outcome)
        self.leads_by_tier = Gauge("leadpulse_leads_by_tier", "Leads of this worker per current tier",
                                   ["tier"], registry=r)
        self.consumer_lag = Gauge("leadpulse_consumer_lag", "Records behind the partition end",
                                  ["topic", "partition"], registry=r)
        self.held_events = Gauge(
            "leadpulse_held_events",
            "Activities and orders held by the router for a contact not seen yet", registry=r)
        self.erasures = Counter("leadpulse_erasures", "Persons erased from this worker's state (crm.erasures)",
                                registry=r)
        self.erased_dropped = Counter(
            "leadpulse_events_erased",
            "Events of an erased person, dated before the erasure, dropped instead of applied", registry=r)
        self.deletes = Counter("leadpulse_leads_withdrawn", "Lead scores withdrawn (a tombstone on the "
                               "scores topic) because the contact was deleted or erased", ["status"], registry=r)
        self.job_changes = Counter(
            "leadpulse_job_changes",
            "Contacts that left one of this worker's accounts for another (departures applied, each "
            "passing the person's activities on to the new account)", registry=r)
        self.carried = Counter(
            "leadpulse_events_carried",
            "Activities a departure passed from a person's old account to the new one, applied here",
            ["kind"], registry=r)
        # live outcomes (stream/outcomes.py): over the last LEADPULSE_OUTCOME_WINDOW labelled leads
        self.outcome_auroc = Gauge(
            "leadpulse_outcome_auroc", "AUROC of the published scores over the last labelled leads "
            "(NaN until both classes are present)", registry=r)
        self.outcome_ap = Gauge("leadpulse_outcome_average_precision",
                                "Average precision of the published scores over the last labelled leads", registry=r)
        self.outcome_labelled = Gauge("leadpulse_outcome_labelled_leads", "Labelled leads in the rolling window",
                                      registry=r)
        self.outcome_positives = Gauge("leadpulse_outcome_positives", "Converted leads in the rolling window",
                                       registry=r)
        self.outcome_observed = Gauge(
            "leadpulse_outcome_conversion_observed",
            "Share of the window's leads of a tier (their tier when published) that converted", ["tier"], registry=r)
        self.outcome_expected = Gauge("leadpulse_outcome_conversion_expected",
                                      "Mean published score of the window's leads of a tier", ["tier"], registry=r)
        self.outcome_open = Gauge("leadpulse_outcome_open_leads",
                                  "Published scores whose label window has not ended yet", registry=r)
        self._freshness = _Freshness()
        r.register(self._freshness)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def watch(self, held: Callable[[], float], watermarks: Callable[[], Mapping[int, float]]) -> None:
        """Read these at every scrape: the held-event count, and partition -> newest applied
        event time (epoch seconds) of the account partitions this worker owns."""
        self.held_events.set_function(held)
        self._freshness.source = watermarks

    def set_model(self, version: str, auroc: float | None) -> None:
        self.model_info.clear()
        self.model_info.labels(model_version=version).set(1)
        if auroc is not None:
            self.model_auroc.set(auroc)

    def exposition(self) -> bytes:
        """The text exposition format served at ``/metrics``."""
        return generate_latest(self.registry)
