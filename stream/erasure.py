"""Right to erasure: ``crm.erasures`` (key contact_id) asks every worker to remove a person.

Every worker reads every partition of the topic, outside the consumer group, because a person's
traces are spread: the router of the input partition knows their company and may hold their
events, the account partition's graph store and score book hold their versions and score, and
every worker holds a replica of their contact versions and orders (docs/operating.md, "Erasing
a person"). ``ScoringRuntime.erase`` removes them from all of it; this module holds what the
stages share and the reader.

After an erasure, events of the person dated up to its time are dropped wherever they arrive
(they are still in the input topics until those are compacted or re-keyed): the stages keep the
erasure under ``e\\x00<sha-256 of the id>``, so what stays behind names no one.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Awaitable, Callable, Optional, Union

from aiokafka import AIOKafkaConsumer, TopicPartition

from leadpulse.schemas.events import Delete, Erasure
from leadpulse.schemas.partial import Partial
from leadpulse.stream.connection import KafkaConnection, aiokafka_kwargs
from leadpulse.stream.ingest import Accepted, RawRecord, Snapshot

logger = logging.getLogger(__name__)


def parse_erasure(raw: Optional[bytes]) -> Union[Erasure, str]:
    """An erasure request, or why it is not one."""
    if raw is None:
        return "shape: empty erasure request (a tombstone); send {contact_id, requested_at}"
    try:
        return Erasure.model_validate_json(raw)
    except ValueError as exc:
        return f"erasure: {exc}"[:1000]


def erased_key(contact_id: str) -> str:
    """The state key part standing for a person: a hash, so the key itself names no one."""
    return hashlib.sha256(contact_id.encode()).hexdigest()


def person_of(item: Accepted) -> Optional[str]:
    """The contact an item is about, if any."""
    event = item.event if isinstance(item, Snapshot) else item
    if isinstance(event, Partial):
        return event.entity_id if event.kind == "contact" else event.fields.get("contact_id")
    if isinstance(event, Delete):
        return event.entity_id if event.entity == "contact" else (event.model_extra or {}).get("contact_id")
    return getattr(event, "contact_id", None)


async def follow_erasures(bootstrap: Union[str, KafkaConnection], topic: str, start: Callable[[], dict],
                          take: Callable[[RawRecord], Awaitable[None]], poll_seconds: float = 1.0) -> None:
    """Read every partition of ``topic`` forever from the positions ``start()`` returns
    ((topic, partition) -> next offset, stored with the state), handing each record to ``take``,
    which erases and stores the next position with the erasure (run it as a task)."""
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(bootstrap), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = None
        while not partitions:  # created by `leadpulse topics create` or the first `leadpulse erase`
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await asyncio.sleep(poll_seconds)
                await consumer._client.force_metadata_update()  # aiokafka has no public refresh
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        stored = start()
        for tp in tps:
            consumer.seek(tp, stored.get((topic, tp.partition), 0))
        while True:
            got = await consumer.getmany(timeout_ms=int(poll_seconds * 1000), max_records=100)
            for tp, messages in sorted(got.items()):
                for m in messages:
                    record = RawRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp / 1000)
                    try:
                        await take(record)
                    except Exception:
                        logger.exception("erasure at %s[%d]@%d failed; retrying from it", topic, m.partition,
                                         m.offset)
                        consumer.seek(tp, m.offset)
                        await asyncio.sleep(poll_seconds)
                        break
    finally:
        await consumer.stop()
