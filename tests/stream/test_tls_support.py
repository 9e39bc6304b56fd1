"""Kafka clients through the TLS test broker (Tansu behind stunnel, see tests/tls_support.py)."""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError

from tests.tls_support import TlsBroker, tls_broker

VALUES = [b"a", b"b", b"c"]


@pytest.fixture(scope="module")
def tb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    with tls_broker(tmp_path_factory.mktemp("tls")) as broker:
        yield broker


def _topic() -> str:
    return f"tls-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie still answers kill(0)
        return fh.read().split(") ")[1][0] != "Z"


async def _aiokafka_round_trip(bootstrap: str, ssl_context, topic: str) -> list[bytes]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, security_protocol="SSL", ssl_context=ssl_context)
    await producer.start()
    try:
        for value in VALUES:
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, security_protocol="SSL",
                                ssl_context=ssl_context, auto_offset_reset="earliest")
    await consumer.start()
    try:
        got: list[bytes] = []
        async with asyncio.timeout(10):
            async for record in consumer:
                got.append(record.value)
                if len(got) == len(VALUES):
                    return got
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


def test_kafka_python_produces_and_consumes_over_tls(tb: TlsBroker) -> None:
    topic = _topic()
    producer = KafkaProducer(bootstrap_servers=tb.bootstrap, **tb.kafka_python_ssl())
    try:
        for value in VALUES:
            producer.send(topic, value, partition=0)
        producer.flush(timeout=10)
    finally:
        producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=tb.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000, **tb.kafka_python_ssl())
    try:
        got = [record.value for record in itertools.islice(consumer, len(VALUES))]
    finally:
        consumer.close()
    assert got == VALUES


def test_aiokafka_produces_and_consumes_over_tls(tb: TlsBroker) -> None:
    ctx = create_ssl_context(cafile=str(tb.files.ca_cert))
    assert asyncio.run(_aiokafka_round_trip(tb.bootstrap, ctx, _topic())) == VALUES


def test_kafka_python_without_the_ca_fails_within_its_bootstrap_timeout(
        tb: TlsBroker, caplog: pytest.LogCaptureFixture) -> None:
    # kafka-python 3 bootstraps eagerly in the constructor and only raises once
    # bootstrap_timeout_ms (default 30 s) is spent; the TLS error itself is only logged
    t = time.monotonic()
    with (caplog.at_level(logging.ERROR, logger="kafka"),
          pytest.raises(KafkaTimeoutError, match="Unable to bootstrap")):
        KafkaProducer(bootstrap_servers=tb.bootstrap, security_protocol="SSL", bootstrap_timeout_ms=1500)
    assert time.monotonic() - t < 10
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_aiokafka_without_the_ca_fails_at_once(tb: TlsBroker, caplog: pytest.LogCaptureFixture) -> None:
    async def start() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=tb.bootstrap, security_protocol="SSL",
                                    ssl_context=create_ssl_context())  # system trust only
        try:
            await producer.start()
        finally:
            await producer.stop()

    t = time.monotonic()
    with (caplog.at_level(logging.ERROR, logger="aiokafka"),
          pytest.raises(KafkaConnectionError, match="Unable to bootstrap")):
        asyncio.run(start())
    assert time.monotonic() - t < 10
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_a_plaintext_client_gets_nowhere_on_the_tls_port(tb: TlsBroker) -> None:
    async def start() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=tb.bootstrap)
        try:
            await producer.start()
        finally:
            await producer.stop()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(start())


def test_mutual_tls_needs_the_client_certificate(tmp_path: Path) -> None:
    async def start(ctx) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, security_protocol="SSL", ssl_context=ctx)
        try:
            await producer.start()
        finally:
            await producer.stop()

    with tls_broker(tmp_path, mutual=True) as broker:
        assert asyncio.run(_aiokafka_round_trip(broker.bootstrap, broker.ssl_context(), _topic())) == VALUES
        with pytest.raises(KafkaConnectionError):
            asyncio.run(start(broker.ssl_context(with_client_cert=False)))
        pids = (broker.tansu_pid, broker.stunnel_pid)
    assert not any(_alive(pid) for pid in pids)  # both killed and reaped on exit
