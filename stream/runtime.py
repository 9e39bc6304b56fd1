"""The worker's runtime: its state, its locks and the order of its steps, free of Faust.

``ScoringRuntime`` is what a worker *does* with the records it consumes and the ticks of its
timers; ``leadpulse.stream.app`` is a thin Faust adapter that feeds it. Tests drive the same
object in-process with a real broker and inject failures at chosen points
(tests/stream/test_runtime.py).

Two stages (docs/stream.md):
    ingest   — input records: validate (bad -> dead-letter topic), route by account, forward
               to the account topic; then one checkpoint commits the router's state and positions.
    accounts — account-topic records: apply to the graph store, rescore the affected leads
               (behind the input, those of several batches together), publish; one checkpoint
               commits the score book and positions.

Correctness never depends on the consumer group's committed offsets (docs/kafka-notes.md#trap-1):
each stage stores the offsets it consumed in the same RocksDB write as its state; on every
assignment and after every failure the runtime expects exactly those positions, and asks the
transport to seek back when a record arrives past them (``PositionGuard``).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AsyncIterator, Awaitable, Callable, Iterable, Optional, Protocol

from leadpulse.model.calibration import card_of
from leadpulse.schemas.feeds import FeedSpec
from leadpulse.schemas.tables import format_time
from leadpulse.schemas.timeutil import from_micros, to_micros
from leadpulse.schemas.types import NODE_TYPES
from leadpulse.stream.accounts import AccountProcessor, Outputs
from leadpulse.stream.erasure import parse_erasure
from leadpulse.stream.ingest import RawRecord, dead_letter, validate
from leadpulse.stream.metrics import Metrics
from leadpulse.stream.positions import PositionGuard
from leadpulse.stream.router import NEVER_ARRIVED, Router
from leadpulse.stream.serving import serving_of

logger = logging.getLogger(__name__)

_DETECT = FeedSpec()  # a topic with no feed configured: its format is detected by shape
#: score-book fields that are the worker's bookkeeping, not part of the /leads answer
_BOOK_ONLY = frozenset({"alerted_tier"})


class Producer(Protocol):
    """What the runtime needs of a Kafka producer: enqueue, then wait for everything enqueued."""

    async def send(self, topic: str, key: Optional[bytes], value: Optional[bytes]) -> None: ...

    async def flush(self) -> None: ...


#: seek(topic, partition, offset): move the consumer of that partition back to ``offset``
Seek = Callable[[str, int, int], Awaitable[None]]


@dataclass(frozen=True)
class RuntimeTopics:
    """Configured topic names the runtime reads and writes.

    Args:
        inputs: configured input topic name -> its contract name (``crm.contacts``, ...).
        accounts: the internal topic keyed by company_id.
        deadletter, scores, alerts: output topics.
        erasures: the control topic of erasure requests (``stream.erasure``).
    """
    inputs: dict
    accounts: str
    deadletter: str
    scores: str
    alerts: str
    erasures: Optional[str] = None


class Checkpoint:
    """One step that keeps the order "send -> producer flush -> state commit".

    The state (and the consumed positions stored with it) is committed only after the producer
    confirmed every record, so a failure at any point replays the batch from the stored
    positions: outputs may repeat, never go missing (docs/architecture.md#invariant-3).
    """

    def __init__(self, producer: Producer):
        self.producer = producer

    async def run(self, records: Iterable[tuple[str, Optional[bytes], Optional[bytes]]],
                  commit: Callable[[], None]) -> None:
        sent = 0
        for topic, key, value in records:
            await self.producer.send(topic, key, value)
            sent += 1
        if sent:
            await self.producer.flush()
        commit()


class ScoringRuntime:
    """The worker's state machine: two stages, the decay sweep, model swaps, lookups.

    Args:
        router: stage 1 (its state holds the directory, held events and input positions).
        processor: stage 2 (graph store, score book, pending window).
        metrics: the worker's metrics.
        producer: where records go (``Producer``).
        seek: how to move a consumer back to a stored position.
        topics: the topic names.
        batch_size: the adapter's batch bound; a full batch means a backlog (the sweep waits).
        feeds: contract input topic -> its format and field mapping (``schemas.feeds``).
    """

    def __init__(self, router: Router, processor: AccountProcessor, metrics: Metrics, producer: Producer,
                 seek: Seek, topics: RuntimeTopics, batch_size: int, feeds: Optional[dict] = None):
        self.router = router
        self.processor = processor
        self.metrics = metrics
        self.checkpoint = Checkpoint(producer)
        self.seek = seek
        self.topics = topics
        self.batch_size = batch_size
        self.feeds = feeds or {}
        #: one writer of the score book at a time: the account stage, the replication reader,
        #: the flush and sweep timers, a model swap, an on-demand explanation
        self.scoring = asyncio.Lock()
        #: the account stage's last batch was full, or it holds a window: the sweep waits, as
        #: long as batches keep coming (``sweep_tick``)
        self.backlog = False
        self._batches = 0  # account-stage batches taken, and that count at the last sweep tick
        self._batches_at_tick = -1
        self.ingest_guard = PositionGuard(router.state.positions())
        self.account_guard = PositionGuard(processor.published_positions())
        self._warned: dict = {}  # (topic, partition) -> the seek target last warned about
        #: stage -> (wall time a batch was taken, how old its newest record was then)
        self._behind: dict[str, tuple[float, float]] = {}
        #: one writer of the router state at a time: the ingest stage and the held-event expiry
        self.routing = asyncio.Lock()
        metrics.watch(router.held_count, self.watermarks)

    # ------------------------------------------------------------ admission
    async def _admit(self, guard: PositionGuard, r: RawRecord) -> bool:
        verdict = guard.check(r.topic, r.partition, r.offset)
        if verdict == "seek":
            target = guard.seek_target(r.topic, r.partition)
            if self._warned.get((r.topic, r.partition)) != target:
                self._warned[(r.topic, r.partition)] = target
                logger.warning("%s[%d] resumed at %d past stored position %d: seeking back",
                               r.topic, r.partition, r.offset, target)
            await self.seek(r.topic, r.partition, target)
        return verdict == "process"

    # ------------------------------------------------------------ stage 1
    async def ingest(self, records: list[RawRecord]) -> None:
        """A batch of input records. On failure the stage expects its stored positions again,
        its partitions are moved back there, and the error propagates (the adapter's agent
        restarts and re-reads the batch)."""
        try:
            async with self.routing:
                await self._ingest(records)
        except Exception:
            self.ingest_guard.reset(self.router.state.positions())
            await self._seek_back(self.ingest_guard, {(r.topic, r.partition) for r in records})
            raise

    async def _ingest(self, records: list[RawRecord]) -> None:
        self._observe("ingest", records)
        batch, positions, letters = [], {}, []
        # an event dated past the clock plus this would move its partition's scoring time
        # (docs/stream.md#event-time-is-bounded-by-the-wall-clock)
        now, max_future = datetime.now(timezone.utc), self.processor.options.max_future
        for r in records:
            if not await self._admit(self.ingest_guard, r):
                continue
            positions[(r.topic, r.partition)] = r.offset + 1
            self.metrics.consumed.labels(topic=r.topic).inc()
            contract = self.topics.inputs[r.topic]
            result = validate(r, contract, now, max_future, self.feeds.get(contract, _DETECT))
            if isinstance(result, tuple):
                letter, kind = result
                self.metrics.rejected.labels(topic=r.topic, reason=kind).inc()
                letters.append((self.topics.deadletter, r.key, letter.model_dump_json().encode()))
            else:
                batch.append((r, contract, result))
        forwards, change = self.router.route(batch)
        change["positions"].update(positions)
        for letter, key, kind in change["letters"]:
            self.metrics.rejected.labels(topic=letter.source_topic, reason=kind).inc()
            letters.append((self.topics.deadletter, key, letter.model_dump_json().encode()))
        out = letters + [(self.topics.accounts, f.account.encode(), f.wire()) for f in forwards]
        await self.checkpoint.run(out, lambda: self.router.commit(change))
        if change["erased"]:
            self.metrics.erased_dropped.inc(change["erased"])

    # ------------------------------------------------------------ stage 2
    async def accounts(self, records: list[RawRecord]) -> None:
        """A batch of account-topic records (any partitions of this worker's share)."""
        self._observe("accounts", records)
        by_partition: dict[int, list[RawRecord]] = {}
        for r in records:
            if await self._admit(self.account_guard, r):
                by_partition.setdefault(r.partition, []).append(r)
        async with self._pending_scored():
            held = False
            for partition, part in sorted(by_partition.items()):
                # caught up, each partition's share is published before the next one is scored
                held = not await self._take(part, partition) or held
            self.backlog = len(records) >= self.batch_size or held
            self._batches += 1

    async def replicated(self, records: list[RawRecord], partition: int) -> None:
        """A batch of the replication reader (every partition, outside the group)."""
        async with self._pending_scored():  # on failure the reader re-reads (``discards``)
            await self._take(records, partition, replica=True)

    async def flush_tick(self) -> None:
        """Timer: end a coalescing window that no batch ended."""
        if not self.processor.flush_due():
            return
        try:
            async with self._pending_scored():
                if self.processor.flush_due():
                    await self._flush()
                    self.backlog = False  # no batch came to end the window: the sweep may run
        except Exception:  # the next batch's admission seeks back to the book's positions
            logger.exception("scoring the pending leads failed; replaying their batches")

    async def sweep_tick(self, limit: int) -> None:
        """Timer: rescore up to ``limit`` leads whose time-relative features decayed.

        Skipped while the account stage has a backlog and took a batch since the previous
        tick: ingestion first (the events being applied rescore their leads anyway). A backlog
        flag that no batch followed is over: the last batch was full and the input then went
        quiet, which is when the decay sweep matters most."""
        busy = self._batches != self._batches_at_tick
        self._batches_at_tick = self._batches
        if self.backlog and busy:
            return
        async with self.scoring:
            await self._publish(self.processor.sweep(limit))

    @contextlib.asynccontextmanager
    async def _pending_scored(self) -> AsyncIterator[None]:
        # Under the lock; on failure the pending set (the stage's and the replication reader's
        # batches) is forgotten and both re-read from the book's positions.
        async with self.scoring:
            try:
                yield
            except Exception:
                await self._forget_pending()
                raise

    async def _take(self, records: list[RawRecord], partition: int, replica: bool = False) -> bool:
        # Behind the input, the leads of several batches are scored together
        # (``ScoringOptions.coalesce``); whether this batch's leads were published.
        self.processor.apply(records, partition, replica)
        if not self.processor.flush_due():
            return False
        await self._flush()
        return True

    async def _flush(self) -> None:
        # Between scoring chunks the event loop runs the rest: a window of a worker far behind
        # holds tens of thousands of leads, seconds of scoring that the HTTP views, the
        # metrics scrape and stage 1 would otherwise wait out. The scoring lock stays held.
        for out in self.processor.flush_steps():
            if out is None:
                await asyncio.sleep(0)
        await self._publish(out)

    async def _forget_pending(self) -> None:
        # Every batch applied since the last publication is replayed, whichever partition it
        # came from: each owned partition goes back to the book's position.
        self.processor.discard_pending()
        self.account_guard.reset(self.processor.published_positions())
        owned = {(self.topics.accounts, p) for p in self.processor.local or ()}
        await self._seek_back(self.account_guard, owned)

    async def _seek_back(self, guard: PositionGuard, partitions: set[tuple[str, int]]) -> None:
        # Without it a failed batch would be replayed only when a later record arrives past it.
        for topic, partition in sorted(partitions):
            target = guard.seek_target(topic, partition)
            self._warned[(topic, partition)] = target  # records still in flight past it are expected
            try:
                await self.seek(topic, partition, target)
            except Exception:
                logger.exception("seeking %s[%d] back to %d failed; the next record asks again",
                                 topic, partition, target)
        if partitions:
            logger.warning("replaying %d partitions from the positions stored with the state", len(partitions))

    async def _publish(self, out: Outputs) -> None:
        records = [(self.topics.scores, s.contact_id.encode(), s.model_dump_json().encode()) for s in out.scores]
        records += [(self.topics.alerts, a.contact_id.encode(), a.model_dump_json().encode()) for a in out.alerts]
        # a withdrawn score is a tombstone, so a compacted scores topic forgets the lead
        records += [(self.topics.scores, cid.encode(), None) for cid in out.tombstones]
        records += [(self.topics.deadletter, key, letter.model_dump_json().encode()) for letter, key, _ in out.letters]
        # a departure's carried activities: in the checkpoint, so a replay carries them again
        records += [(self.topics.accounts, f.account.encode(), f.wire()) for f in out.forwards]
        await self.checkpoint.run(records, lambda: self.processor.commit_published(out))
        done = time.time()
        for produced in out.produced_at:
            self.metrics.event_to_publish_seconds.observe(max(0.0, done - produced))

    # ------------------------------------------------------------ group membership
    def assigned(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """A new assignment: forget what was pending and expect the stored positions.

        Returns the position of every assigned partition, which the adapter commits to the
        group before the consumer seeks, so it resumes exactly there (after a crash, or from 0
        when the data directory was deleted); the guards catch anything else.
        """
        partitions = list(partitions)
        self.processor.local = {p for t, p in partitions if t == self.topics.accounts}
        self.router.assigned = frozenset((t, p) for t, p in partitions if t in self.topics.inputs)
        self.processor.discard_pending()  # replayed from the stored positions
        self.processor.count_tiers()
        stage1 = self.router.state.positions()
        stage2 = self.processor.published_positions()
        self.ingest_guard.reset(stage1)
        self.account_guard.reset(stage2)
        offsets = {}
        for topic, partition in partitions:
            if topic in self.topics.inputs:
                offsets[(topic, partition)] = stage1.get((topic, partition), 0)
            elif topic == self.topics.accounts:
                offsets[(topic, partition)] = stage2.get((topic, partition), 0)
        return offsets

    # ------------------------------------------------------------ model
    async def swap_model(self, champion: Callable[[], Optional[str]],
                         load_scorer: Callable[[str], object]) -> Optional[str]:
        """Load the registry's champion if it changed; the new version, or None."""
        version = champion()
        current = getattr(self.processor.scorer, "version", None)
        if version is None or version == current:
            return None
        scorer = await asyncio.get_running_loop().run_in_executor(None, load_scorer, version)
        if scorer is None:
            return None
        async with self.scoring:  # the sweep then rescores every lead under the new version
            self.processor.scorer = scorer
        self.metrics.set_model(version, serving_of(scorer).auroc)
        logger.info("hot-swapped model %s -> %s", current, version)
        return version

    # ------------------------------------------------------------ readiness
    def _observe(self, stage: str, records: list[RawRecord]) -> None:
        stamps = [r.timestamp for r in records if r.timestamp]
        if stamps:
            now = time.time()
            self._behind[stage] = (now, max(0.0, now - max(stamps)))

    def input_lag(self, idle_after: float = 10.0) -> float:
        """Seconds the applied data is behind its input: how old the newest record of each
        stage's last batch was when it was taken (the larger of the two stages). A stage that
        took no batch for ``idle_after`` seconds has an idle input: it counts as caught up,
        unless the account stage still holds applied events unpublished."""
        now, lag = time.time(), 0.0
        for stage, (at, behind) in self._behind.items():
            idle = now - at > idle_after and not (stage == "accounts" and self.processor.unpublished())
            lag = max(lag, 0.0 if idle else behind)
        return lag

    def readiness(self, max_lag: float) -> list[str]:
        """Why this worker should not get traffic yet; empty when it is ready."""
        reasons = []
        if self.processor.scorer is None:
            reasons.append("no model loaded: train one (`leadpulse train`) or check LEADPULSE_MODEL_DIR")
        if self.processor.local is None:
            reasons.append("no partitions assigned yet (joining the consumer group)")
        lag = self.input_lag()
        if lag > max_lag:
            reasons.append(f"applied data is {lag:.0f} s behind its input (limit {max_lag:.0f} s, "
                           "LEADPULSE_READY_MAX_LAG_SECONDS)")
        return reasons

    # ------------------------------------------------------------ held events
    async def expire_held(self, max_age: float, chunk: int = 1000) -> int:
        """Timer: dead-letter the held events of this worker's input partitions whose contact
        did not arrive within ``max_age`` seconds of wall-clock time (docs/stream.md, "Held
        events"); how many. Chunk by chunk under the routing lock, each sent, flushed, then
        committed (``Checkpoint``): an event a batch releases meanwhile is never also expired,
        and a failure sends a chunk again at the next tick rather than lose it."""
        expired = 0
        try:
            while True:
                done = await self._expire_chunk(max_age, chunk)
                expired += done
                if done < chunk:
                    break
        except Exception:
            logger.exception("expiring held events failed; the next tick tries again")
        if expired:
            logger.warning("dead-lettered %d held events whose contact never arrived", expired)
        return expired

    async def _expire_chunk(self, max_age: float, chunk: int) -> int:
        async with self.routing:  # released between chunks: ingestion goes on meanwhile
            letters, change = self.router.expire(max_age, limit=chunk)
            if not change["deletes"]:
                return 0
            out = [(self.topics.deadletter, key, letter.model_dump_json().encode()) for letter, key in letters]
            await self.checkpoint.run(out, lambda: self.router.commit(change))
        for letter, _ in letters:
            self.metrics.rejected.labels(topic=letter.source_topic, reason=NEVER_ARRIVED).inc()
        return len(letters)

    # ------------------------------------------------------------ erasure
    async def erase_record(self, record: RawRecord) -> None:
        """One record of the erasures topic: erase the person it names (``erase``), storing
        the next position with the erasure; an invalid request is a dead letter."""
        position = {(record.topic, record.partition): record.offset + 1}
        request = parse_erasure(record.value)
        if isinstance(request, str):
            letter = dead_letter(record, request)
            self.metrics.rejected.labels(topic=record.topic, reason="erasure").inc()
            async with self.scoring:
                await self.checkpoint.run([(self.topics.deadletter, record.key, letter.model_dump_json().encode())],
                                          lambda: self.processor.book.commit(positions=position))
            return
        await self.erase(request.contact_id, to_micros(request.requested_at), position)

    async def erase(self, contact_id: str, at: int, position: Optional[dict] = None) -> None:
        """Remove a person from every state this worker keeps: the router's directory and held
        events, the graph store (their contact, activities and orders, at every time), the score
        book; publish their tombstone and the rescored leads that saw them; then rewrite the
        RocksDB files so no deleted key stays on disk (docs/operating.md, "Erasing a person")."""
        async with self.routing, self.scoring:
            await self._publish(self.processor.flush())  # nothing pending may name the person
            change = self.router.erase(contact_id, at)
            self.router.commit(change)
            self.router.state.purge()
            out = self.processor.erase(contact_id, at)
            out.positions.update(position or {})
            await self._publish(out)
            self.processor.purge()
        self.metrics.erasures.inc()
        logger.info("erased a person from this worker's state (%d leads rescored)", len(out.scores))

    # ------------------------------------------------------------ reads
    def watermarks(self) -> dict[int, float]:
        """Newest applied event time (epoch seconds) of each account partition this worker
        owns (all with one before the first assignment); partitions with none yet are absent."""
        marks = {int(k[0]): w / 1e6 for k, w in self.processor.book.scan("w")}
        local = self.processor.local
        return marks if local is None else {p: t for p, t in marks.items() if p in local}

    def freshness(self, now: Optional[float] = None) -> dict[int, float]:
        """Account partition -> seconds between the wall clock and its newest applied event
        time (``leadpulse_applied_event_age_seconds``). Event time, not arrival: a feed whose
        events arrive late, or a replay of history, reads old; a future-dated event, negative."""
        now = time.time() if now is None else now
        return {p: now - t for p, t in self.watermarks().items()}

    def count_graph_nodes(self) -> None:
        """Nodes this worker holds as of its newest watermark, replicated ones included."""
        marks = [w for _, w in self.processor.book.scan("w")]
        if marks:
            for ntype in NODE_TYPES:
                self.metrics.graph_nodes.labels(type=ntype).set(
                    len(self.processor.store.node_ids(ntype, max(marks))))

    def health(self) -> dict:
        scorer = self.processor.scorer
        serving = serving_of(scorer)
        # the family and the reason tell a rules model serving below the minimum data
        # (docs/model.md#minimum-data) from a learned one
        return {"status": "ok", "model_version": getattr(scorer, "version", None),
                "model_family": serving.family, "model_reason": serving.reason,
                "account_partitions": sorted(self.processor.local or []),
                # what each tier means: its cut and how often it converted at validation
                "tiers": card_of(getattr(scorer, "model", None))}

    async def lead(self, contact_id: str) -> Optional[dict]:
        """The /leads answer from the local score book (explained on demand), or None."""
        last = self.processor.last_score(contact_id)
        if last is None:
            return self.processor.withdrawn(contact_id)
        body = {k: v for k, v in last.items() if k not in _BOOK_ONLY and not k.startswith("checked_")}
        body["as_of"] = format_time(from_micros(last["as_of"]))
        # where the lead stands now among this worker's scored leads (the published record
        # carries it as of its publication)
        body["percentile"] = self.processor.percentile(last["score"])
        if not body.get("top_factors"):
            async with self.scoring:  # the stream explains only a budget of leads per batch
                body.update(self.processor.explain_now(contact_id)
                            or {"top_factors": [], "positive_factors": [], "negative_factors": []})
        body.setdefault("positive_factors", [])  # a book entry written before they existed
        body.setdefault("negative_factors", [])
        return {"contact_id": contact_id, **body}
