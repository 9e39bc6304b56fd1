"""Stage 2: apply account-keyed events to the graph and rescore the leads they affect.

Pure of Kafka and Faust: ``AccountProcessor.process`` takes consumed records and returns the
score and alert records to publish; the Faust agent sends them, flushes, then calls
``commit_published``. Scores are computed as of the partition's *watermark* — the newest event
time applied in that partition — so a lead's score reflects everything up to then and nothing
after (see docs/stream.md for why scores are published only when they move more than epsilon).

Score book (``stream.state.KVState``; its ``o`` namespace holds the consumed positions):
    ``s\x00<contact_id>``   -> last published score, tier, as_of, factors, owner partition
    ``w\x00<partition>``    -> watermark: newest event time applied in that account partition, at
                               most the wall clock plus ``ScoringOptions.max_future`` (``_advance``)
    ``own\x00<contact_id>`` -> [account partition of its newest version, that version's time]
    ``x\x00<sha-256 of a contact_id>`` -> {"status": "deleted" | "erased" | "left_population", "as_of"}:
                               the lead's score was withdrawn (a tombstone on the scores topic; for
                               "left_population" a final record with that status); ``/leads`` says why
    ``e\x00<sha-256 of a contact_id>`` -> {"at": micros}: the person was erased; their events up to
                               then are dropped (``stream.erasure``)
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterator, NamedTuple, Optional, Sequence

from leadpulse.graph_store.base import ApplyEffect, GraphStore
from leadpulse.graph_store.history import newest_version_time
from leadpulse.graph_store.reads import paused_gc
from leadpulse.model.explain import explain_signed
from leadpulse.model.scorer import Scorer
from leadpulse.schemas.events import Contact, Factor, InputEvent, LeadAlert, LeadScore
from leadpulse.schemas.parse import ParseError
from leadpulse.schemas.tables import format_time
from leadpulse.schemas.timeutil import from_micros, to_micros
from leadpulse.schemas.types import CONTACT, WORKS_AT
from leadpulse.stream.alerts import announced_tier, tier_alert_cut
from leadpulse.stream.carry import ACTIVITIES, person_activities
from leadpulse.stream.erasure import erased_key, person_of
from leadpulse.stream.ingest import RawRecord, dead_letter, reason_kind
from leadpulse.stream.merge import Resolver
from leadpulse.stream.metrics import Metrics
from leadpulse.stream.options import ScoringOptions
from leadpulse.stream.outcomes import OutcomeMonitor
from leadpulse.stream.pending import Pending
from leadpulse.stream.ranks import ScoreRanks
from leadpulse.stream.router import Forward, decode_forward, forward_kind
from leadpulse.stream.serving import serving_of
from leadpulse.stream.state import KVState

logger = logging.getLogger(__name__)


#: Contract topics a worker replicates from every account partition (see ``process``): all but
#: activities, which follow the person (``stream.carry``).
REPLICATED_TOPICS = frozenset({"crm.companies", "crm.contacts", "crm.opportunities", "crm.orders"})
#: the owner partition of a contact whose departure from an account this worker applied before
#: the version naming the new account: no partition is known to own the lead yet
DEPARTED = -1
REPLICA_SUFFIX = "#replica"


@dataclass
class Outputs:
    scores: list[LeadScore] = field(default_factory=list)
    alerts: list[LeadAlert] = field(default_factory=list)
    book: dict = field(default_factory=dict)  # pending score-book writes, committed after publish
    positions: dict = field(default_factory=dict)  # account-topic positions these outputs complete
    tiers: list = field(default_factory=list)  # (previous tier or None, tier) of each published score
    produced_at: list = field(default_factory=list)  # input record times of the events processed
    events: int = 0  # events applied whose scores these outputs complete (0 for the decay sweep)
    tombstones: list = field(default_factory=list)  # contact ids whose score is gone (deleted, erased)
    dropped: list = field(default_factory=list)  # score-book keys to delete with the commit
    letters: list = field(default_factory=list)  # (dead letter, key, reason kind): merges that failed
    forwards: list = field(default_factory=list)  # account-topic records (``Forward``): carried activities

    def merge(self, other: "Outputs") -> None:
        self.scores += other.scores
        self.alerts += other.alerts
        self.book.update(other.book)
        self.tiers += other.tiers
        self.tombstones += other.tombstones
        self.dropped += other.dropped
        self.letters += other.letters
        self.forwards += other.forwards


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

    #: live outcome monitoring (``stream.outcomes``), set by the worker; joined to every commit
    outcomes: Optional["OutcomeMonitor"] = None

    def __init__(self, store: GraphStore, book: KVState, scorer: Optional[Scorer],
                 options: ScoringOptions = ScoringOptions(), metrics: Optional[Metrics] = None):
        self.store = store
        self.book = book
        self.scorer = scorer
        self.options = options
        self.metrics = metrics or Metrics()
        self._cursor = ""  # where the decay sweep resumes (a contact id)
        self._tokens, self._refilled = float(options.explain_budget), time.monotonic()  # explain rate
        #: account partitions this worker owns (None: all, e.g. a single in-process worker)
        self.local: Optional[set[int]] = None
        self._pending = Pending()
        #: how often the pending set was discarded: a reader whose batches were in it (the
        #: replication reader) re-reads from ``published_positions`` when this moves
        self.discards = 0
        self._in_flight = 0  # events of flushed windows whose outputs are not committed yet
        self._ranks: Optional[ScoreRanks] = None  # the owned leads' current scores (``ranks``)

    # --------------------------------------------------------------- ingest
    def watermark(self, partition: int) -> Optional[int]:
        return self.book.get("w", str(partition))

    def owns(self, partition: int) -> bool:
        return self.local is None or partition in self.local

    def process(self, records: Sequence[RawRecord], partition: int, replica: bool = False) -> Outputs:
        """Apply a batch of one account-topic partition and rescore the leads it affects
        (``apply``, then ``flush``: what was pending before is scored and published too).

        Args:
            records: consumed account-topic records, in offset order.
            partition: their partition (= the store partition they are applied under).
            replica: the batch comes from the replication reader, not from this worker's
                share of the consumer group: everything but activities is applied (what a lead
                of another account can see within 2 hops: its company's industry peers and their
                orders, and the opportunities a colleague who moved in worked on), the
                partition's watermark does not move, and only leads owned by this worker are
                rescored.

        Returns:
            What to publish; its ``book`` holds the pending owner and score writes and its
            ``positions`` the consumed offsets (replica positions under ``<topic>#replica``).
        """
        self.apply(records, partition, replica)
        return self.flush()

    def apply(self, records: Sequence[RawRecord], partition: int, replica: bool = False) -> None:
        """Apply a batch (as ``process``) and add its affected leads to the pending set.

        Nothing is committed to the score book but the partition's watermark: the batch's
        positions are committed with the scores of its leads, after ``flush`` (a crash in
        between replays the batch; the store counts it as duplicates, which still rescore).
        """
        # The cyclic GC stays off for the whole batch, not only inside the store's calls: what
        # a batch allocates (subgraphs, feature rows, tensors) is freed by reference counting
        # when it ends, so a collection in between would only scan it
        # (docs/stream.md#measurements-behind-the-code).
        with paused_gc():
            self._apply(records, partition, replica)

    def flush_due(self) -> bool:
        """Whether the pending leads should be scored now (``ScoringOptions.coalesce``)."""
        return self._pending.due(self.options.coalesce, self.options.coalesce_max)

    def flush(self) -> Outputs:
        """Score the pending leads as of their partitions' watermarks; what to publish."""
        *_, out = self.flush_steps()
        return out

    def flush_steps(self) -> Iterator[Optional[Outputs]]:
        """``flush`` in steps: None after each scoring chunk, where the caller may let other
        work run (the worker's HTTP views and stage 1 while a long window is scored), and
        what to publish last. The pending set is taken at the first step: batches applied
        in between start the next one."""
        pending, self._pending = self._pending, Pending()
        out = Outputs(book=pending.book, positions=pending.positions, produced_at=pending.produced_at,
                      events=pending.events, letters=pending.letters, forwards=pending.forwards)
        self._in_flight += pending.events
        if pending.events:
            self.metrics.flush_events.observe(pending.events)
        with paused_gc():  # as in ``apply``
            for k, (part, part_causes) in enumerate(sorted(pending.causes.items())):
                if k:
                    yield None
                # a lead whose account changed after it was found (a departure, a replay that
                # put the store ahead of its owner entry) is scored by its new owner
                mine = {cid: cause for cid, cause in part_causes.items()
                        if self._still_mine(cid, part, pending.book)}
                yield from self._rescore_steps(mine, self.watermark(part) or 0, part, pending.moves, out,
                                               pending.reached)
        for cid in sorted(pending.left):
            # the lead moved to an account this worker does not own: the owner scores it now
            prev = self.book.get("s", cid)
            owner = out.book.get(("own", cid)) or self.book.get("own", cid)
            if prev is not None and not self._mine(owner) and ("s", cid) not in out.book:
                out.dropped.append(("s", cid))
                out.tiers.append((prev["tier"], None))
        yield out

    def discard_pending(self) -> None:
        """Forget applied batches whose leads are not scored yet (after a failure or a
        rebalance: the consumer resumes from ``published_positions`` and replays them)."""
        self._pending = Pending()
        self._in_flight = 0
        self.discards += 1
        self._ranks = None  # it counted scores that will not be committed: rebuilt from the book
        self._count_unpublished()

    def _apply(self, records: Sequence[RawRecord], partition: int, replica: bool) -> None:
        wanted = (lambda r: forward_kind(r.value) in REPLICATED_TOPICS) if replica else (lambda r: True)
        decoded = self._resolve([decode_forward(r.value) for r in records if r.value is not None and wanted(r)],
                                replica)
        events = [d.event for d in decoded]
        topic_of = (lambda t: t + REPLICA_SUFFIX) if replica else (lambda t: t)
        pending = self._pending
        positions = {(topic_of(r.topic), r.partition): r.offset + 1 for r in records}
        pending.add_batch(len(events), positions, [d.produced_at for d in decoded if d.produced_at is not None])
        self._count_unpublished()
        started = time.perf_counter()
        effects = self.store.apply(events, None if replica else positions, partition=partition)
        if not replica:
            self.metrics.apply_seconds.observe(time.perf_counter() - started)
        if not events:
            return
        owners = self._owners(decoded, partition)
        pending.book.update({("own", cid): owner for cid, owner in owners.items()})
        pending.left.update(cid for cid, owner in owners.items() if not self._mine(owner))
        if not replica:
            self._job_changes(decoded, partition, pending)
        late = self._advance(events, partition) if not replica else [False] * len(events)
        each = self._affected(effects, events, owners)
        causes: dict[str, tuple[str, int]] = {}
        for item, effect, leads, was_late in zip(decoded, effects, each, late):
            topic, event = item.topic, item.event
            if not replica and item.carried:
                self.metrics.carried.labels(kind=event.kind).inc()
            elif not replica and not item.departure:
                (self.metrics.applied if effect.changed else self.metrics.duplicates).labels(kind=event.kind).inc()
                self.metrics.affected.labels(kind=event.kind).observe(len(leads))
                if was_late and effect.changed:
                    self.metrics.late.labels(kind=event.kind).inc()
            cause = cause_of(topic, event)
            for lead, owner in leads.items():
                causes[lead] = (cause, owner)
            if effect.changed:
                pending.reach(leads, to_micros(event.event_time))
        for lead, (cause, owner) in causes.items():
            pending.add_lead(lead, owner, cause)

    def _affected(self, effects: list, events: Sequence[InputEvent], owners: dict) -> list[dict[str, int]]:
        """Per event, the owned leads it may move -> their owner partition.

        A lead is scored as of its owner partition's watermark, so it is searched for as of
        that time: the graph's shape is not monotone in time (a company that changes industry
        leaves its ring, a deleted company takes its edges), and a lead reachable from an
        event as of its partition's watermark may not be as of a later one. One search per
        distinct watermark of the owned partitions that is not before the batch (an event
        dated after a watermark moves nothing as of it), each keeping the leads owned by a
        partition at that watermark, and one as of the newest time, keeping every owned lead
        it finds. One call for the whole batch and every time (it shares each node's
        reach), one set per event and time so each lead is credited with the last event that
        reached it. A duplicate rescores its leads too, replica or not: it is a batch replayed
        from the book's positions after a crash or a discarded window, whose leads were never
        scored.
        """
        every = [w for _, w in self.book.scan("w")]
        marks = {int(k[0]): w for k, w in self.book.scan("w") if self.owns(int(k[0]))}
        earliest = min(to_micros(e.event_time) for e in events)
        # the newest time too, for any owner: a lead an event reaches only later than its
        # partition's watermark is brought up to that watermark now rather than by the sweep
        horizon = max([to_micros(e.event_time) for e in events] + every)
        times = sorted({w for w in marks.values() if w >= earliest} | {horizon})
        groups = [[_rescore_effect(eff)] for eff in effects]
        out: list[dict[str, int]] = [{} for _ in events]
        # a lead's owner does not depend on the search time: one look-up per lead and batch (a
        # big account's every event reaches the same hundreds of colleagues, most not owned here)
        part_of: dict[str, Optional[int]] = {}
        # one call for every time: the store keeps each node's reach with the interval it holds
        # for, so the searches as of the partitions' watermarks mostly reuse each other's
        for t, each in zip(times, self.store.affected_leads_at(groups, times, hops=self.options.hops)):
            reached = set().union(*each)
            for lead, owner in self._owners_of(reached - part_of.keys(), owners).items():
                part_of[lead] = owner[0] if self._mine(owner, lead) else None
            # as of an earlier partition's watermark only that partition's leads count: mostly
            # none, as an event rarely reaches past its own account
            kept = {lead for lead in reached if part_of[lead] is not None
                    and (t == horizon or marks.get(part_of[lead]) == t)}
            if not kept:
                continue
            for found, leads in zip(out, each):
                found.update((lead, part_of[lead]) for lead in leads & kept)
        return out

    def _mine(self, owner: Optional[list], lead: Optional[str] = None) -> bool:
        """Whether a lead with this ``own`` entry is this worker's to score.

        With ``lead``, also that the entry is not behind the store: a contact version applied
        in a window that was then discarded (a rebalance, a failure) is in the store while its
        ``own`` write was dropped with the window. If it moved the person to another account,
        the stale entry would have this worker score a lead it no longer owns; the version's
        replay (here or by the new owner) brings the entry up to date and rescores the lead.
        """
        if owner is None or owner[0] == DEPARTED or not self.owns(owner[0]):
            return False
        if lead is None:
            return True
        newest = newest_version_time(self.store.state, CONTACT, lead)
        return newest is None or newest <= owner[1]

    def _still_mine(self, cid: str, partition: int, writes: dict) -> bool:
        owner = writes.get(("own", cid)) or self.book.get("own", cid)
        return owner is None or (owner[0] == partition and self._mine(owner, cid))

    def _job_changes(self, decoded: list["_Item"], partition: int, pending: Pending) -> None:
        """Departures: the person's activities go to their new account (``stream.carry``), in
        this batch's checkpoint. Arrivals (the version the router sent to the new account, with
        the company left): a ``job_change`` alert when the lead is next scored."""
        for item in decoded:
            event = item.event
            if not isinstance(event, Contact):
                continue
            if item.departure:
                self.metrics.job_changes.inc()
                carried = person_activities(self.store, event.contact_id)
                pending.forwards += [Forward(event.company_id, ACTIVITIES, a, carried=True) for a in carried]
                continue
            if item.moved_from is not None:
                pending.moves[event.contact_id] = item.moved_from

    def _resolve(self, decoded: list, replica: bool) -> list["_Item"]:
        """Whole events for the batch's items, in order: partial updates merged onto the
        entity's version as of their time, re-sent snapshot rows that change nothing and events
        of erased persons left out (``stream.merge``, ``stream.erasure``). A merge that fails is
        a dead letter (sent by the owner only: a replica's would repeat it)."""
        resolver, out = Resolver(self.store), []
        for fwd in decoded:
            if self._erased(fwd.item):
                self.metrics.erased_dropped.inc()
                continue
            event = resolver.resolve(fwd.item)
            if event is None:
                if not replica:
                    self.metrics.duplicates.labels(kind=fwd.item.event.kind).inc()
            elif isinstance(event, ParseError):
                if not replica:
                    self._pending.letters.append(_merge_letter(fwd, str(event)))
            else:
                out.append(_Item(fwd.topic, event, fwd.produced_at, fwd.departure, fwd.carried, fwd.moved_from))
        return out

    def _erased(self, item) -> bool:
        person = person_of(item)
        if person is None:
            return False
        since = self.book.get("e", erased_key(person))
        return since is not None and to_micros(item.event_time) <= since["at"]

    def _advance(self, events: Sequence[InputEvent], partition: int) -> list[bool]:
        """Move the partition's watermark to the newest event time of the batch, never back and
        never past the wall clock plus ``options.max_future``; whether each event (in offset
        order) is late, dated before the watermark it met.

        Stage 1 rejects events dated past that bound already; this holds the bound for records
        it did not check (written by an older version, or by a worker whose clock ran ahead):
        such an event is applied at its own time, which no as-of read reaches before the clock
        does (docs/architecture.md#invariant-7).
        """
        limit = time.time_ns() // 1000 + round(self.options.max_future * 1_000_000)
        mark = self.watermark(partition) or 0
        late = []
        newest = mark
        for e in events:
            t = to_micros(e.event_time)
            late.append(t < mark)
            newest = max(newest, t)
            mark = max(mark, min(t, limit))
        if newest > limit:
            logger.warning("account partition %d: an event dated %s is past the clock plus the tolerance "
                           "(%g s, LEADPULSE_MAX_FUTURE_SECONDS); the partition is scored as of %s",
                           partition, format_time(from_micros(newest)), self.options.max_future,
                           format_time(from_micros(mark)))
        self.book.commit({("w", str(partition)): mark})
        return late

    def _owner(self, contact_id: str) -> Optional[list]:
        """[partition, time] of the contact's newest version: pending writes first."""
        return self._owners_of({contact_id}, {})[contact_id]

    def _owners_of(self, leads: set[str], owners: dict) -> dict[str, Optional[list]]:
        """``_owner`` of many leads (the batch's own versions first), the book's in one multi-get."""
        out, ask = {}, []
        pending = self._pending.book
        for lead in leads:
            owner = owners.get(lead) or pending.get(("own", lead))
            if owner is None:
                ask.append(lead)
            else:
                out[lead] = owner
        if ask:
            out.update(zip(ask, self.book.get_many([("own", lead) for lead in ask])))
        return out

    def _owners(self, decoded: list["_Item"], partition: int) -> dict[str, list]:
        """Contacts whose newest version is in this batch: contact id -> [partition, time].

        A departure names the new account, whose partition this worker cannot tell: the lead
        is nobody's here (``DEPARTED``) until the version at the new account is applied, at the
        same time, which wins the tie (whichever of the two comes first)."""
        owners: dict[str, list] = {}
        for item in decoded:
            e = item.event
            if isinstance(e, Contact):
                t = to_micros(e.updated_at)
                known = owners.get(e.contact_id) or self._owner(e.contact_id)
                if item.departure:
                    if known is None or t > known[1]:
                        owners[e.contact_id] = [DEPARTED, t]
                elif known is None or t >= known[1]:
                    owners[e.contact_id] = [partition, t]
        return owners

    # --------------------------------------------------------------- scoring
    def rescore(self, causes: dict[str, str], as_of: int, partition: int,
                moves: Optional[dict[str, str]] = None) -> Outputs:
        """Score ``causes``' leads as of ``as_of``; keep those that moved more than epsilon.

        Every scored lead's book entry records that it was checked as of ``as_of`` with this
        model version (so the decay sweep skips it), even when its score did not move enough
        to be published; the published score and its ``as_of`` change only when it did.
        A lead that was scored as of an earlier time and is absent as of ``as_of`` was deleted
        (a contact exists from its first version on, until a delete): it loses its score, a
        tombstone on the scores topic and its book entry dropped. The delete may have been
        applied long before, dated ahead of the watermark; the decay sweep brings it here.
        ``moves`` (lead -> company it left) are published whether they moved or not, with a
        ``job_change`` alert.
        """
        out = Outputs()
        for _ in self._rescore_steps(causes, as_of, partition, moves or {}, out):
            pass
        return out

    def _rescore_steps(self, causes: dict[str, str], as_of: int, partition: int, moves: dict,
                       out: Outputs, reached: Optional[dict[str, int]] = None) -> Iterator[None]:
        """``rescore`` into ``out``, one step per scoring chunk. ``reached``: lead -> the earliest
        time of an event that changed the graph near it. A lead whose last published score is
        as of that time or later is published again even if it moved no more than epsilon: the
        event changed its graph as of that score's ``as_of``, so the record would no longer
        equal the recompute as of its own time (docs/stream.md#why-the-partition-watermark-is-the-scoring-time)."""
        reached = reached or {}
        if self.scorer is None or not causes:
            return
        # In the order the leads were found, not sorted by id: an event's leads are its account's
        # staff, found together, so a chunk holds whole accounts. Its union then holds each
        # account's staff and company once, as seeds; sorted by id, every chunk drew on nearly
        # every account of the batch and extracted, encoded and convolved the same colleagues
        # again. A lead's score does not depend on its chunk (``model.gnn_net``: seeds in graph
        # order), only the order of the records published.
        ids = list(causes)
        now = datetime.now(timezone.utc)
        version = self.scorer.version or "unregistered"
        for start in range(0, len(ids), self.options.max_batch_leads):
            if start:
                yield None
            chunk = ids[start:start + self.options.max_batch_leads]
            began = time.perf_counter()
            # the model's activity window read by the store: older activities are never gathered
            graph = self.store.subgraph(chunk, as_of, hops=self.options.hops, activity_days=self.scorer.activity_days)
            present = set(graph.node_ids.get("contact", ()))
            for cid in chunk:
                if cid not in present:
                    self._withdraw_if_gone(cid, as_of, out)
            # A lead replicated ahead of its partition's watermark does not exist as of it yet;
            # its own partition's apply rescores it once the watermark passes it.
            chunk = [cid for cid in chunk if cid in present]
            chunk = self._leads_of(chunk, graph, as_of, causes, now, out)
            if not chunk:
                continue
            batch = self.scorer.score(graph, chunk)
            self.metrics.score_seconds.observe(time.perf_counter() - began)
            self.metrics.batch_size.observe(len(chunk))
            moved = []
            prevs = self.book.get_many([("s", cid) for cid in batch.contact_ids])
            for cid, score, tier, prev in zip(batch.contact_ids, batch.scores.tolist(), batch.tiers, prevs):
                if (prev is None or abs(score - prev["score"]) > self.options.epsilon or cid in moves
                        or reached.get(cid, as_of + 1) <= prev["as_of"]):
                    moved.append((cid, score, tier, prev))
                else:
                    out.book[("s", cid)] = {**prev, "checked_as_of": as_of, "checked_version": version,
                                            "partition": partition}
            if not moved:
                continue
            chosen = self._to_explain(moved, moves)
            ids_to_explain = [m[0] for m in moved if m[0] in chosen]
            explained = dict(zip(ids_to_explain, explain_signed(self.scorer.model, graph, ids_to_explain,
                                                                top_k=self.options.top_factors,
                                                                encoded=batch.encoded))) \
                if ids_to_explain else {}
            ranks = self.ranks()
            for cid, score, _, _ in moved:  # percentiles among the scores after this chunk
                ranks.set(cid, score)
            # the company each lead's extracted works_at edge names: read already, not looked up
            # in the store again per published lead (~3 % of the stage on the large world)
            employer = graph.employers()
            for cid, score, tier, prev in moved:
                e = explained.get(cid)
                top, pos, neg = ([_factors(f) for f in (e.top, e.positive, e.negative)] if e is not None
                                 else ([], [], []))
                self._publish(cid, score, tier, prev, top, as_of, partition, causes[cid], now, out, moves.get(cid),
                              signed=(pos, neg), company=employer.get(cid))

    def _leads_of(self, chunk: list[str], graph, as_of: int, causes: dict[str, str], now: datetime,
                  out: Outputs) -> list[str]:
        """The contacts of ``chunk`` in the model's population as of ``as_of`` (all of them when
        its task has none: ``stream.serving.Serving.task``, set by ``stream.worker.load_scorer``).
        A contact outside is not scored; one whose score was published left the population: its
        final record (``status`` "left_population") and its book entry dropped (docs/stream.md)."""
        task = serving_of(self.scorer).task
        if task is None or not task.population or not chunk:
            return chunk
        inside = task.in_population(self.store, chunk, as_of,
                                    graph=graph if self.options.hops >= task.population_hops else None)
        for cid in (c for c, ok in zip(chunk, inside.tolist()) if not ok):
            prev = self.book.get("s", cid)
            if prev is None or prev["as_of"] > as_of:  # never published here, or ahead of this watermark
                continue
            self._drop(cid, as_of, "left_population", out, final=LeadScore(
                contact_id=cid, company_id=self._company_at(cid, as_of), score=prev["score"], tier=prev["tier"],
                previous_score=prev["score"], delta=0.0, model_version=self.scorer.version or "unregistered",
                as_of=from_micros(as_of), scored_at=now, cause=causes[cid], top_factors=[],
                status="left_population"))
        return [c for c, ok in zip(chunk, inside.tolist()) if ok]

    def _withdraw_if_gone(self, cid: str, as_of: int, out: Outputs) -> None:
        prev = self.book.get("s", cid)
        if prev is not None and prev["as_of"] <= as_of:
            self._drop(cid, as_of, "deleted", out)
        elif prev is not None and prev.get("checked_as_of", prev["as_of"]) < as_of:
            # scored as of a later time than this watermark (a lead whose account changed
            # partitions): checked, so the decay sweep moves on; the apply that brings this
            # partition's watermark to it rescores it
            logger.info("lead %s is not in the graph as of %s (scored as of %s): left as it is", cid,
                        format_time(from_micros(as_of)), format_time(from_micros(prev["as_of"])))
            out.book[("s", cid)] = {**prev, "checked_as_of": as_of}

    def _drop(self, cid: str, as_of: int, status: str, out: Outputs,
              final: Optional[LeadScore] = None) -> None:
        """The lead's score is gone: a tombstone if one was published (or ``final``, the record
        that says why, for a lead that left the population), and the marker that ``/leads``
        answers with (keyed by a hash of the id, so an erasure leaves none)."""
        prev = self.book.get("s", cid)
        out.book[("x", erased_key(cid))] = {"status": status, "as_of": as_of}
        if prev is None:
            return
        if final is None:
            out.tombstones.append(cid)
        else:
            out.scores.append(final)
        out.dropped.append(("s", cid))
        out.book.pop(("s", cid), None)
        out.tiers.append((prev["tier"], None))

    def erase(self, contact_id: str, at: int) -> Outputs:
        """Remove a person from the graph store (every partition, replicas included) and the
        score book, and rescore the owned leads that saw them; what to publish (the person's
        tombstone when a score was published here). Call with nothing pending (``flush``
        first), then ``commit_published`` and ``purge``. Idempotent."""
        horizon = max([w for _, w in self.book.scan("w")], default=0)
        affected = self.store.erase_contact(contact_id, horizon, hops=self.options.hops)
        out = Outputs()
        self._drop(contact_id, horizon, "erased", out)
        known = self.book.get("e", erased_key(contact_id))
        out.book[("e", erased_key(contact_id))] = {"at": max(at, known["at"] if known else at)}
        out.dropped.append(("own", contact_id))
        by_partition: dict[int, dict[str, str]] = {}
        for lead in sorted(affected - {contact_id}):
            owner = self._owner(lead)
            if owner is not None and self.owns(owner[0]):
                by_partition.setdefault(owner[0], {})[lead] = "erasure"
        with paused_gc():  # a lead that existed only through the person's records is withdrawn
            for part, causes in sorted(by_partition.items()):
                out.merge(self.rescore(causes, self.watermark(part) or 0, part))
        return out

    def purge(self) -> None:
        """After an erasure is committed: no file of the score book keeps the deleted keys."""
        self.book.purge()

    def _to_explain(self, moved: list, moves: dict) -> set[str]:
        """The leads worth explaining within the budget: alerts first (a job change is one),
        then the largest moves."""
        if not self.options.top_factors or not self.options.explain_budget:
            return set()
        now = time.monotonic()
        self._tokens = min(float(self.options.explain_budget),
                           self._tokens + (now - self._refilled) * self.options.explain_per_second)
        self._refilled = now
        budget = int(self._tokens)
        self._tokens -= min(budget, len(moved))

        def priority(m: tuple) -> tuple:
            cid, score, tier, prev = m
            if cid in moves:
                return (0, -score)
            if prev is None:
                return (1, -score)
            alert = bool(self._alert_kinds(score, tier, prev))
            return (0 if alert else 1, -abs(score - prev["score"]))
        return {m[0] for m in sorted(moved, key=priority)[:budget]}

    def explain_now(self, contact_id: str) -> Optional[dict[str, list[dict]]]:
        """Factors of a lead as of its last published score (for the HTTP lookup):
        ``{"top_factors", "positive_factors", "negative_factors"}``."""
        entry = self.book.get("s", contact_id)
        if entry is None or self.scorer is None:
            return None
        graph = self.store.subgraph([contact_id], entry["as_of"], hops=self.options.hops,
                                    activity_days=self.scorer.activity_days)
        e = explain_signed(self.scorer.model, graph, [contact_id],
                           top_k=self.options.top_factors or ScoringOptions.top_factors)[0]
        return {name: [f.model_dump() for f in _factors(fs)]
                for name, fs in (("top_factors", e.top), ("positive_factors", e.positive),
                                 ("negative_factors", e.negative))}

    def ranks(self) -> ScoreRanks:
        """The current scores of the leads this worker owns (``stream.ranks``), built from the
        score book when first asked and after a rebalance or a discarded window; kept current
        by ``rescore`` (a published score) and ``commit_published`` (a dropped one)."""
        if self._ranks is None:
            self._ranks = ScoreRanks.build((key[0], entry["score"]) for key, entry in self.book.scan("s")
                                           if self.owns(entry.get("partition", 0)))
        return self._ranks

    def percentile(self, score: float) -> Optional[float]:
        """Share of this worker's currently scored leads with a lower score, 0..100."""
        return self.ranks().percentile(score)

    def stale_leads(self, limit: int) -> dict[int, dict[str, str]]:
        """Up to ``limit`` leads whose score is behind: partition -> {lead: cause}.

        A lead is stale when its partition's watermark moved more than ``decay_min_age`` past
        the time it was last checked (its time-relative features decayed although no event
        touched it: cause ``decay``) or
        it was scored by another model version (cause ``model_update``). The scan resumes
        where the previous call stopped, so repeated calls sweep every lead in turn.
        """
        version = self.scorer.version if self.scorer else None
        min_age = int(self.options.decay_min_age * 1_000_000)
        picked: dict[int, dict[str, str]] = {}
        account: dict[str, str] = {}
        seen = 0
        for key, entry in self.book.scan("s", start=self._cursor, wrap=True):
            seen += 1
            self._cursor = key[0]
            part = entry.get("partition", 0)
            if not self.owns(part):
                continue
            owner = self._owner(key[0])  # a lead that changed accounts is scored by its new one
            if owner is not None:
                if not self._mine(owner, key[0]):
                    continue
                part = owner[0]
            mark = self.watermark(part)
            if version and entry.get("checked_version", entry.get("model_version")) != version:
                cause: Optional[str] = "model_update"
            elif mark is not None and entry.get("checked_as_of", entry["as_of"]) < mark - min_age:
                cause = "decay"
            else:
                cause = None
            if cause is not None:
                picked.setdefault(part, {})[key[0]] = cause
                account[key[0]] = entry.get("company_id") or ""
            if sum(len(v) for v in picked.values()) >= limit or seen >= 20 * limit:
                break
        # each partition's leads by the company of their last score, so that ``rescore``'s chunks
        # hold whole accounts (see there); the book's order is the ids'
        return {p: dict(sorted(leads.items(), key=lambda kv: (account[kv[0]], kv[0])))
                for p, leads in picked.items() if self.owns(p)}

    def sweep(self, limit: int) -> Outputs:
        """Rescore up to ``limit`` stale leads as of their partition watermarks."""
        out = Outputs()
        with paused_gc():  # as in ``process``
            for part, causes in sorted(self.stale_leads(limit).items()):
                out.merge(self.rescore(causes, self.watermark(part) or 0, part))
        return out

    def _publish(self, cid: str, score: float, tier: str, prev: Optional[dict], factors: list[Factor],
                 as_of: int, partition: int, cause: str, now: datetime, out: Outputs,
                 left: Optional[str] = None, signed: tuple[list[Factor], list[Factor]] = ([], []),
                 company: Optional[str] = None) -> None:
        """``company``: the lead's company as of ``as_of`` when the caller knows it (read from the
        store otherwise)."""
        prev_score = prev["score"] if prev else None
        company = company or self._company_at(cid, as_of)
        delta = score - (prev_score or 0.0)
        version = self.scorer.version or "unregistered"
        percentile = self.percentile(score)
        out.scores.append(LeadScore(contact_id=cid, company_id=company, score=score, tier=tier,
                                    previous_score=prev_score, delta=delta, model_version=version,
                                    as_of=from_micros(as_of), scored_at=now, cause=cause,
                                    top_factors=factors, positive_factors=signed[0], negative_factors=signed[1],
                                    percentile=percentile))
        kinds = self._alert_kinds(score, tier, prev) if prev else []
        announced = tier if prev is None or any(k == "tier_change" for k, _ in kinds) else announced_tier(prev)
        if left is not None and left != company:
            kinds.append(("job_change", 0.0))
        out.book[("s", cid)] = {"score": score, "tier": tier, "as_of": as_of, "model_version": version,
                                "company_id": company, "top_factors": [f.model_dump() for f in factors],
                                "positive_factors": [f.model_dump() for f in signed[0]],
                                "negative_factors": [f.model_dump() for f in signed[1]],
                                "partition": partition, "checked_as_of": as_of, "checked_version": version,
                                "alerted_tier": announced}
        out.tiers.append((prev["tier"] if prev else None, tier))
        for kind, threshold in kinds:
            out.alerts.append(LeadAlert(contact_id=cid, company_id=company, kind=kind, score=score,
                                        previous_score=prev_score, delta=delta, threshold=threshold,
                                        model_version=version, as_of=from_micros(as_of),
                                        top_factors=factors, positive_factors=signed[0],
                                        negative_factors=signed[1], percentile=percentile,
                                        previous_company_id=left if kind == "job_change" else None))

    def _alert_kinds(self, score: float, tier: str, prev: dict) -> list[tuple[str, float]]:
        """(kind, threshold) of the alerts a new score raises against the lead's book entry."""
        kinds = []
        if score - prev["score"] >= self.options.jump_threshold:
            kinds.append(("jump", self.options.jump_threshold))
        cut = tier_alert_cut(score, tier, announced_tier(prev), getattr(self.scorer.model, "tier_cuts", None),
                             self.options.tier_hysteresis)
        if cut is not None:
            kinds.append(("tier_change", cut))
        return kinds

    def published_positions(self) -> dict[tuple[str, int], int]:
        """Account-topic positions whose score changes are all published.

        The graph store may be ahead (a crash between apply and publish): resuming from here
        replays those events as duplicates, which rescore their leads, so no change is lost.
        """
        return self.book.positions()

    def commit_published(self, out: Outputs) -> None:
        """Record what was published (after the producer flushed it)."""
        if self.outcomes is not None:  # its observations commit with the scores they record
            self.outcomes.stage(out, self)
        if out.book or out.positions or out.dropped:
            self.book.commit(out.book, out.dropped, positions=out.positions)
        if self._ranks is not None:  # a score withdrawn (deleted, erased, moved away) stops counting
            for key in out.dropped:
                if key[0] == "s" and key not in out.book:
                    self._ranks.discard(key[1])
        if self.outcomes is not None:
            self.outcomes.committed()
        # a rebalance (``discard_pending``, outside the scoring lock) may have zeroed the count
        # while these outputs were being sent
        self._in_flight = max(0, self._in_flight - out.events)
        self._count_unpublished()
        # counted per label first: a flush publishes thousands of scores over a handful of labels
        for cause, n in Counter(s.cause.split(":", 1)[0] for s in out.scores).items():
            self.metrics.scores_published.labels(cause=cause).inc(n)
        for kind, n in Counter(a.kind for a in out.alerts).items():
            self.metrics.alerts.labels(kind=kind).inc(n)
        moves = Counter(after for _, after in out.tiers if after is not None)
        moves.subtract(before for before, _ in out.tiers if before is not None)
        for tier, n in moves.items():
            if n:
                self.metrics.leads_by_tier.labels(tier=tier).inc(n)
        for letter, _, kind in out.letters:
            self.metrics.rejected.labels(topic=letter.source_topic, reason=kind).inc()
        for cid in out.tombstones:
            marker = out.book.get(("x", erased_key(cid)), {})
            self.metrics.deletes.labels(status=marker.get("status", "deleted")).inc()

    def unpublished(self) -> int:
        """Events applied whose score changes are not published yet (held or in flight)."""
        return self._pending.events + self._in_flight

    def holding(self) -> set[int]:
        """The owner partitions of the leads waiting in the pending set (a coalescing window)."""
        return set(self._pending.causes) if not self._pending.empty() else set()

    def _count_unpublished(self) -> None:
        self.metrics.unpublished_events.set(self.unpublished())

    def count_tiers(self) -> None:
        """Set the tier gauge from the score book (at start and after a rebalance); the ranks
        are rebuilt when next asked (the owned partitions may have changed)."""
        self._ranks = None
        counts: dict[str, int] = {}
        for _, entry in self.book.scan("s"):
            if self.owns(entry.get("partition", 0)):
                counts[entry["tier"]] = counts.get(entry["tier"], 0) + 1
        self.metrics.leads_by_tier.clear()
        for tier, n in counts.items():
            self.metrics.leads_by_tier.labels(tier=tier).set(n)

    def company_of(self, contact_id: str) -> Optional[str]:
        """The contact's newest company (it names the account partition that owns the lead)."""
        owner = self.book.get("own", contact_id)
        return None if owner is None else self._company_at(contact_id, owner[1])

    def _company_at(self, contact_id: str, t: int) -> Optional[str]:
        """The company named by the contact's version valid at ``t``: its ``works_at`` edge (a
        ``node`` read would also build the contact's whole timeline)."""
        found = self.store.neighbors(WORKS_AT, contact_id, t)
        return found[0][0] if found else None

    def last_score(self, contact_id: str) -> Optional[dict]:
        return self.book.get("s", contact_id)

    def withdrawn(self, contact_id: str) -> Optional[dict]:
        """Why a lead has no score any more (``{"contact_id", "status": "deleted" | "erased"}``),
        or None if it never had one here."""
        marker = self.book.get("x", erased_key(contact_id))
        return None if marker is None else {"contact_id": contact_id, "status": marker["status"]}


class _Item(NamedTuple):
    """An account-topic record of a batch, resolved to the whole event to apply."""
    topic: str
    event: InputEvent
    produced_at: Optional[float]
    departure: bool = False
    carried: bool = False
    moved_from: Optional[str] = None


def _factors(factors) -> list[Factor]:
    """The contract's factors of the explainer's."""
    return [Factor(factor=f.factor, contribution=float(f.contribution)) for f in factors]


def _merge_letter(fwd, error: str) -> tuple:
    """The dead letter of a partial update the account stage could not merge, naming its input
    record (``Forward.source``)."""
    topic, partition, offset = (fwd.source or "?:0:0").rsplit(":", 2)
    raw = json.dumps(fwd.item.wire(), separators=(",", ":")).encode()
    letter = dead_letter(RawRecord(topic, int(partition), int(offset), None, raw), error)
    kind = reason_kind(ParseError("", error.split(": ", 1)[-1])) if ": " in error else "invalid"
    return letter, None, kind


def _rescore_effect(effect: ApplyEffect) -> ApplyEffect:
    # A duplicate is usually a replay after a crash, between our apply and the publication of
    # the scores it caused: rescoring its leads again is how those scores are not lost (a
    # score that was already published does not move, so nothing is sent twice).
    return effect if effect.changed else replace(effect, changed=True)
