"""The embedded broker and topic administration, against real processes (no mocks)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from leadpulse.stream.broker import BrokerError, EmbeddedBroker, broker_from_env
from leadpulse.stream.config import Settings
from leadpulse.stream.topics_admin import admin_client, ensure_topics, topic_partitions, wait_until_ready


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purpose
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ")[1][0] != "Z"


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_embedded_broker_starts_answers_and_stops() -> None:
    broker = EmbeddedBroker()
    with broker:
        pid = broker.pid
        assert pid is not None and _alive(pid)
        assert broker.bootstrap.startswith("127.0.0.1:")
        client = admin_client(broker.bootstrap)
        try:
            assert client.list_topics() == []  # a fresh in-memory broker
        finally:
            client.close()
    assert not _alive(pid)  # reaped by stop(), not merely signalled
    assert broker.pid is None and not broker.is_running()
    with pytest.raises(BrokerError):
        _ = broker.bootstrap
    broker.stop()  # idempotent


def test_broker_dies_with_its_parent() -> None:
    """SIGKILL of the owning Python process must not leak the broker (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux-only")
    code = textwrap.dedent("""
        import sys, time
        from leadpulse.stream.broker import EmbeddedBroker
        b = EmbeddedBroker().start()
        print(b.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        broker_pid = int(parent.stdout.readline())
        assert _alive(broker_pid)
    finally:
        parent.kill()
        parent.wait()
    assert _wait_dead(broker_pid), f"broker {broker_pid} outlived its parent"


def test_start_failure_is_reported_quickly(tmp_path) -> None:
    fake = tmp_path / "fake-broker"
    fake.write_text("#!/bin/sh\necho 'cannot bind' >&2\nexit 3\n")
    fake.chmod(0o755)
    t = time.monotonic()
    with pytest.raises(BrokerError, match="cannot bind"):
        EmbeddedBroker(bin=str(fake), startup_timeout=5).start()
    assert time.monotonic() - t < 5  # noticed the exit, did not wait for the timeout


def test_wait_until_ready_times_out_on_a_closed_port() -> None:
    from leadpulse.stream.broker import free_port
    from leadpulse.stream.topics_admin import BrokerUnavailable

    with pytest.raises(BrokerUnavailable):
        wait_until_ready(f"127.0.0.1:{free_port()}", timeout=0.5)


def test_ensure_topics_creates_with_partition_count_idempotently(broker: str, topic_prefix: str) -> None:
    a, b, c = (topic_prefix + n for n in "abc")
    assert ensure_topics(broker, [a, b], partitions=3) == {a: 3, b: 3}
    assert topic_partitions(broker, [a, b]) == {a: 3, b: 3}
    # again, plus a new one with another count: existing topics are left as they are
    assert ensure_topics(broker, [a, b, c, c], partitions=2) == {a: 3, b: 3, c: 2}


def test_ensure_topics_creates_every_contract_topic(broker: str, topic_map: dict[str, str]) -> None:
    counts = ensure_topics(broker, topic_map.values(), partitions=1)
    assert set(counts) == set(topic_map.values()) and set(counts.values()) == {1}
    assert len(counts) == 10  # 5 inputs, 4 outputs, crm.erasures


def test_broker_from_env_prefers_kafka_bootstrap(broker: str) -> None:
    with broker_from_env(Settings(kafka_bootstrap=broker)) as bootstrap:
        assert bootstrap == broker


def test_broker_from_env_starts_and_stops_an_embedded_broker() -> None:
    with broker_from_env(Settings(kafka_bootstrap=None), embedded=True) as bootstrap:
        wait_until_ready(bootstrap, timeout=5)
        port = int(bootstrap.rsplit(":", 1)[1])
    from leadpulse.stream.topics_admin import _port_open

    assert not _port_open(f"127.0.0.1:{port}")


def test_broker_from_env_starts_no_embedded_broker_unless_asked() -> None:
    from leadpulse.stream.broker import NoBrokerConfigured

    with pytest.raises(NoBrokerConfigured, match="KAFKA_BOOTSTRAP"):
        with broker_from_env(Settings(kafka_bootstrap=None)):
            pytest.fail("no broker may be yielded")


def test_admin_client_takes_a_connection(broker: str, topic_prefix: str) -> None:
    from leadpulse.stream.connection import KafkaConnection

    conn = KafkaConnection(broker, request_timeout_s=5)
    name = topic_prefix + "conn"
    assert ensure_topics(conn, [name], partitions=2) == {name: 2}
    assert topic_partitions(conn, [name]) == {name: 2}
    client = admin_client(conn)
    try:
        assert name in client.list_topics()
    finally:
        client.close()
