"""Publish a directory of CSV tables (docs/tables.md) to the input topics.

Every valid row becomes one JSON message on its entity's input topic, keyed by the topic's key
field (``schemas.tables.event_key``), in event-time order. Bad rows are reported in the
:class:`PublishReport`, never raised.

Two modes:

* **as fast as possible** (default): records are packed into per-partition batches with
  aiokafka's ``create_batch``/``send_batch`` and the partition is chosen by aiokafka's
  ``DefaultPartitioner`` (murmur2 of the key, like the Java client), so keys land where any
  Kafka producer would put them; several times the rate of one ``send()`` per message
  (docs/kafka-notes.md#publish-batching).
* **paced**: ``rate`` events per second, or ``speedup`` x event time (``speedup=3600`` plays an
  hour of CRM history per second). One ``send()`` per event at its due time.

Message timestamps are left to the producer (send time), not the event time: a broker with
time-based retention would otherwise delete historical events at once.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Mapping, Optional, Sequence, Union

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from tqdm import tqdm

from leadpulse.schemas.events import InputEvent
from leadpulse.schemas.tables import RowError, event_json, event_key, read_tables
from leadpulse.schemas.topics import INPUT_TOPICS, input_spec_for_topic
from leadpulse.stream.connection import (
    KafkaConnection,
    aiokafka_kwargs,
    check_reachable,
    explain_failure,
)
from leadpulse.stream.topics_admin import ensure_input_topics

logger = logging.getLogger(__name__)

__all__ = ["PublishError", "PublishReport", "Message", "new_producer", "publish", "publish_async",
           "publish_messages", "start_producer", "to_messages"]

#: producer settings (``acks="all"`` is what production Kafka needs; it costs nothing on Tansu); the
#: request timeout is the connection's (``LEADPULSE_KAFKA_TIMEOUT_SECONDS``)
PRODUCER_DEFAULTS: dict = {"acks": "all", "linger_ms": 5, "max_batch_size": 256 * 1024}

Target = Union[str, KafkaConnection]
_CHUNK = 5_000  # messages between progress updates / delivery checks


class PublishError(RuntimeError):
    """The broker refused or failed to acknowledge messages."""


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes
    value: bytes
    event_time: float  # POSIX seconds, for speedup pacing


@dataclass
class PublishReport:
    """What :func:`publish` did.

    Attributes:
        counts: topic name -> messages sent (every input topic, zeros included).
        errors: rows of the tables that failed validation (not sent).
        elapsed_s: seconds spent sending (reading the tables excluded).
        read_s: seconds spent reading and validating the tables.
    """
    counts: dict[str, int]
    errors: list[RowError] = field(default_factory=list)
    elapsed_s: float = 0.0
    read_s: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        """Messages per second while sending."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        per_topic = ", ".join(f"{t}={n}" for t, n in self.counts.items())
        return (f"sent {self.sent} events in {self.elapsed_s:.2f} s ({self.rate:,.0f} msg/s; "
                f"tables read in {self.read_s:.2f} s); {len(self.errors)} bad rows; {per_topic}")


def to_messages(events: Sequence[InputEvent], topics: Optional[Mapping[str, str]] = None) -> list[Message]:
    """Wire messages of ``events``; ``topics`` maps default topic names to configured ones."""
    topics = topics or {}
    out = []
    for ev in events:
        default = input_spec_for_topic(ev.kind).name
        out.append(Message(topics.get(default, default), event_key(ev), event_json(ev),
                           ev.event_time.timestamp()))
    return out


def new_producer(target: Target, client_id: str = "leadpulse-publish",
                 config: Optional[Mapping] = None) -> AIOKafkaProducer:
    """An aiokafka producer on the connection (TLS, SASL, timeout) with :data:`PRODUCER_DEFAULTS`
    and ``config`` over them (not started)."""
    return AIOKafkaProducer(**{**aiokafka_kwargs(target), "client_id": client_id, **PRODUCER_DEFAULTS,
                               **(config or {})})


async def start_producer(producer: AIOKafkaProducer, target: Target) -> None:
    """Start ``producer``; a cluster it cannot bootstrap from is :class:`BrokerUnavailable`."""
    try:
        await producer.start()
    except Exception as exc:  # aiokafka reports some SASL refusals as a bare KeyError
        await producer.stop()
        raise await asyncio.to_thread(explain_failure, target, exc) from exc


async def publish_messages(messages: Sequence[Message], bootstrap: Target, rate: Optional[float] = None,
                           speedup: Optional[float] = None, progress: bool = True,
                           producer_config: Optional[Mapping] = None,
                           on_progress: Optional[Callable[[int], None]] = None) -> dict[str, int]:
    """Send ``messages`` in order; return topic -> count. Topics must exist.

    Args:
        messages: what to send, in sending order.
        bootstrap: the cluster (a ``KafkaConnection``; a ``host:port[,...]`` is PLAINTEXT).
        rate: events per second (paced), or None.
        speedup: multiple of event time (paced), or None. At most one of rate and speedup.
        progress: show a tqdm bar on stderr (default True).
        producer_config: overrides of :data:`PRODUCER_DEFAULTS`.
        on_progress: called with the number of messages acknowledged so far.

    Raises:
        ValueError: both or a non-positive rate/speedup.
        BrokerUnavailable: the producer could not bootstrap from the cluster.
        PublishError: a message was not acknowledged.
    """
    if rate is not None and speedup is not None:
        raise ValueError("give rate or speedup, not both")
    if (rate is not None and rate <= 0) or (speedup is not None and speedup <= 0):
        raise ValueError("rate and speedup must be > 0")
    counts: dict[str, int] = {}
    for m in messages:
        counts[m.topic] = counts.get(m.topic, 0) + 1
    producer = new_producer(bootstrap, config=producer_config)
    await start_producer(producer, bootstrap)
    bar = tqdm(total=len(messages), unit="ev", unit_scale=True, disable=not progress, desc="publish")
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        bar.update(n)
        if on_progress is not None:
            on_progress(done)

    try:
        if rate is None and speedup is None:
            await _send_batched(producer, messages, advance)
        else:
            await _send_paced(producer, messages, rate, speedup, advance)
    except PublishError:
        raise
    except Exception as exc:  # aiokafka delivery errors
        raise PublishError(f"publishing failed after {done} messages: {exc!r}") from exc
    finally:
        bar.close()
        await producer.stop()
    return counts


async def _send_batched(producer: AIOKafkaProducer, messages: Sequence[Message],
                        advance: Callable[[int], None]) -> None:
    partitioner = DefaultPartitioner()
    parts: dict[str, list[int]] = {}
    for topic in {m.topic for m in messages}:
        found = await producer.partitions_for(topic)
        if not found:
            raise PublishError(f"topic {topic!r} has no partitions (does it exist?)")
        parts[topic] = sorted(found)
    open_batches: dict[tuple[str, int], tuple[object, int]] = {}
    pending: list[tuple[Awaitable, int]] = []

    async def flush(slot: tuple[str, int]) -> None:
        batch, n = open_batches.pop(slot)
        batch.close()  # type: ignore[attr-defined]
        pending.append((await producer.send_batch(batch, slot[0], partition=slot[1]), n))

    async def settle() -> None:
        for fut, n in pending:
            await fut
            advance(n)
        pending.clear()

    since_settle = 0
    for m in messages:
        p = parts[m.topic]
        slot = (m.topic, partitioner(m.key, p, p))
        entry = open_batches.get(slot)
        if entry is None:
            entry = open_batches[slot] = (producer.create_batch(), 0)
        batch, n = entry
        if batch.append(key=m.key, value=m.value, timestamp=None) is None:  # type: ignore[attr-defined]
            await flush(slot)
            batch = producer.create_batch()
            if batch.append(key=m.key, value=m.value, timestamp=None) is None:
                raise PublishError(f"message of {len(m.value)} bytes does not fit in a batch")
            n = 0
        open_batches[slot] = (batch, n + 1)
        since_settle += 1
        if since_settle >= 20 * _CHUNK:  # bound memory and keep the bar moving
            for s in list(open_batches):
                await flush(s)
            await settle()
            since_settle = 0
    for s in list(open_batches):
        await flush(s)
    await settle()


async def _send_paced(producer: AIOKafkaProducer, messages: Sequence[Message], rate: Optional[float],
                      speedup: Optional[float], advance: Callable[[int], None]) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    t0 = messages[0].event_time if messages else 0.0
    pending: list[asyncio.Future] = []
    for i, m in enumerate(messages):
        due = start + (i / rate if rate is not None else (m.event_time - t0) / speedup)  # type: ignore[operator]
        delay = due - loop.time()
        if delay > 0.002:
            if pending:  # nothing else to do: make sure what was sent is acknowledged
                await asyncio.gather(*pending)
                advance(len(pending))
                pending.clear()
                delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        pending.append(await producer.send(m.topic, m.value, key=m.key))
        if len(pending) >= _CHUNK:
            await asyncio.gather(*pending)
            advance(len(pending))
            pending.clear()
    if pending:
        await asyncio.gather(*pending)
        advance(len(pending))


async def publish_async(tables_dir: Path | str, bootstrap: Target, rate: Optional[float] = None,
                        speedup: Optional[float] = None, progress: bool = True, *,
                        topics: Optional[Mapping[str, str]] = None, partitions: Optional[int] = 4,
                        replication: int = 1, producer_config: Optional[Mapping] = None,
                        on_progress: Optional[Callable[[int], None]] = None) -> PublishReport:
    """Async form of :func:`publish` (same arguments)."""
    if rate is not None and speedup is not None:
        raise ValueError("give rate or speedup, not both")
    tables_dir = Path(tables_dir)
    if not tables_dir.is_dir():
        raise FileNotFoundError(f"tables directory {tables_dir} does not exist")
    await asyncio.to_thread(check_reachable, bootstrap)  # before reading tables for minutes
    t = time.perf_counter()
    logger.info("reading tables from %s", tables_dir)
    events, errors = await asyncio.to_thread(read_tables, tables_dir)
    messages = await asyncio.to_thread(to_messages, events, topics)
    read_s = time.perf_counter() - t
    for err in errors[:20]:
        logger.warning("bad row skipped: %s", err)
    if len(errors) > 20:
        logger.warning("... and %d more bad rows", len(errors) - 20)
    names = [(topics or {}).get(s.name, s.name) for s in INPUT_TOPICS]
    if partitions is not None:
        await asyncio.to_thread(ensure_input_topics, bootstrap, names, partitions, replication)
    t = time.perf_counter()
    sent = await publish_messages(messages, bootstrap, rate=rate, speedup=speedup, progress=progress,
                                  producer_config=producer_config, on_progress=on_progress)
    elapsed = time.perf_counter() - t
    report = PublishReport({n: sent.get(n, 0) for n in names}, errors, elapsed, read_s)
    logger.info("%s", report.summary())
    return report


def publish(tables_dir: Path | str, bootstrap: Target, rate: Optional[float] = None,
            speedup: Optional[float] = None, progress: bool = True, *,
            topics: Optional[Mapping[str, str]] = None, partitions: Optional[int] = 4,
            replication: int = 1, producer_config: Optional[Mapping] = None) -> PublishReport:
    """Read ``tables_dir`` and send every valid row to its input topic, in event-time order.

    Args:
        tables_dir: directory of ``companies.csv``, ``contacts.csv``, ... (docs/tables.md).
        bootstrap: the cluster, a ``KafkaConnection`` (``Settings.kafka_connection()``: TLS, SASL,
            timeout) or a ``host:port[,...]`` (PLAINTEXT).
        rate: pace at this many events per second (default None: as fast as possible).
        speedup: pace at this multiple of event time (default None). Not with ``rate``.
        progress: show a tqdm progress bar (default True).
        topics: default topic name -> configured name (default: the default names);
            ``Settings.topic_map()`` fits.
        partitions: create missing input topics with this many partitions (default 4),
            ``replication`` replicas and unlimited retention, as ``leadpulse topics create`` does;
            None = the topics must exist.
        producer_config: aiokafka producer overrides (default :data:`PRODUCER_DEFAULTS`).

    Returns:
        a :class:`PublishReport`: counts per topic, bad rows, timings.

    Raises:
        FileNotFoundError: ``tables_dir`` is not a directory.
        BrokerUnavailable: no broker answered with the connection's settings (the message says why).
        PublishError: the broker did not acknowledge every message.
    """
    return asyncio.run(publish_async(tables_dir, bootstrap, rate, speedup, progress, topics=topics,
                                     partitions=partitions, replication=replication,
                                     producer_config=producer_config))
