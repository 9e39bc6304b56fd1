"""The Faust application: agents, web views and timers wired to the pure stream core.

Two agents (docs/stream.md):
    ingest   — every input topic: validate (bad -> crm.deadletter), route by account
               (stream.router), forward to the account topic, flush, commit router state.
    accounts — the account topic: apply to the graph store (stream.accounts), rescore the
               affected leads as of the partition watermark (behind the input, those of
               several batches together), publish changes and alerts, flush, commit the
               score book.

Correctness never depends on Faust's committed offsets or tables (BROKER_NOTES traps 1 and 3):
each stage stores the offsets it consumed in the same RocksDB write as its state, and on every
assignment the consumer is moved to those stored positions.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Callable, Optional

import faust
from faust.exceptions import SameNode
from faust.types import TP
from faust.web import Request, Response, View

from leadpulse.schemas.tables import format_time
from leadpulse.schemas.timeutil import from_micros
from leadpulse.schemas.topics import INPUT_TOPICS
from leadpulse.schemas.types import NODE_TYPES
from leadpulse.stream.accounts import AccountProcessor, Outputs
from leadpulse.stream.faustapp import new_app, send
from leadpulse.stream.options import AppOptions
from leadpulse.stream.ingest import RawRecord, validate
from leadpulse.stream.metrics import Metrics
from leadpulse.stream.positions import PositionGuard
from leadpulse.stream.replica import replicate
from leadpulse.stream.router import Router

logger = logging.getLogger(__name__)




#: score-book fields that are the worker's bookkeeping, not part of the /leads answer
_BOOK_ONLY = frozenset({"alerted_tier"})


def build_app(options: AppOptions, router: Router, processor: AccountProcessor,
              metrics: Metrics, on_ready: Optional[Callable[[], None]] = None,
              champion: Optional[Callable[[], Optional[str]]] = None,
              load_scorer: Optional[Callable[[str], object]] = None,
              retrain: Optional[Callable[[], "asyncio.Future[int]"]] = None) -> faust.App:
    """Wire the agents, timers and views.

    Args:
        champion: returns the registry's champion version (polled for hot swaps).
        load_scorer: loads the scorer of a version.
        retrain: starts a retraining process and returns its exit code (awaitable).
    """
    app = new_app(options.app_id, options.bootstrap, partitions=options.partitions,
                  web_host=options.web_host, web_port=options.web_port,
                  fetch_max_wait_ms=options.fetch_max_wait_ms,
                  **({"datadir": options.datadir} if options.datadir else {}),
                  **({"canonical_url": options.web_url} if options.web_url else {}))
    contract_of = {options.topics[s.name]: s.name for s in INPUT_TOPICS}
    inputs = app.topic(*contract_of, key_serializer="raw", value_serializer="raw")
    accounts = app.topic(options.account_topic, key_serializer="raw", value_serializer="raw",
                         partitions=options.partitions)
    deadletter = app.topic(options.topics["crm.deadletter"], key_serializer="raw", value_serializer="raw")
    scores = app.topic(options.topics["leads.scores"], key_serializer="raw", value_serializer="raw")
    alerts = app.topic(options.topics["leads.alerts"], key_serializer="raw", value_serializer="raw")

    scoring = asyncio.Lock()  # one writer of the score book at a time: agent or sweep
    backlog = [False]  # the account agent's last batch was full, or it holds a window
    ingest_guard = PositionGuard(router.state.positions())
    account_guard = PositionGuard(processor.published_positions())

    warned: dict = {}  # (topic, partition) -> the seek target we last warned about

    async def admit(guard: PositionGuard, m) -> bool:  # noqa: ANN001 - Faust message
        verdict = guard.check(m.topic, m.partition, m.offset)
        if verdict == "seek":
            target = guard.seek_target(m.topic, m.partition)
            if warned.get((m.topic, m.partition)) != target:
                warned[(m.topic, m.partition)] = target
                logger.warning("%s[%d] resumed at %d past stored position %d: seeking back",
                               m.topic, m.partition, m.offset, target)
            await app.consumer.seek(TP(m.topic, m.partition), target)
        return verdict == "process"

    @app.agent(inputs)
    async def ingest(stream):  # noqa: ANN001 - Faust stream
        async for events in stream.take_events(options.batch_size, within=options.batch_seconds):
            try:
                await _ingest_batch(events)
            except Exception:
                # Faust restarts the agent; the guard must expect what the state really holds.
                ingest_guard.reset(router.state.positions())
                raise

    async def _ingest_batch(events) -> None:  # noqa: ANN001
        batch, positions = [], {}
        for ev in events:
            m = ev.message
            if not await admit(ingest_guard, m):
                continue
            record = RawRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
            positions[(m.topic, m.partition)] = m.offset + 1
            metrics.consumed.labels(topic=m.topic).inc()
            result = validate(record, contract_of[m.topic])
            if isinstance(result, tuple):
                letter, kind = result
                metrics.rejected.labels(topic=m.topic, reason=kind).inc()
                await send(app, deadletter, m.key, letter.model_dump_json().encode())
            else:
                batch.append((record, contract_of[m.topic], result))
        forwards, change = router.route(batch)
        change["positions"].update(positions)
        for f in forwards:
            await send(app, accounts, f.account.encode(), f.wire())
        await app.producer.flush()
        router.commit(change)

    @app.agent(accounts)
    async def score_accounts(stream):  # noqa: ANN001
        async for events in stream.take_events(options.batch_size, within=options.batch_seconds):
            by_partition: dict[int, list[RawRecord]] = {}
            for ev in events:
                m = ev.message
                if not await admit(account_guard, m):
                    continue
                by_partition.setdefault(m.partition, []).append(
                    RawRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp))
            async with _pending_scored():
                held = False
                for partition, records in sorted(by_partition.items()):
                    # caught up, each partition's share is published before the next one is scored
                    held = not await _take(records, partition) or held
                # a full batch or a held window means a backlog: the sweep waits meanwhile
                backlog[0] = len(events) >= options.batch_size or held

    @app.timer(options.batch_seconds)
    async def flush_pending() -> None:
        if not processor.flush_due():
            return
        try:
            async with _pending_scored():
                if processor.flush_due():
                    await _publish(processor.flush())
                    backlog[0] = False  # no batch came to end the window: the sweep may run
        except Exception:  # the next batch's admission seeks back to the book's positions
            logger.exception("scoring the pending leads failed; replaying their batches")

    @contextlib.asynccontextmanager
    async def _pending_scored():  # noqa: ANN202
        # Under the lock; on failure the pending set (the agent's and the replication reader's
        # batches) is forgotten and both re-read from the book's positions.
        async with scoring:
            try:
                yield
            except Exception:
                _forget_pending()
                raise

    async def _take(records: list[RawRecord], partition: int, replica: bool = False) -> bool:
        # Behind the input, the leads of several batches (the agent's and the replication
        # reader's alike) are scored together (``ScoringOptions.coalesce``); ``flush_pending``
        # ends a window that no batch ends. Whether the batch's leads were published.
        out = processor.take(records, partition, replica)
        if out is not None:
            await _publish(out)
        return out is not None

    def _forget_pending() -> None:
        # Faust restarts the agent; the guard must expect what the book really holds, and the
        # batches applied since the last publication are replayed from there.
        processor.discard_pending()
        account_guard.reset(processor.published_positions())

    if options.replicate:
        @app.task
        async def replica_reader() -> None:
            # Plain aiokafka outside the group: every worker needs every partition (invariant 4).
            await replicate(options.bootstrap, options.account_topic, processor, _replicated,
                            options.batch_size, options.batch_seconds, options.fetch_max_wait_ms)

        async def _replicated(records: list[RawRecord], partition: int) -> None:
            async with _pending_scored():  # on failure the reader re-reads (``discards``)
                await _take(records, partition, replica=True)

    @app.timer(options.sweep_seconds)
    async def decay_sweep() -> None:
        if backlog[0]:
            return  # ingestion first: the events being applied rescore their leads anyway
        async with scoring:
            await _publish(processor.sweep(options.sweep_leads))

    @app.timer(options.model_poll_seconds)
    async def hot_swap() -> None:
        if champion is None or load_scorer is None:
            return
        version = champion()
        current = getattr(processor.scorer, "version", None)
        if version is None or version == current:
            return
        scorer = await asyncio.get_running_loop().run_in_executor(None, load_scorer, version)
        if scorer is None:
            return
        async with scoring:  # the sweep then rescores every lead under the new version
            processor.scorer = scorer
        metrics.set_model(version, getattr(scorer, "auroc", None))
        logger.info("hot-swapped model %s -> %s", current, version)

    async def _publish(out: Outputs) -> None:
        for s in out.scores:
            await send(app, scores, s.contact_id.encode(), s.model_dump_json().encode())
        for a in out.alerts:
            await send(app, alerts, a.contact_id.encode(), a.model_dump_json().encode())
        if out.scores or out.alerts:
            await app.producer.flush()
        processor.commit_published(out)
        done = time.time()
        for produced in out.produced_at:
            metrics.event_to_publish_seconds.observe(max(0.0, done - produced))

    @app.on_partitions_assigned.connect
    async def resume_from_state(sender, assigned, **kwargs):  # noqa: ANN001
        # Faust seeks to the group's committed offsets right after this signal; committing the
        # positions stored with our state first makes it resume exactly there (after a crash,
        # or from 0 when the data directory was deleted). The guards catch anything else.
        processor.local = {tp.partition for tp in assigned if tp.topic == options.account_topic}
        processor.discard_pending()  # replayed from the stored positions below
        processor.count_tiers()
        stage1 = router.state.positions()
        stage2 = processor.published_positions()
        ingest_guard.reset(stage1)
        account_guard.reset(stage2)
        offsets = {}
        for tp in assigned:
            if tp.topic in contract_of:
                offsets[tp] = stage1.get((tp.topic, tp.partition), 0)
            elif tp.topic == options.account_topic:
                offsets[tp] = stage2.get((tp.topic, tp.partition), 0)
        if offsets:
            await app.consumer._commit(offsets)  # faust has no public "commit these offsets"
        logger.info("assigned %d partitions; resuming from positions stored with the state", len(assigned))
        if on_ready is not None:
            on_ready()

    if retrain is not None and options.retrain_seconds > 0:
        @app.timer(options.retrain_seconds, on_leader=False)
        async def periodic_retrain() -> None:
            # Its own process: training never blocks ingestion; a promotion reaches this
            # worker through the champion poll above, like any other.
            code = await retrain()
            outcome = {0: "ok", 2: "skipped"}.get(code, "failed")
            metrics.retrains.labels(outcome=outcome).inc()
            logger.info("periodic retrain finished: exit %s (%s)", code, outcome)

    @app.timer(60.0)
    async def graph_size() -> None:
        # as of the newest watermark: every node this worker holds, replicated ones included
        marks = [w for _, w in processor.book.scan("w")]
        if marks:
            for ntype in NODE_TYPES:
                metrics.graph_nodes.labels(type=ntype).set(len(processor.store.node_ids(ntype, max(marks))))

    if options.lag_seconds > 0:
        @app.timer(options.lag_seconds)
        async def consumer_lag() -> None:
            # End offsets from the broker against the positions stored with our state (what is
            # really done), not Faust's committed offsets.
            tps = app.consumer.assignment()
            if not tps:
                return
            ends = await app.consumer.highwaters(*tps)
            done = {**router.state.positions(), **processor.published_positions()}
            metrics.consumer_lag.clear()
            for tp, end in ends.items():
                behind = max(0, end - done.get((tp.topic, tp.partition), 0))
                metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(behind)

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "model_version": getattr(processor.scorer, "version", None),
                              "account_partitions": sorted(processor.local or [])})

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/leads/{contact_id}")
    class Lead(View):
        async def get(self, request: Request, contact_id: str) -> Response:
            company = processor.company_of(contact_id)  # every worker knows every contact (replica)
            if company is not None:
                try:  # Faust's router: forward to the worker that owns the account's partition
                    return await app.router.route_topic_req(accounts, company.encode(), self.web, request)
                except (SameNode, KeyError):
                    pass  # ours, or no assignment yet: answer from the local book
            last = processor.last_score(contact_id)
            if last is None:
                return self.json({"error": f"no score for {contact_id}"}, status=404)
            body = {k: v for k, v in last.items() if k not in _BOOK_ONLY and not k.startswith("checked_")}
            body["as_of"] = format_time(from_micros(last["as_of"]))
            if not body.get("top_factors"):
                async with scoring:  # explained on demand; the stream explains only a budget
                    body["top_factors"] = processor.explain_now(contact_id) or []
            return self.json({"contact_id": contact_id, **body})

    return app
