"""The Faust adapter: agents, timers and web views that feed ``ScoringRuntime``.

Everything a worker decides (admission against stored positions, the send -> flush -> commit
order, discarding pending work on failure or rebalance, the scoring lock) lives in
``leadpulse.stream.runtime``; this module only turns Faust's events, ticks and requests into
calls on it (docs/stream.md).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Optional

import faust
from faust.exceptions import SameNode
from faust.types import TP
from faust.web import Request, Response, View

from leadpulse.schemas.topics import INPUT_TOPICS
from leadpulse.stream.accounts import AccountProcessor
from leadpulse.stream.erasure import follow_erasures
from leadpulse.stream.faustapp import new_app
from leadpulse.stream.ingest import RawRecord
from leadpulse.stream.metrics import Metrics
from leadpulse.stream.options import AppOptions
from leadpulse.stream.replica import replicate
from leadpulse.stream.router import Router
from leadpulse.stream.runtime import RuntimeTopics, ScoringRuntime

logger = logging.getLogger(__name__)


class FaustProducer:
    """``runtime.Producer`` on the app's own producer: ``app.producer.send`` rather than
    ``Topic.send``, whose per-record futures and callbacks cost several times the send itself
    (docs/stream.md, "Sending")."""

    def __init__(self, app: faust.App):
        self.app = app

    async def send(self, topic: str, key: Optional[bytes], value: Optional[bytes]) -> None:
        await self.app.producer.send(topic, key, value, None, None, None)

    async def flush(self) -> None:
        await self.app.producer.flush()


def _records(events) -> list[RawRecord]:
    return [RawRecord(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                      e.message.value, e.message.timestamp) for e in events]


def build_app(options: AppOptions, router: Router, processor: AccountProcessor,
              metrics: Metrics, on_ready: Optional[Callable[[], None]] = None,
              champion: Optional[Callable[[], Optional[str]]] = None,
              load_scorer: Optional[Callable[[str], object]] = None,
              retrain: Optional[Callable[[], "asyncio.Future[int]"]] = None) -> faust.App:
    """Wire the agents, timers and views to a ``ScoringRuntime``.

    Args:
        champion: returns the registry's champion version (polled for hot swaps).
        load_scorer: loads the scorer of a version.
        retrain: starts a retraining process and returns its exit code (awaitable).
    """
    app = new_app(options.app_id, options.bootstrap, partitions=options.partitions,
                  web_host=options.web_host, web_port=options.web_port,
                  fetch_max_wait_ms=options.fetch_max_wait_ms, api_token=options.api_token,
                  faust_views=options.faust_views,
                  **({"datadir": options.datadir} if options.datadir else {}),
                  **({"canonical_url": options.web_url} if options.web_url else {}))
    contract_of = {options.topics[s.name]: s.name for s in INPUT_TOPICS}
    inputs = app.topic(*contract_of, key_serializer="raw", value_serializer="raw")
    accounts = app.topic(options.account_topic, key_serializer="raw", value_serializer="raw",
                         partitions=options.partitions)

    async def seek(topic: str, partition: int, offset: int) -> None:
        await app.consumer.seek(TP(topic, partition), offset)

    runtime = ScoringRuntime(
        router, processor, metrics, FaustProducer(app), seek,
        RuntimeTopics(inputs=contract_of, accounts=options.account_topic,
                      deadletter=options.topics["crm.deadletter"], scores=options.topics["leads.scores"],
                      alerts=options.topics["leads.alerts"], erasures=options.topics["crm.erasures"]),
        batch_size=options.batch_size, feeds=options.feeds)

    @app.agent(inputs)
    async def ingest(stream):
        async for events in stream.take_events(options.batch_size, within=options.batch_seconds):
            await runtime.ingest(_records(events))

    @app.agent(accounts)
    async def score_accounts(stream):
        async for events in stream.take_events(options.batch_size, within=options.batch_seconds):
            await runtime.accounts(_records(events))

    @app.timer(options.batch_seconds)
    async def flush_pending() -> None:
        await runtime.flush_tick()

    if options.replicate:
        @app.task
        async def replica_reader() -> None:
            # Plain aiokafka outside the group: every worker needs every partition
            # (docs/architecture.md#invariant-4).
            await replicate(options.bootstrap, options.account_topic, processor, runtime.replicated,
                            options.batch_size, options.batch_seconds, options.fetch_max_wait_ms)

    @app.task
    async def erasure_reader() -> None:
        # Every worker reads every erasure: the person's traces are in several workers' state.
        await follow_erasures(options.bootstrap, options.topics["crm.erasures"], processor.book.positions,
                              runtime.erase_record)

    @app.timer(options.sweep_seconds)
    async def decay_sweep() -> None:
        await runtime.sweep_tick(options.sweep_leads)

    @app.timer(options.model_poll_seconds)
    async def hot_swap() -> None:
        if champion is not None and load_scorer is not None:
            await runtime.swap_model(champion, load_scorer)

    @app.on_partitions_assigned.connect
    async def resume_from_state(sender, assigned, **kwargs):
        # Faust seeks to the group's committed offsets right after this signal: committing the
        # positions stored with our state first makes it resume exactly there.
        offsets = runtime.assigned((tp.topic, tp.partition) for tp in assigned)
        if offsets:
            # faust has no public "commit these offsets"
            await app.consumer._commit({TP(t, p): o for (t, p), o in offsets.items()})
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
        runtime.count_graph_nodes()

    if options.hold_days > 0:
        @app.timer(options.expire_seconds)
        async def expire_held() -> None:
            await runtime.expire_held(options.hold_days * 86400)

    if options.lag_seconds > 0:
        @app.timer(options.lag_seconds)
        async def consumer_lag() -> None:
            # End offsets from the broker against the positions stored with our state (what is
            # really done), not the group's committed offsets.
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
        """Liveness: the process answers (its event loop runs)."""

        async def get(self, request: Request) -> Response:
            return self.json(runtime.health())

    @app.page("/readyz")
    class Ready(View):
        """Readiness: a model, an assignment, and applied data close to its input."""

        async def get(self, request: Request) -> Response:
            reasons = runtime.readiness(options.ready_max_lag_seconds)
            body = {"ready": not reasons, "reasons": reasons, **runtime.health()}
            return self.json(body, status=503 if reasons else 200)

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
            body = await runtime.lead(contact_id)
            if body is None:
                return self.json({"error": f"no score for {contact_id}"}, status=404)
            if "status" in body:  # deleted or erased: the score was withdrawn
                return self.json({"error": f"{contact_id} was {body['status']}", **body}, status=404)
            return self.json(body)

    return app
