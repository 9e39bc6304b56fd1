"""The worker's runtime in-process: real embedded broker, real RocksDB, real torch, no Faust.

A small driver consumes the input and account topics with aiokafka and feeds
``ScoringRuntime`` as the Faust adapter does (seeking when the runtime asks, polling on after
a crashed batch as Faust restarts a crashed agent). Failures are injected at chosen points of
the checkpoint — after apply and before publish, between the producer flush and the state
commit, in the first stage's forward — and a rebalance arrives while a coalescing window is
held. Every run must end like an uninterrupted one: the same graph, every lead's last
published score equal to its book entry, and the book equal to the full recompute as of its
partition's watermark (docs/architecture.md#invariant-2, docs/architecture.md#invariant-3).
The SIGKILL tests of real worker processes (test_worker.py) stay beside these.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Optional

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from leadpulse.schemas.topics import INPUT_TOPICS
from tests.stream.tests_support import account_partition, full_recompute, graph_signature, last_scores, read_all

pytestmark = pytest.mark.slow
PARTITIONS = 2
#: the most records the driver hands a stage at once (``getmany(max_records=...)``)
BATCH = 50


class InjectedFault(RuntimeError):
    """The failure a test injects."""


@dataclass
class FaultyProducer:
    """``runtime.Producer`` on aiokafka that fails once at a chosen step.

    Args:
        fail_at: "send" or "flush" (None: never).
        topic: only calls for records of this topic count (None: every call).
        after: fail on the call after this many calls of that step.
    """
    producer: AIOKafkaProducer
    fail_at: Optional[str] = None
    topic: Optional[str] = None
    after: int = 0
    calls: dict = field(default_factory=lambda: {"send": 0, "flush": 0})
    sent: list = field(default_factory=list)  # (topic, key, value) of every record sent
    _unflushed: set = field(default_factory=set)  # topics sent to since the last flush

    def _maybe_fail(self, step: str, topics: set) -> None:
        if self.fail_at != step or (self.topic is not None and self.topic not in topics):
            return
        if self.calls[step] >= self.after:
            self.fail_at = None
            raise InjectedFault(f"injected at {step}")
        self.calls[step] += 1

    async def send(self, topic, key, value) -> None:
        self._maybe_fail("send", {topic})
        self._unflushed.add(topic)
        self.sent.append((topic, key, value))
        await self.producer.send(topic, value, key=key)

    async def flush(self) -> None:
        self._maybe_fail("flush", self._unflushed)
        self._unflushed = set()
        await self.producer.flush()


async def _end_offsets(bootstrap: str, tps: list[TopicPartition]) -> dict:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await c.start()
    try:
        return {(tp.topic, tp.partition): o for tp, o in (await c.end_offsets(tps)).items()}
    finally:
        await c.stop()


class Driver:
    """Feeds a runtime from the real broker as the Faust adapter does: both stages in small
    batches, the flush timer, seeks on request."""

    def __init__(self, bootstrap: str, inputs: list[str], account_topic: str, batch: int = BATCH):
        self.bootstrap, self.account_topic, self.batch = bootstrap, account_topic, batch
        self.in_tps = [TopicPartition(t, p) for t in inputs for p in range(PARTITIONS)]
        self.acc_tps = [TopicPartition(account_topic, p) for p in range(PARTITIONS)]
        self.faults = 0

    async def __aenter__(self) -> "Driver":
        self.inputs = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                       enable_auto_commit=False, fetch_max_wait_ms=20)
        self.accounts = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                         enable_auto_commit=False, fetch_max_wait_ms=20)
        await self.inputs.start()
        await self.accounts.start()
        self.inputs.assign(self.in_tps)
        self.accounts.assign(self.acc_tps)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.inputs.stop()
        await self.accounts.stop()

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        consumer = self.accounts if topic == self.account_topic else self.inputs
        consumer.seek(TopicPartition(topic, partition), offset)

    async def assign(self, runtime, account_partitions: Optional[set[int]] = None) -> None:
        """A (re)assignment (default: every partition): the runtime's positions, then the seek
        the consumer does to the offsets committed from them."""
        accounts = [tp for tp in self.acc_tps if account_partitions is None or tp.partition in account_partitions]
        self.accounts.assign(accounts)
        offsets = runtime.assigned([(tp.topic, tp.partition) for tp in self.in_tps + accounts])
        for (topic, partition), offset in offsets.items():
            await self.seek(topic, partition, offset)

    async def _poll(self, consumer: AIOKafkaConsumer, feed: Callable) -> int:
        from leadpulse.stream.ingest import RawRecord
        got = await consumer.getmany(timeout_ms=20, max_records=self.batch)
        records = [RawRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp / 1000)
                   for _, ms in sorted(got.items()) for m in ms]
        if records:
            try:
                await feed(records)
            except InjectedFault:
                self.faults += 1
        return len(records)

    async def run(self, runtime, *, during: Optional[Callable[[], Awaitable[None]]] = None,
                  timeout: float = 240) -> None:
        """Until every input is routed, every account record's scores are published and
        nothing is pending."""
        inputs = await _end_offsets(self.bootstrap, self.in_tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = await self._poll(self.inputs, runtime.ingest)
            n += await self._poll(self.accounts, runtime.accounts)
            await runtime.flush_tick()
            if during is not None:
                await during()
            if n == 0 and await self._done(runtime, inputs):
                return
        raise AssertionError("the runtime never caught up")

    async def _done(self, runtime, inputs: dict) -> bool:
        routed = runtime.router.state.positions()
        if any(routed.get(tp, 0) < end for tp, end in inputs.items()):
            return False
        published = runtime.processor.published_positions()
        ends = await _end_offsets(self.bootstrap, self.acc_tps)
        return all(published.get(tp, 0) >= end for tp, end in ends.items()) \
            and runtime.processor.unpublished() == 0


@pytest.fixture(scope="module")
def published(broker, tiny_world) -> tuple[dict, int]:
    """The tiny world on fresh topics of 2 partitions, shared by the module's runs (each run
    reads them from the start into its own state)."""
    import uuid

    from leadpulse.schemas.topics import OUTPUT_TOPICS
    from leadpulse.stream.publish import publish
    prefix = f"rt{uuid.uuid4().hex[:8]}."
    topics = {s.name: prefix + s.name for s in INPUT_TOPICS + OUTPUT_TOPICS}
    report = publish(tiny_world, broker, progress=False, topics=topics, partitions=PARTITIONS)
    return topics, sum(report.counts.values())


@dataclass
class Outcome:
    faults: int
    published_while_away: Optional[list]  # scores published while account partition 1 was away
    signature: tuple
    marks: dict
    book: dict
    scores_topic: str
    metrics: object = None  # the run's ``Metrics``
    deadletter_topic: str = ""


def run_worker(tmp_path: Path, broker: str, inputs: dict, registry: Path, *, run: str,
               producer_fault: Optional[dict] = None, commit_fault_after: Optional[int] = None,
               rebalance: bool = False, coalesce: float = 0.0, feeds: Optional[dict] = None,
               decay_min_age: float = 3600.0, batch: int = BATCH) -> Outcome:
    """One in-process worker over the published world, on its own state and output topics
    (``batch``: the most records handed to a stage at once)."""
    from leadpulse.graph_store.rocks import RocksDBGraphStore
    from leadpulse.model.registry import ModelRegistry
    from leadpulse.model.scorer import Scorer
    from leadpulse.stream.accounts import AccountProcessor
    from leadpulse.stream.metrics import Metrics
    from leadpulse.stream.options import ScoringOptions
    from leadpulse.stream.router import Router
    from leadpulse.stream.runtime import RuntimeTopics, ScoringRuntime
    from leadpulse.stream.state import KVState

    work = tmp_path / run
    topics = RuntimeTopics(inputs={inputs[s.name]: s.name for s in INPUT_TOPICS},
                           accounts=f"{inputs['crm.companies']}.{run}.accounts",
                           deadletter=f"{inputs['crm.deadletter']}.{run}", scores=f"{inputs['leads.scores']}.{run}",
                           alerts=f"{inputs['leads.alerts']}.{run}")
    store, book, router_state = RocksDBGraphStore(work / "graph"), KVState(work / "scores"), KVState(work / "router")
    metrics = Metrics()
    processor = AccountProcessor(store, book, Scorer(ModelRegistry(registry).load("champion")),
                                 ScoringOptions(epsilon=0.0, coalesce=coalesce, decay_min_age=decay_min_age), metrics)
    if commit_fault_after is not None:  # the producer flushed, the book's commit fails once
        real, commits = processor.commit_published, [0]

        def commit(out) -> None:
            if out.scores:
                commits[0] += 1
                if commits[0] == commit_fault_after + 1:
                    raise InjectedFault("injected between flush and commit")
            real(out)
        processor.commit_published = commit

    async def go() -> tuple[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in
                                       (topics.accounts, topics.deadletter, topics.scores, topics.alerts)])
        finally:
            await admin.close()
        aio = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=5)
        await aio.start()
        try:
            async with Driver(broker, list(topics.inputs), topics.accounts, batch) as driver:
                producer = FaultyProducer(aio, **(producer_fault or {}))
                runtime = ScoringRuntime(Router(router_state), processor, metrics, producer, driver.seek, topics,
                                         batch_size=driver.batch, feeds=feeds)
                await driver.assign(runtime)
                rebalanced: list = []  # (index into the producer's log, partitions) per rebalance

                async def maybe_rebalance() -> None:
                    # Account partition 1 is handed away while leads of it wait in a held window,
                    # and comes back once this worker published what it still owns.
                    if not rebalance:
                        return
                    if not rebalanced and 1 in processor.holding() and not processor.flush_due():
                        rebalanced.append(len(producer.sent))
                        await driver.assign(runtime, {0})
                    elif len(rebalanced) == 1 and processor.unpublished() == 0:
                        rebalanced.append(len(producer.sent))
                        await driver.assign(runtime)

                await driver.run(runtime, during=maybe_rebalance)
                for _ in range(50):  # the decay sweep, up to the watermarks
                    if not processor.stale_leads(10_000):
                        break
                    await runtime.sweep_tick(10_000)
                else:
                    raise AssertionError(f"the sweep does not converge: {processor.stale_leads(10_000)}")
                while_away = [json.loads(value) for topic, _, value in producer.sent[slice(*rebalanced)]
                              if topic == topics.scores and value is not None] if len(rebalanced) == 2 else None
                return driver.faults, while_away
        finally:
            await aio.stop()

    try:
        faults, while_away = asyncio.run(go())
        return Outcome(faults, while_away, graph_signature(store, 2**62), {int(k[0]): v for k, v in book.scan("w")},
                       {k[0]: v for k, v in book.scan("s")}, topics.scores, metrics, topics.deadletter)
    finally:
        store.close()
        book.close()
        router_state.close()


def _check(outcome: Outcome, reference: Outcome, broker: str, tiny_world: Path, registry: Path) -> None:
    """``outcome`` ended like the uninterrupted ``reference`` and like the full recompute."""
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.registry import ModelRegistry
    from leadpulse.schemas.tables import read_tables

    assert outcome.signature == reference.signature, "the graph differs from the uninterrupted run's"
    assert outcome.marks == reference.marks
    assert set(outcome.book) == set(reference.book)
    # the last score published for every lead is its book entry: nothing lost on the way
    published = last_scores(asyncio.run(read_all(broker, outcome.scores_topic)))
    assert set(published) == set(outcome.book)
    assert all(abs(published[c]["score"] - e["score"]) <= 1e-9 for c, e in outcome.book.items())
    events, _ = read_tables(tiny_world)
    full = MemoryGraphStore()
    full.apply(events)
    model = ModelRegistry(registry).load("champion")
    want = full_recompute(full, model, {c: outcome.marks[e["partition"]] for c, e in outcome.book.items()})
    diffs = np.array([abs(want[c] - e["score"]) for c, e in outcome.book.items()])
    assert diffs.max() <= 1e-5, f"max |incremental - full| = {diffs.max():.2e}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, broker, published, trained_registry) -> Outcome:
    """The uninterrupted run."""
    return run_worker(tmp_path_factory.mktemp("runtime"), broker, published[0], trained_registry[0], run="ref")


def test_uninterrupted_run_equals_the_full_recompute(reference, broker, tiny_world, trained_registry):
    assert reference.faults == 0
    _check(reference, reference, broker, tiny_world, trained_registry[0])


@pytest.mark.parametrize("step", ["send", "flush"])
def test_a_failure_after_apply_before_publish_replays_the_window(step, tmp_path, broker, published, reference,
                                                                tiny_world, trained_registry):
    # the batches were applied to the graph store; their scores never reached the broker
    out = run_worker(tmp_path, broker, published[0], trained_registry[0], run=f"pub{step}",
                     producer_fault={"fail_at": step, "topic": published[0]["leads.scores"] + f".pub{step}",
                                     "after": 3})
    assert out.faults == 1
    _check(out, reference, broker, tiny_world, trained_registry[0])


def test_a_failure_between_flush_and_commit_publishes_again_and_loses_nothing(
        tmp_path, broker, published, reference, tiny_world, trained_registry):
    out = run_worker(tmp_path, broker, published[0], trained_registry[0], run="commit", commit_fault_after=3)
    assert out.faults == 1
    _check(out, reference, broker, tiny_world, trained_registry[0])


def test_a_failure_forwarding_to_the_account_topic_replays_the_input(tmp_path, broker, published, reference,
                                                                    tiny_world, trained_registry):
    out = run_worker(tmp_path, broker, published[0], trained_registry[0], run="fwd",
                     producer_fault={"fail_at": "flush", "topic": published[0]["crm.companies"] + ".fwd.accounts",
                                     "after": 2})
    assert out.faults == 1
    _check(out, reference, broker, tiny_world, trained_registry[0])


def test_a_rebalance_while_a_window_is_held_replays_it(tmp_path, broker, published, reference, tiny_world,
                                                       trained_registry):
    # coalescing holds windows: the records were produced well before they are consumed
    time.sleep(2.5)
    out = run_worker(tmp_path, broker, published[0], trained_registry[0], run="rebal", rebalance=True,
                     coalesce=1.0)
    assert out.published_while_away is not None, "no window held leads of partition 1"
    # what was pending for the partition handed away was dropped, not published by a non-owner:
    # no score published meanwhile names an account of partition 1 (a lead may have been
    # partition 0's then and moved to an account of partition 1 later: a job change)
    assert not [s for s in out.published_while_away if account_partition(s["company_id"]) == 1]
    _check(out, reference, broker, tiny_world, trained_registry[0])
