"""The demo's live terminal view: top leads, latest jumps with reasons, events/s, latency.

Pure formatting over what a subscriber sees (``leads.scores``, ``leads.alerts``) and what the
worker's ``/metrics`` says, so it is testable without a terminal.
"""
from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class MetricsSample:
    consumed: float = 0.0
    published: float = 0.0
    rejected: float = 0.0
    applied: float = 0.0  # through the account stage: applied to the graph, or duplicates
    latency_buckets: list[tuple[float, float]] = field(default_factory=list)  # (le, cumulative count)
    unpublished: float = 0.0  # a gauge: applied events whose scores are not published yet
    held: float = 0.0  # a gauge: activities and orders waiting for a contact not seen yet

    def quantile(self, q: float) -> Optional[float]:
        """Histogram quantile by linear interpolation inside the bucket (as PromQL does)."""
        if not self.latency_buckets or self.latency_buckets[-1][1] <= 0:
            return None
        total = self.latency_buckets[-1][1]
        rank, prev_le, prev_count = q * total, 0.0, 0.0
        for le, count in self.latency_buckets:
            if count >= rank:
                if math.isinf(le):
                    return prev_le
                span = count - prev_count
                return prev_le + (le - prev_le) * ((rank - prev_count) / span if span else 1.0)
            prev_le, prev_count = le, count
        return None


    def since(self, earlier: "MetricsSample") -> "MetricsSample":
        """What happened between ``earlier`` and this sample: counters and buckets subtracted.
        The cumulative histogram of a worker that has been behind hides that it caught up; the
        difference shows the latency of the last few seconds. After a counter reset (a restarted
        worker) it is this sample itself."""
        before = dict(earlier.latency_buckets)
        buckets = [(le, count - before.get(le, 0.0)) for le, count in self.latency_buckets]
        if self.consumed < earlier.consumed or any(c < 0 for _, c in buckets):
            return self
        return MetricsSample(self.consumed - earlier.consumed, self.published - earlier.published,
                             self.rejected - earlier.rejected, self.applied - earlier.applied, buckets,
                             unpublished=self.unpublished, held=self.held)  # gauges: current values


def _latency(sample: MetricsSample) -> Optional[str]:
    p50, p99 = sample.quantile(0.5), sample.quantile(0.99)
    return None if p50 is None else f"p50 {p50 * 1000:,.0f} ms  p99 {p99 * 1000:,.0f} ms"


def parse_metrics(text: str) -> MetricsSample:
    sample = MetricsSample()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "leadpulse_events_consumed_total":
                sample.consumed += s.value
            elif s.name == "leadpulse_scores_published_total":
                sample.published += s.value
            elif s.name == "leadpulse_events_rejected_total":
                sample.rejected += s.value
            elif s.name in ("leadpulse_events_applied_total", "leadpulse_events_duplicate_total"):
                sample.applied += s.value
            elif s.name == "leadpulse_unpublished_events":
                sample.unpublished += s.value
            elif s.name == "leadpulse_held_events":
                sample.held += s.value
            elif s.name == "leadpulse_event_to_publish_seconds_bucket":
                sample.latency_buckets.append((float(s.labels["le"]), s.value))
    sample.latency_buckets.sort()
    return sample


@dataclass
class LiveView:
    """Accumulates scores and alerts; ``render`` returns the screen as text."""
    top_n: int = 8
    scores: dict[str, dict] = field(default_factory=dict)
    jumps: deque = field(default_factory=lambda: deque(maxlen=5))
    n_scores: int = 0
    n_alerts: int = 0

    def add_score(self, raw: bytes) -> None:
        value = json.loads(raw)
        self.scores[value["contact_id"]] = value
        self.n_scores += 1

    def add_alert(self, raw: bytes) -> None:
        value = json.loads(raw)
        self.n_alerts += 1
        if value["kind"] == "jump":
            self.jumps.appendleft(value)

    def top_contact(self) -> Optional[str]:
        """The highest-scored lead seen so far (a contact id worth looking up)."""
        return max(self.scores.values(), key=lambda v: v["score"])["contact_id"] if self.scores else None

    def render(self, metrics: Optional[MetricsSample], events_per_s: Optional[float], elapsed: float,
               recent: Optional[tuple[float, MetricsSample]] = None, *, note: Optional[str] = None,
               baseline: Optional[MetricsSample] = None) -> str:
        """The screen. ``recent``: (seconds, what happened in them), e.g. ``metrics.since(older)``;
        ``note``: a line under the title (the demo's phase); ``baseline``: the sample taken when
        the live part started, so the cumulative latency is the live part's, not the history's."""
        lines = [f"leadpulse live — {elapsed:5.0f} s   scores {self.n_scores:,}   alerts {self.n_alerts:,}"]
        if note:
            lines.append(note)
        if metrics is not None:
            rate = f"{events_per_s:,.0f} events/s" if events_per_s is not None else "- events/s"
            lines.append(f"consumed {metrics.consumed:,.0f}  ({rate})   applied {metrics.applied:,.0f}   "
                         f"unpublished {metrics.unpublished:,.0f}   dead letters {metrics.rejected:,.0f}")
            overall = _latency(metrics.since(baseline) if baseline is not None else metrics)
            if overall is None:
                lines.append("event→publish: no scores yet")
            else:
                last = _latency(recent[1]) if recent else None
                window = f"last {recent[0]:.0f} s {last or 'no scores'}   " if recent else ""
                since = "since the live part started" if baseline is not None else "since start"
                lines.append(f"event→publish: {window}{since} {overall}")
        lines.append("")
        lines.append("top leads (latest score)                 tier  score   as of")
        top = sorted(self.scores.values(), key=lambda v: -v["score"])[: self.top_n]
        for v in top:
            lines.append(f"  {v['contact_id']:<14} {str(v.get('company_id') or '-'):<14} "
                         f"    {v['tier']}   {v['score']:.3f}  {v['as_of'][:16]}")
        lines.append("")
        lines.append("latest jumps")
        for a in self.jumps:
            reasons = "; ".join(f["factor"] for f in a.get("top_factors", [])[:2]) or "-"
            lines.append(f"  {a['contact_id']:<14} {a['previous_score']:.3f} → {a['score']:.3f}   {reasons}")
        if not self.jumps:
            lines.append("  (none yet)")
        return "\n".join(lines)
