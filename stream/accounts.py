"""Stage 2: apply account-keyed events to the graph and rescore the leads they affect.

Pure of Kafka and Faust: ``AccountProcessor.process`` takes consumed records and returns the
score and alert records to publish; the Faust agent sends them, flushes, then calls
``commit_published``. Scores are computed as of the partition's *watermark* — the newest event
time applied in that partition — so a lead's score reflects everything up to then and nothing
after (see docs/stream.md for why scores are published only when they move more than epsilon).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Optional, Sequence

from graph_store.base import ApplyEffect, GraphStore, Subgraph
from model.explain import explain
from model.scorer import Scorer
from schemas.events import Factor, InputEvent, LeadAlert, LeadScore
from schemas.timeutil import from_micros, to_micros
from schemas.topics import input_spec_for_topic
from stream.ingest import RawRecord
from stream.metrics import Metrics
from stream.router import decode_forward
from stream.state import KVState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringOptions:
    """Options of incremental rescoring (built by ``stream.config``).

    Args:
        epsilon: publish a score only when it moved more than this (default 1e-4).
        jump_threshold: alert when a score rises by at least this (default 0.2).
        max_batch_leads: leads per scoring micro-batch (default 1000).
        hops: receptive field of the model (default 2).
        top_factors: factors explained per published score (default 3).
        explain_budget: leads explained per micro-batch (default 16): those with an alert first,
            then the largest moves. Explaining costs ~18 ms a lead on this machine (a forward
            per evidence group), so the rest are published with no factors and explained on
            demand by ``/leads/{contact_id}``.
    """
    epsilon: float = 1e-4
    jump_threshold: float = 0.2
    max_batch_leads: int = 1000
    hops: int = 2
    top_factors: int = 3
    explain_budget: int = 16


@dataclass
class Outputs:
    scores: list[LeadScore] = field(default_factory=list)
    alerts: list[LeadAlert] = field(default_factory=list)
    book: dict = field(default_factory=dict)  # pending score-book writes, committed after publish
    positions: dict = field(default_factory=dict)  # account-topic positions these outputs complete


def cause_of(topic: str, event: InputEvent) -> str:
    return f"{topic}:{event.entity_id}"


class AccountProcessor:
    """Applies account batches and turns affected leads into score changes.

    Args:
        store: the graph store of this worker.
        book: score book (last published score per lead, watermarks per partition).
        scorer: the model in use (hot-swappable: assign ``processor.scorer``).
        options: rescoring options.
        metrics: where to count.
    """

    def __init__(self, store: GraphStore, book: KVState, scorer: Optional[Scorer],
                 options: ScoringOptions = ScoringOptions(), metrics: Optional[Metrics] = None):
        self.store = store
        self.book = book
        self.scorer = scorer
        self.options = options
        self.metrics = metrics or Metrics()
        self._cursor = ""  # where the decay sweep resumes (a contact id)

    # --------------------------------------------------------------- ingest
    def watermark(self, partition: int) -> Optional[int]:
        return self.book.get("w", str(partition))

    def apply(self, records: Sequence[RawRecord], partition: int) -> dict[str, str]:
        """Apply a batch of account-topic records; return affected lead -> cause."""
        decoded = [(r, *decode_forward(r.value)) for r in records if r.value is not None]
        events = [e for _, _, e in decoded]
        positions = {(r.topic, r.partition): r.offset + 1 for r in records}
        started = time.perf_counter()
        effects = self.store.apply(events, positions, partition=partition)
        self.metrics.apply_seconds.observe(time.perf_counter() - started)
        if not events:
            return {}
        mark = max([to_micros(e.event_time) for e in events] + [self.watermark(partition) or 0])
        self.book.commit({("w", str(partition)): mark})
        affected: dict[str, str] = {}
        for (_, topic, event), effect in zip(decoded, effects):
            kind = event.kind
            (self.metrics.applied if effect.changed else self.metrics.duplicates).labels(kind=kind).inc()
            leads = self.store.affected_leads([_rescore_effect(effect)], mark, hops=self.options.hops)
            self.metrics.affected.labels(kind=kind).observe(len(leads))
            for lead in leads:
                affected[lead] = cause_of(topic, event)
        return affected

    # --------------------------------------------------------------- scoring
    def rescore(self, causes: dict[str, str], as_of: int, partition: int) -> Outputs:
        """Score ``causes``' leads as of ``as_of``; keep those that moved more than epsilon.

        Every scored lead's book entry records that it was checked as of ``as_of`` with this
        model version (so the decay sweep skips it), even when its score did not move enough
        to be published; the published score and its ``as_of`` change only when it did.
        """
        out = Outputs()
        if self.scorer is None or not causes:
            return out
        ids = sorted(causes)
        now = datetime.now(timezone.utc)
        version = self.scorer.version or "unregistered"
        for start in range(0, len(ids), self.options.max_batch_leads):
            chunk = ids[start:start + self.options.max_batch_leads]
            began = time.perf_counter()
            graph = self.store.subgraph(chunk, as_of, hops=self.options.hops)
            batch = self.scorer.score(graph, chunk)
            self.metrics.score_seconds.observe(time.perf_counter() - began)
            self.metrics.batch_size.observe(len(chunk))
            moved = []
            for cid, score, tier in zip(batch.contact_ids, batch.scores.tolist(), batch.tiers):
                prev = self.book.get("s", cid)
                if prev is None or abs(score - prev["score"]) > self.options.epsilon:
                    moved.append((cid, score, tier, prev))
                else:
                    out.book[("s", cid)] = {**prev, "checked_as_of": as_of, "checked_version": version,
                                            "partition": partition}
            if not moved:
                continue
            chosen = self._to_explain(moved)
            ids_to_explain = [m[0] for m in moved if m[0] in chosen]
            explained = dict(zip(ids_to_explain, explain(self.scorer.model, graph, ids_to_explain,
                                                         top_k=self.options.top_factors))) \
                if ids_to_explain else {}
            for cid, score, tier, prev in moved:
                top = [Factor(factor=f.factor, contribution=float(f.contribution)) for f in explained.get(cid, [])]
                self._publish(cid, score, tier, prev, top, as_of, partition, causes[cid], now, out)
        return out

    def _to_explain(self, moved: list) -> set[str]:
        """The leads worth explaining within the budget: alerts first, then the largest moves."""
        if not self.options.top_factors or not self.options.explain_budget:
            return set()

        def priority(m: tuple) -> tuple:
            cid, score, tier, prev = m
            if prev is None:
                return (1, -score)
            alert = score - prev["score"] >= self.options.jump_threshold or tier != prev["tier"]
            return (0 if alert else 1, -abs(score - prev["score"]))
        return {m[0] for m in sorted(moved, key=priority)[: self.options.explain_budget]}

    def explain_now(self, contact_id: str) -> Optional[list[dict]]:
        """Top factors of a lead as of its last published score (for the HTTP lookup)."""
        entry = self.book.get("s", contact_id)
        if entry is None or self.scorer is None:
            return None
        graph = self.store.subgraph([contact_id], entry["as_of"], hops=self.options.hops)
        factors = explain(self.scorer.model, graph, [contact_id], top_k=self.options.top_factors or 3)[0]
        return [{"factor": f.factor, "contribution": float(f.contribution)} for f in factors]

    def stale_leads(self, limit: int) -> dict[int, dict[str, str]]:
        """Up to ``limit`` leads whose score is behind: partition -> {lead: cause}.

        A lead is stale when its partition's watermark moved past the time it was last checked
        (its time-relative features decayed although no event touched it: cause ``decay``) or
        it was scored by another model version (cause ``model_update``). The scan resumes
        where the previous call stopped, so repeated calls sweep every lead in turn.
        """
        version = self.scorer.version if self.scorer else None
        picked: dict[int, dict[str, str]] = {}
        seen = 0
        for key, entry in self.book.scan("s", start=self._cursor, wrap=True):
            seen += 1
            self._cursor = key[0]
            part = entry.get("partition", 0)
            mark = self.watermark(part)
            if version and entry.get("checked_version", entry.get("model_version")) != version:
                picked.setdefault(part, {})[key[0]] = "model_update"
            elif mark is not None and entry.get("checked_as_of", entry["as_of"]) < mark:
                picked.setdefault(part, {})[key[0]] = "decay"
            if sum(len(v) for v in picked.values()) >= limit or seen >= 20 * limit:
                break
        return picked

    def sweep(self, limit: int) -> Outputs:
        """Rescore up to ``limit`` stale leads as of their partition watermarks."""
        out = Outputs()
        for part, causes in sorted(self.stale_leads(limit).items()):
            got = self.rescore(causes, self.watermark(part) or 0, part)
            out.scores += got.scores
            out.alerts += got.alerts
            out.book.update(got.book)
        return out

    def _publish(self, cid: str, score: float, tier: str, prev: Optional[dict], factors: list[Factor],
                 as_of: int, partition: int, cause: str, now: datetime, out: Outputs) -> None:
        prev_score = prev["score"] if prev else None
        company = (self.store.node("contact", cid, as_of) or {}).get("company_id")
        delta = score - (prev_score or 0.0)
        version = self.scorer.version or "unregistered"
        out.scores.append(LeadScore(contact_id=cid, company_id=company, score=score, tier=tier,
                                    previous_score=prev_score, delta=delta, model_version=version,
                                    as_of=from_micros(as_of), scored_at=now, cause=cause,
                                    top_factors=factors))
        out.book[("s", cid)] = {"score": score, "tier": tier, "as_of": as_of, "model_version": version,
                                "company_id": company, "top_factors": [f.model_dump() for f in factors],
                                "partition": partition, "checked_as_of": as_of, "checked_version": version}
        if prev is None:
            return
        kinds = []
        if delta >= self.options.jump_threshold:
            kinds.append(("jump", self.options.jump_threshold))
        if prev["tier"] != tier:
            kinds.append(("tier_change", 0.0))
        for kind, threshold in kinds:
            out.alerts.append(LeadAlert(contact_id=cid, company_id=company, kind=kind, score=score,
                                        previous_score=prev_score, delta=delta, threshold=threshold,
                                        model_version=version, as_of=from_micros(as_of),
                                        top_factors=factors))

    def published_positions(self) -> dict[tuple[str, int], int]:
        """Account-topic positions whose score changes are all published.

        The graph store may be ahead (a crash between apply and publish): resuming from here
        replays those events as duplicates, which rescore their leads, so no change is lost.
        """
        return self.book.positions()

    def commit_published(self, out: Outputs) -> None:
        """Record what was published (after the producer flushed it)."""
        if out.book or out.positions:
            self.book.commit(out.book, positions=out.positions)
        for s in out.scores:
            self.metrics.scores_published.labels(cause=s.cause.split(":", 1)[0]).inc()
        for a in out.alerts:
            self.metrics.alerts.labels(kind=a.kind).inc()

    def last_score(self, contact_id: str) -> Optional[dict]:
        return self.book.get("s", contact_id)


def _rescore_effect(effect: ApplyEffect) -> ApplyEffect:
    # A duplicate is usually a replay after a crash, between our apply and the publication of
    # the scores it caused: rescoring its leads again is how those scores are not lost (a
    # score that was already published does not move, so nothing is sent twice).
    return effect if effect.changed else replace(effect, changed=True)
