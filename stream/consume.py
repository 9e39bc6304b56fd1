"""Read topics without a consumer group: for tests, the demo and inspection tools.

Partitions are assigned manually (no group join, so none of Tansu's generation-0 wait, see
docs/kafka-notes.md#trap-2) and read from the beginning. "Done" is never derived from end offsets
(Tansu's ListOffsets(latest) is wrong when producers batch, docs/kafka-notes.md#trap-1):
callers say how many records they expect and how long to wait.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Callable, Iterable, Optional, Union

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from leadpulse.stream.connection import KafkaConnection, aiokafka_kwargs, explain_failure
from leadpulse.stream.topics_admin import topic_partitions

logger = logging.getLogger(__name__)

__all__ = ["ConsumeTimeout", "consume", "consume_async", "tail"]

Target = Union[str, KafkaConnection]


class ConsumeTimeout(TimeoutError):
    """Fewer records than expected arrived in time; ``records`` holds those that did."""

    def __init__(self, message: str, records: list[ConsumerRecord]) -> None:
        super().__init__(message)
        self.records = records


async def tail(bootstrap: Target, topics: Iterable[str], from_beginning: bool = True,
               poll_ms: int = 200, metadata_timeout: float = 10.0) -> AsyncIterator[list[ConsumerRecord]]:
    """Yield batches of records from every partition of ``topics`` (an empty batch on idle polls).

    Args:
        bootstrap: the cluster (a ``KafkaConnection``; a ``host:port[,...]`` is PLAINTEXT).
        topics: topic names; each must exist (waits up to ``metadata_timeout`` for it).
        from_beginning: start at the earliest offset (default) or at the end (on Tansu "the
            end" may replay the tail of the last batch, see docs/kafka-notes.md#trap-1).
        poll_ms: longest wait of one poll (default 200 ms).

    Raises:
        BrokerUnavailable: the consumer could not bootstrap from the cluster.
        ConsumeTimeout: a topic did not appear within ``metadata_timeout``.
    """
    topics = list(topics)
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(bootstrap), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                client_id="leadpulse-tail")
    try:
        await consumer.start()
    except Exception as exc:  # aiokafka reports some SASL refusals as a bare KeyError
        await consumer.stop()
        raise await asyncio.to_thread(explain_failure, bootstrap, exc) from exc
    try:
        deadline = time.monotonic() + metadata_timeout
        while True:
            counts = await asyncio.to_thread(topic_partitions, bootstrap, topics)
            if len(counts) == len(set(topics)):
                break
            if time.monotonic() > deadline:
                raise ConsumeTimeout(f"topics not found: {sorted(set(topics) - set(counts))}", [])
            await asyncio.sleep(0.2)
        assignment = [TopicPartition(t, p) for t in dict.fromkeys(topics) for p in range(counts[t])]
        consumer.assign(assignment)
        if from_beginning:
            await consumer.seek_to_beginning(*assignment)
        else:
            await consumer.seek_to_end(*assignment)
        while True:
            got = await consumer.getmany(timeout_ms=poll_ms)
            yield [r for tp in sorted(got, key=lambda tp: (tp.topic, tp.partition)) for r in got[tp]]
    finally:
        await consumer.stop()


async def consume_async(bootstrap: Target, topics: Iterable[str], expected: int, timeout: float = 30.0,
                        on_batch: Optional[Callable[[list[ConsumerRecord]], None]] = None) -> list[ConsumerRecord]:
    """Read ``topics`` from the beginning until ``expected`` records arrived.

    Raises:
        ConsumeTimeout: fewer than ``expected`` within ``timeout`` seconds.
    """
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    gen = tail(bootstrap, topics)
    try:
        async for batch in gen:
            records.extend(batch)
            if on_batch is not None and batch:
                on_batch(batch)
            if len(records) >= expected:
                return records
            if time.monotonic() > deadline:
                raise ConsumeTimeout(f"got {len(records)} of {expected} records in {timeout:.0f} s", records)
    finally:
        await gen.aclose()
    return records  # pragma: no cover - tail never ends


def consume(bootstrap: Target, topics: Iterable[str], expected: int, timeout: float = 30.0) -> list[ConsumerRecord]:
    """Blocking form of :func:`consume_async`."""
    return asyncio.run(consume_async(bootstrap, topics, expected, timeout))
