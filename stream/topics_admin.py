"""Topic administration: wait for a broker to answer, create our topics idempotently.

Works against Apache Kafka and the embedded Tansu broker alike (kafka-python's admin client).
"""
from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import Callable, Iterable, Optional

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

logger = logging.getLogger(__name__)

__all__ = ["BrokerUnavailable", "TopicsError", "admin_client", "ensure_topics", "topic_partitions", "wait_until_ready"]

_TOPIC_EXISTS = TopicAlreadyExistsError.errno


class TopicsError(RuntimeError):
    """A topic could not be created or described."""


class BrokerUnavailable(ConnectionError):
    """The broker did not answer a Kafka metadata request in time (or its process died)."""


def admin_client(bootstrap: str, request_timeout_ms: int = 10_000) -> KafkaAdminClient:
    """A kafka-python admin client (close it when done)."""
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms,
                            client_id="leadpulse-admin")


def wait_until_ready(bootstrap: str, timeout: float = 15.0,
                     alive: Optional[Callable[[], bool]] = None) -> None:
    """Block until ``bootstrap`` answers a Kafka metadata request.

    Args:
        bootstrap: ``host:port`` of the broker.
        timeout: seconds before giving up (default 15).
        alive: optional check called between attempts; when it returns False (the broker
            process died) waiting stops at once.

    Raises:
        BrokerUnavailable: no answer within ``timeout``, or ``alive()`` turned False.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise BrokerUnavailable(f"broker at {bootstrap} exited during startup")
        if not _port_open(bootstrap):  # cheap check first: keeps the Kafka client from logging errors
            time.sleep(0.02)
            continue
        try:
            client = admin_client(bootstrap, request_timeout_ms=2_000)
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.05)
            continue
        try:
            client.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.05)
        finally:
            with contextlib.suppress(Exception):
                client.close()
    raise BrokerUnavailable(f"broker at {bootstrap} did not answer within {timeout:.0f} s ({last!r})")


def _port_open(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def topic_partitions(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each existing topic among ``names`` (absent topics are left out)."""
    names = list(names)
    client = admin_client(bootstrap)
    try:
        existing = set(client.list_topics())
        wanted = [n for n in names if n in existing]
        if not wanted:
            return {}
        described = client.describe_topics(wanted)
    except KafkaError as exc:
        raise TopicsError(f"cannot describe topics {wanted}: {exc}") from exc
    finally:
        client.close()
    return {t["name"]: len(t["partitions"]) for t in described if not t.get("error_code")}


def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int = 4,
                  replication: int = 1, timeout: float = 15.0) -> dict[str, int]:
    """Create every topic of ``names`` that does not exist yet; leave existing ones alone.

    Idempotent and safe to race: "already exists" is success. An existing topic with another
    partition count is kept as it is (logged as a warning): repartitioning would move keys.

    Args:
        bootstrap: ``host:port[,...]`` of the cluster.
        names: topic names (duplicates are ignored).
        partitions: partition count of created topics (default 4).
        replication: replication factor of created topics (default 1).
        timeout: seconds to wait until every topic is visible in metadata (default 15).

    Returns:
        topic name -> its partition count, for every name.

    Raises:
        TopicsError: creation failed for another reason, or a topic never became visible.
    """
    names = list(dict.fromkeys(names))
    if partitions < 1 or replication < 1:
        raise ValueError("partitions and replication must be >= 1")
    client = admin_client(bootstrap)
    try:
        missing = [n for n in names if n not in set(client.list_topics())]
        if missing:
            result = client.create_topics(
                [NewTopic(n, partitions, replication) for n in missing],
                timeout_ms=int(timeout * 1000), raise_errors=False)
            failed = [(t["name"], t["error_code"], t.get("error_message"))
                      for t in result["topics"] if t["error_code"] not in (0, _TOPIC_EXISTS)]
            if failed:
                raise TopicsError(f"cannot create topics: {failed}")
            logger.info("created topics %s with %d partitions", missing, partitions)
    except KafkaError as exc:
        raise TopicsError(f"cannot create topics {names}: {exc}") from exc
    finally:
        client.close()

    deadline = time.monotonic() + timeout
    while True:
        counts = topic_partitions(bootstrap, names)
        if len(counts) == len(names):
            break
        if time.monotonic() > deadline:
            raise TopicsError(f"topics not visible after {timeout:.0f} s: {sorted(set(names) - set(counts))}")
        time.sleep(0.1)
    for name, count in counts.items():
        if count != partitions:
            logger.warning("topic %s exists with %d partitions (wanted %d); kept as is", name, count, partitions)
    return {n: counts[n] for n in names}
