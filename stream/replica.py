"""Replication reader: every worker reads what leads of other accounts can see.

A lead's 2-hop neighbourhood reaches its company's industry peers and similar companies,
whose attributes and orders (by their contacts) feed the peer's features, and the
opportunities a colleague who moved in from another account worked on. Those accounts may
belong to another worker, so each worker also reads *every* partition of the account topic,
outside the consumer group, and applies the companies, contacts, opportunities and orders it
finds (under their own store partition; activities stay with the owner and follow a person who
changes jobs: ``stream.carry``). That is what makes N workers score exactly like one
(docs/architecture.md#invariant-4).

Its batches go through the same step as the agent's (apply, then publish the pending set if
it is due), so behind the input they join the agent's coalescing window. The reader's
positions live in the score book under ``<account topic>#replica`` and are committed with the
scores they caused, like the agent's: after a crash, or when the pending set is discarded
(``AccountProcessor.discards``), it re-reads from there, and the re-read events, duplicates in
the graph store, still rescore their leads. It passes over the partitions this worker's own
agent consumes (paused, its position kept); when one is handed away it goes back to the
position the agent had reached there.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Union

from aiokafka import AIOKafkaConsumer, TopicPartition

from leadpulse.stream.accounts import REPLICA_SUFFIX, AccountProcessor
from leadpulse.stream.connection import KafkaConnection, aiokafka_kwargs
from leadpulse.stream.ingest import RawRecord

logger = logging.getLogger(__name__)


async def replicate(bootstrap: Union[str, KafkaConnection], topic: str, processor: AccountProcessor,
                    take: Callable[[list[RawRecord], int], Awaitable[None]],
                    batch_size: int, batch_seconds: float, fetch_max_wait_ms: int) -> None:
    """Follow every partition of ``topic`` forever (run it as a task; cancel to stop).

    ``take(records, partition)`` applies a batch with ``replica=True`` and publishes the
    pending set when it is due, as the account agent does with its own batches.
    """
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(bootstrap), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=fetch_max_wait_ms)
    await consumer.start()
    try:
        partitions = None
        while not partitions:  # the account topic appears when the first worker declares it
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await asyncio.sleep(0.5)
                await consumer._client.force_metadata_update()  # aiokafka has no public refresh
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        paused: set[int] = set()
        discards = None
        logger.info("replicating companies, contacts, opportunities and orders of %d account partitions", len(tps))
        while True:
            if discards != processor.discards:
                # At the start, and whenever the pending set was discarded (a failure or a
                # rebalance) with batches of this reader in it: their leads were never scored,
                # so read on from the positions committed with scores (duplicates rescore).
                discards = processor.discards
                stored = processor.published_positions()
                for tp in tps:
                    if tp.partition not in paused:
                        consumer.seek(tp, _resume_at(stored, topic, tp.partition))
            owned = _owned(processor)
            for p in sorted(owned - paused):
                # this worker's own agent applies and rescores it: fetching it here too would
                # only double the work (the position stays put, so a restart re-reads)
                consumer.pause(TopicPartition(topic, p))
                paused.add(p)
            for p in sorted(paused - owned):
                # handed to another worker: read on from where the agent left it
                tp = TopicPartition(topic, p)
                consumer.seek(tp, _resume_at(processor.published_positions(), topic, p))
                consumer.resume(tp)
                paused.discard(p)
            got = await consumer.getmany(timeout_ms=int(batch_seconds * 1000), max_records=batch_size)
            for tp, messages in sorted(got.items()):
                if tp.partition in paused or discards != processor.discards:
                    continue  # fetched just before the pause, or before the seek back
                records = [RawRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp / 1000)
                           for m in messages]
                try:
                    await take(records, tp.partition)
                except Exception:
                    logger.exception("replicating account partition %d failed; re-reading it", tp.partition)
                    await asyncio.sleep(batch_seconds)
    finally:
        await consumer.stop()


def _resume_at(stored: dict[tuple[str, int], int], topic: str, partition: int) -> int:
    # What this worker's agent published of a partition it once owned was applied and scored
    # here too: the reader need not read it again, nor what an earlier read published.
    return max(stored.get((topic + REPLICA_SUFFIX, partition), 0), stored.get((topic, partition), 0))


def _owned(processor: AccountProcessor) -> set[int]:
    # None = no assignment yet: nothing is known to be applied by this worker's agent
    return processor.local or set()
