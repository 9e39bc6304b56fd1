"""The topics as they must be: `leadpulse topics create | check`, and the worker's refusal.

The decision (what is wrong) is tested as a pure function of described topics; the broker path
runs against the real embedded broker. Tansu describes the configs a topic was created with and
nothing else (docs/kafka-notes.md#trap-11), so a finite retention is set explicitly at creation
where a test needs one, and a topic created without configs stands for "unknown".
"""
from __future__ import annotations

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest

import leadpulse.stream.topics_admin as topics_admin
from leadpulse.schemas.topics import ALL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS
from leadpulse.stream.config import TOPIC_FIELDS, Settings
from leadpulse.stream.connection import KafkaConnection
from leadpulse.stream.topics_admin import (
    COMPACTED,
    UNLIMITED_RETENTION,
    TopicLayout,
    TopicState,
    check_topics,
    create_topics,
    ensure_topics,
    topic_states,
    verify_topics,
)
from tests.stream.conftest import WorkerRun

ROOT = Path(__file__).resolve().parents[2]

LAYOUT = TopicLayout(inputs=("crm.companies", "crm.contacts"), account="leadpulse.accounts",
                     scores="leads.scores", outputs=("leads.alerts",), partitions=2)


def _good(**changes: TopicState) -> dict[str, TopicState]:
    state = {n: TopicState(2, dict(UNLIMITED_RETENTION)) for n in LAYOUT.co_partitioned}
    state["leads.scores"] = TopicState(2, dict(COMPACTED))
    state["leads.alerts"] = TopicState(2, {"retention.ms": "604800000"})
    state.update({k.replace("_", "."): v for k, v in changes.items()})
    return state


def _kinds(state: dict[str, TopicState]) -> list[str]:
    return [p.kind for p in check_topics(LAYOUT, state)]


# ------------------------------------------------------------------ the decision (pure)
def test_doctests() -> None:
    assert doctest.testmod(topics_admin).failed == 0


def test_topics_as_created_pass() -> None:
    assert check_topics(LAYOUT, _good()) == []
    # finite retention on an output is the operator's choice, not a problem
    assert check_topics(LAYOUT, _good(leads_alerts=TopicState(2, {"retention.ms": "1000"}))) == []


def test_layout_from_settings_uses_the_configured_names_and_counts() -> None:
    s = Settings.from_env({"LEADPULSE_TOPIC_ORDERS": "o", "LEADPULSE_TOPIC_SCORES": "s", "LEADPULSE_PARTITIONS": "6",
                           "LEADPULSE_REPLICATION": "3", "LEADPULSE_TOPIC_ACCOUNTS": "acc"})
    layout = TopicLayout.from_settings(s, prefix="p.")
    assert layout.inputs[-1] == "p.o" and layout.account == "p.acc" and layout.scores == "p.s"
    assert "p.s" not in layout.outputs and len(layout.names) == len(ALL_TOPICS) + 1
    assert (layout.partitions, layout.replication) == (6, 3)
    assert layout.configs("p.o") == layout.configs("p.acc") == {"retention.ms": "-1", "retention.bytes": "-1"}
    assert layout.configs("p.s") == {"cleanup.policy": "compact"} and layout.configs("p.crm.deadletter") == {}


def test_missing_topics_are_an_error() -> None:
    state = _good()
    del state["leads.scores"], state["crm.contacts"]
    [problem] = check_topics(LAYOUT, state)
    assert problem.kind == "missing" and problem.is_error and set(problem.topics) == {"leads.scores", "crm.contacts"}
    assert "leadpulse topics create" in problem.message


def test_co_partitioned_topics_must_share_one_count() -> None:
    [problem] = check_topics(LAYOUT, _good(leadpulse_accounts=TopicState(3, dict(UNLIMITED_RETENTION))))
    assert problem.kind == "partition-mismatch" and problem.is_error and problem.unsafe
    assert "leadpulse.accounts=3" in problem.message and "crm.companies=2" in problem.message
    # outputs are not co-partitioned
    assert check_topics(LAYOUT, _good(leads_alerts=TopicState(7, {}))) == []


def test_one_count_other_than_the_configured_one_is_a_warning() -> None:
    state = {n: TopicState(5, s.configs) for n, s in _good().items()}
    [problem] = check_topics(LAYOUT, state)
    assert problem.kind == "partition-count" and not problem.is_error and not problem.unsafe
    assert "LEADPULSE_PARTITIONS=5" in problem.message


@pytest.mark.parametrize("configs", [
    {"retention.ms": "604800000", "retention.bytes": "-1"},
    {"retention.ms": "-1", "retention.bytes": "1073741824"},
    {"retention.ms": "forever", "retention.bytes": "-1"},
])
def test_finite_retention_of_an_input_or_the_account_topic_is_unsafe(configs: dict) -> None:
    for name in ("crm.contacts", "leadpulse.accounts"):
        [problem] = check_topics(LAYOUT, _good(**{name.replace(".", "_"): TopicState(2, configs)}))
        assert problem.kind == "finite-retention" and problem.unsafe and problem.topics == (name,)
        assert "retention.ms=-1" in problem.message  # says what to set


def test_a_compacted_input_is_unsafe() -> None:
    configs = {**UNLIMITED_RETENTION, "cleanup.policy": "compact,delete"}
    assert _kinds(_good(crm_companies=TopicState(2, configs))) == ["compacted-input"]
    assert check_topics(LAYOUT, _good(crm_companies=TopicState(2, {**UNLIMITED_RETENTION, "cleanup.policy": "delete"}))) == []


def test_scores_must_be_compacted_but_that_does_not_stop_the_worker() -> None:
    [problem] = check_topics(LAYOUT, _good(leads_scores=TopicState(2, {"cleanup.policy": "delete"})))
    assert problem.kind == "not-compacted" and problem.is_error and not problem.unsafe
    assert check_topics(LAYOUT, _good(leads_scores=TopicState(2, {"cleanup.policy": "compact,delete"}))) == []
    # described configs without cleanup.policy: created without it (Kafka always describes it)
    assert _kinds(_good(leads_scores=TopicState(2, {"retention.ms": "5"}))) == ["not-compacted"]


def test_configs_the_broker_does_not_describe_are_a_warning_not_a_failure() -> None:
    """What Tansu answers for a topic created without configs: nothing at all."""
    state = _good(crm_contacts=TopicState(2, {}), leads_scores=TopicState(2, {}),
                  crm_companies=TopicState(2, {"retention.ms": "-1"}))
    [problem] = check_topics(LAYOUT, state)
    assert problem.kind == "unknown-config" and not problem.is_error and not problem.unsafe
    assert set(problem.topics) == {"crm.contacts", "leads.scores", "crm.companies"}
    assert "crm.companies (retention.bytes)" in problem.message


# ------------------------------------------------------------------ the real broker
def _env(broker: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {"KAFKA_BOOTSTRAP": broker, "LEADPULSE_PARTITIONS": "2",
           "LEADPULSE_TOPIC_ACCOUNTS": prefix + "leadpulse.accounts"}
    for default, field_name in TOPIC_FIELDS.items():
        env["LEADPULSE_" + field_name.upper()] = prefix + default
    return {**env, **extra}


def _layout(prefix: str) -> TopicLayout:
    return TopicLayout.from_settings(Settings.from_env({"LEADPULSE_PARTITIONS": "2"}), prefix)


def leadpulse(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leadpulse.stream.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **env})


def test_create_then_check_passes(broker: str, topic_prefix: str) -> None:
    env = _env(broker, topic_prefix)
    check = leadpulse("topics", "check", env=env)
    assert check.returncode == 1 and "missing topics" in check.stdout, check.stdout + check.stderr

    out = leadpulse("topics", "create", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "created 11 topics" in out.stdout and "topics create: all fine" in out.stdout
    check = leadpulse("topics", "check", env=env)
    assert check.returncode == 0 and "topics check: all fine" in check.stdout, check.stdout + check.stderr
    again = leadpulse("topics", "create", env=env)
    assert again.returncode == 0 and "created 0 topics" in again.stdout

    # what Tansu describes is what was asked for at creation (docs/kafka-notes.md#trap-11)
    states = topic_states(KafkaConnection(broker), _layout(topic_prefix).names)
    assert states[topic_prefix + "crm.activities"] == TopicState(2, {"retention.ms": "-1", "retention.bytes": "-1"})
    assert states[topic_prefix + "leadpulse.accounts"].configs == dict(UNLIMITED_RETENTION)
    assert states[topic_prefix + "leads.scores"].configs == {"cleanup.policy": "compact"}
    assert states[topic_prefix + "crm.deadletter"] == TopicState(2, {})


def test_check_reports_a_partition_mismatch(broker: str, topic_prefix: str) -> None:
    ensure_topics(broker, [topic_prefix + "crm.orders"], partitions=3,
                  configs={topic_prefix + "crm.orders": UNLIMITED_RETENTION})
    env = _env(broker, topic_prefix)
    out = leadpulse("topics", "create", env=env)
    assert out.returncode == 1, out.stdout + out.stderr  # created the rest, and says what is wrong
    check = leadpulse("topics", "check", env=env)
    assert check.returncode == 1
    assert "co-partitioned topics differ in partition count" in check.stdout
    assert f"{topic_prefix}crm.orders=3" in check.stdout and f"{topic_prefix}crm.contacts=2" in check.stdout


def test_check_reports_finite_retention_the_broker_describes(broker: str, topic_prefix: str) -> None:
    layout = _layout(topic_prefix)
    activities, scores = topic_prefix + "crm.activities", topic_prefix + "leads.scores"
    ensure_topics(broker, [activities, scores], partitions=2,
                  configs={activities: {"retention.ms": "3600000", "retention.bytes": "-1"},
                           scores: {"cleanup.policy": "delete"}})
    create_topics(broker, layout)
    problems = verify_topics(broker, layout)
    assert sorted((p.kind, p.topics) for p in problems) == [
        ("finite-retention", (activities,)), ("not-compacted", (scores,))]
    check = leadpulse("topics", "check", env=_env(broker, topic_prefix))
    assert check.returncode == 1 and f"{activities}: retention.ms=3600000 is finite" in check.stdout


def test_a_topic_created_without_configs_is_unknown_on_tansu_not_wrong(broker: str, topic_prefix: str) -> None:
    contacts = topic_prefix + "crm.contacts"
    ensure_topics(broker, [contacts], partitions=2)  # broker defaults: Tansu describes nothing
    check = leadpulse("topics", "create", env=_env(broker, topic_prefix))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "warning: retention or compaction unknown" in check.stdout and contacts in check.stdout
    assert "(1 warning)" in check.stdout


def test_publish_creates_missing_input_topics_as_topics_create_does(broker: str, topic_prefix: str,
                                                                    tmp_path: Path) -> None:
    from leadpulse.stream.publish import publish

    (tmp_path / "activities.csv").write_text("activity_id,contact_id,type,timestamp\n"
                                             "a1,c1,page_view,2026-01-01T00:00:00Z\n")
    topics = {s.name: topic_prefix + s.name for s in INPUT_TOPICS + OUTPUT_TOPICS}
    publish(tmp_path, broker, progress=False, topics=topics, partitions=3)
    states = topic_states(broker, [topics[s.name] for s in INPUT_TOPICS])
    assert len(states) == len(INPUT_TOPICS)
    assert all(s == TopicState(3, dict(UNLIMITED_RETENTION)) for s in states.values()), states


# ------------------------------------------------------------------ the worker
def test_worker_refuses_unsafe_topics_unless_told_to(broker: str, tmp_path: Path) -> None:
    from leadpulse.stream.broker import free_port

    run = WorkerRun(broker, tmp_path / "w", tmp_path / "models", "u" + os.urandom(4).hex() + ".", free_port())
    orders = run.prefix + "crm.orders"
    ensure_topics(broker, [orders], partitions=3, configs={orders: UNLIMITED_RETENTION})

    refused = subprocess.run([sys.executable, "-m", "leadpulse.stream.cli", "worker"], cwd=ROOT, env=run.env(),
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "refusing to start" in refused.stderr and f"{orders}=3" in refused.stderr
    assert "LEADPULSE_ALLOW_UNSAFE_TOPICS=true" in refused.stderr and "leadpulse topics check" in refused.stderr

    run.extra_env["LEADPULSE_ALLOW_UNSAFE_TOPICS"] = "true"
    try:
        run.start()  # answers /healthz
        assert "starting on unsafe topics" in (run.data_dir / "worker.log").read_text()
    finally:
        run.kill()
