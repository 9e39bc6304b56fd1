"""Topic administration: wait for a broker, create leadpulse's topics as they must be, check them.

Works against Apache Kafka and the embedded Tansu broker alike (kafka-python's admin client).
Every function takes a ``KafkaConnection`` (the TLS and SASL settings) or a plain ``host:port``
(PLAINTEXT).

What the topics must be (docs/operating.md, "Topics"), as :class:`TopicLayout` states it:

* the input topics and the account topic are **co-partitioned** (one partition count for all)
  and keep everything (``retention.ms=-1``, ``retention.bytes=-1``, never compacted): a worker
  that lost its data directory rebuilds from offset 0;
* ``leads.scores`` is compacted (``cleanup.policy=compact``, keyed by contact);
* the other outputs get the configured partitions and replication, and the broker's defaults.

:func:`check_topics` judges described topics (a pure function); :func:`verify_topics` describes
and judges. Tansu describes only the configs a topic was created with
(docs/kafka-notes.md#trap-11): what the broker does not describe is reported as unknown, a
warning, never as a failure.

>>> layout = TopicLayout(inputs=("in.a", "in.b"), account="acc", scores="scores", outputs=("alerts",))
>>> state = {n: TopicState(2, dict(UNLIMITED_RETENTION)) for n in ("in.a", "acc")}
>>> state["in.b"] = TopicState(3, {"retention.ms": "604800000", "retention.bytes": "-1"})
>>> state["scores"] = TopicState(2, {"cleanup.policy": "compact"})
>>> [p.kind for p in check_topics(layout, state)]
['missing', 'partition-mismatch', 'finite-retention']
"""
from __future__ import annotations

import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Optional, Union

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError, TopicAlreadyExistsError

from leadpulse.stream.connection import BrokerUnavailable, KafkaConnection, as_connection, kafka_python_kwargs

if TYPE_CHECKING:
    from leadpulse.stream.config import Settings

logger = logging.getLogger(__name__)

__all__ = ["BrokerUnavailable", "COMPACTED", "TopicLayout", "TopicProblem", "TopicState", "TopicsError",
           "UNLIMITED_RETENTION", "admin_client", "check_topics", "create_topics", "ensure_input_topics",
           "ensure_topics", "topic_partitions", "topic_states", "verify_topics", "wait_until_ready"]

_TOPIC_EXISTS = TopicAlreadyExistsError.errno

Target = Union[str, KafkaConnection]

#: configs of the input and account topics: nothing is ever deleted
UNLIMITED_RETENTION: Mapping[str, str] = {"retention.ms": "-1", "retention.bytes": "-1"}
#: config of ``leads.scores``: the newest score of every lead stays
COMPACTED: Mapping[str, str] = {"cleanup.policy": "compact"}


class TopicsError(RuntimeError):
    """A topic could not be created or described."""


def admin_client(target: Target, request_timeout_ms: Optional[int] = None) -> KafkaAdminClient:
    """A kafka-python admin client with the connection's security settings (close it when done).

    Args:
        target: a ``KafkaConnection`` or a ``host:port[,...]`` string (PLAINTEXT).
        request_timeout_ms: default: the connection's ``request_timeout_s``.
    """
    conn = as_connection(target)
    timeout = request_timeout_ms if request_timeout_ms is not None else int(conn.request_timeout_s * 1000)
    # the bootstrap wait too: kafka-python's own default (30 s) would outlast the configured timeout
    return KafkaAdminClient(**kafka_python_kwargs(conn), request_timeout_ms=timeout, bootstrap_timeout_ms=timeout,
                            client_id="leadpulse-admin")


@contextlib.contextmanager
def _admin(target: Target):
    client = admin_client(target)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()


def wait_until_ready(target: Target, timeout: float = 15.0,
                     alive: Optional[Callable[[], bool]] = None) -> None:
    """Block until the broker answers a Kafka metadata request.

    Args:
        target: a ``KafkaConnection`` or ``host:port`` of the broker.
        timeout: seconds before giving up (default 15).
        alive: optional check called between attempts; when it returns False (the broker
            process died) waiting stops at once.

    Raises:
        BrokerUnavailable: no answer within ``timeout``, or ``alive()`` turned False.
    """
    conn = as_connection(target)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise BrokerUnavailable(f"broker at {conn.bootstrap} exited during startup")
        if not _port_open(conn.bootstrap):  # cheap check first: keeps the Kafka client from logging errors
            time.sleep(0.02)
            continue
        try:
            client = admin_client(conn, request_timeout_ms=2_000)
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
    raise BrokerUnavailable(f"broker at {conn.bootstrap} did not answer within {timeout:.0f} s ({last!r})")


def _port_open(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class TopicLayout:
    """The topics of one deployment and what each must be.

    Args:
        inputs: the input topics (co-partitioned, unlimited retention).
        account: the internal account topic (co-partitioned with the inputs, unlimited retention).
        scores: ``leads.scores`` (compacted).
        outputs: the other outputs (alerts, dead letters, model updates): broker defaults.
        erasures: the erasure requests (compacted: the newest request per person is kept for
            good, so a worker rebuilt from the input topics erases again).
        partitions, replication: of every topic created.
    """
    inputs: tuple[str, ...]
    account: str
    scores: str
    outputs: tuple[str, ...] = ()
    erasures: Optional[str] = None
    partitions: int = 4
    replication: int = 1

    @classmethod
    def from_settings(cls, settings: "Settings", prefix: str = "") -> "TopicLayout":
        """The configured topic names, partitions and replication; ``prefix`` goes before every
        name (tests and benchmarks give each deployment its own)."""
        scores = settings.topic("leads.scores")
        return cls(inputs=tuple(prefix + n for n in settings.input_topics),
                   account=prefix + settings.topic_accounts, scores=prefix + scores,
                   outputs=tuple(prefix + n for n in settings.output_topics if n != scores),
                   erasures=prefix + settings.topic("crm.erasures"),
                   partitions=settings.partitions, replication=settings.replication)

    @property
    def co_partitioned(self) -> tuple[str, ...]:
        """The topics that must share one partition count: the inputs and the account topic."""
        return (*self.inputs, self.account)

    @property
    def names(self) -> list[str]:
        """Every topic, inputs first."""
        control = (self.erasures,) if self.erasures else ()
        return list(dict.fromkeys((*self.co_partitioned, self.scores, *self.outputs, *control)))

    def configs(self, name: str) -> dict[str, str]:
        """The topic configs ``name`` is created with."""
        if name in self.co_partitioned:
            return dict(UNLIMITED_RETENTION)
        if name in (self.scores, self.erasures):
            return dict(COMPACTED)
        return {}


@dataclass(frozen=True)
class TopicState:
    """An existing topic as the broker describes it.

    ``configs`` holds the values the broker described (name -> value); empty when it described
    none (Tansu for a topic created without configs, or a client not allowed DescribeConfigs).
    """
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)


#: kinds of problem :func:`check_topics` reports
MISSING = "missing"
PARTITION_MISMATCH = "partition-mismatch"
FINITE_RETENTION = "finite-retention"
COMPACTED_INPUT = "compacted-input"
NOT_COMPACTED = "not-compacted"
UNKNOWN = "unknown-config"
OTHER_COUNT = "partition-count"
_WARNINGS = {UNKNOWN, OTHER_COUNT}
#: what makes a rebuild impossible or scatters a contact's events: the worker refuses these
UNSAFE = {PARTITION_MISMATCH, FINITE_RETENTION, COMPACTED_INPUT}


@dataclass(frozen=True)
class TopicProblem:
    """One thing wrong (or unknown) about the topics."""
    kind: str
    topics: tuple[str, ...]
    message: str

    @property
    def is_error(self) -> bool:
        """An error makes ``leadpulse topics check`` fail; a warning (unknown) does not."""
        return self.kind not in _WARNINGS

    @property
    def unsafe(self) -> bool:
        """The worker refuses to start on it (unless told to, LEADPULSE_ALLOW_UNSAFE_TOPICS)."""
        return self.kind in UNSAFE

    def __str__(self) -> str:
        return ("error: " if self.is_error else "warning: ") + self.message


def _unlimited(value: str) -> bool:
    try:
        return int(value.strip()) < 0  # Kafka: any negative retention means no limit
    except ValueError:
        return False


def _policies(value: str) -> set[str]:
    return {p.strip() for p in value.split(",") if p.strip()}


def _alter_hint(name: str, configs: str) -> str:
    return (f"`kafka-configs.sh --bootstrap-server B --alter --entity-type topics --entity-name {name} "
            f"--add-config {configs}`")


def check_topics(layout: TopicLayout, described: Mapping[str, TopicState]) -> list[TopicProblem]:
    """What is wrong with the topics of ``layout`` as ``described`` (name -> state of every
    existing topic; absent = missing). Pure: :func:`verify_topics` asks the broker.

    Errors: missing topics; co-partitioned topics (inputs and account topic) with different
    partition counts; an input or account topic with a finite ``retention.ms`` or
    ``retention.bytes``, or compacted; ``leads.scores`` not compacted. Warnings: a config the
    broker did not describe (unknown, not assumed wrong); co-partitioned topics that agree on a
    count other than the configured one.
    """
    problems: list[TopicProblem] = []
    missing = [n for n in layout.names if n not in described]
    if missing:
        problems.append(TopicProblem(MISSING, tuple(missing),
                                     f"missing topics: {', '.join(missing)}; run `leadpulse topics create`"))

    counts = {n: described[n].partitions for n in layout.co_partitioned if n in described}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{n}={c}" for n, c in counts.items())
        problems.append(TopicProblem(
            PARTITION_MISMATCH, tuple(counts),
            f"co-partitioned topics differ in partition count ({listed}): the input topics and the "
            "account topic must all have the same count, or the events of one contact reach different "
            "workers. Re-create them with one count and re-publish the input history "
            "(docs/operating.md, \"Changing the partition count\")"))
    elif counts and next(iter(counts.values())) != layout.partitions:
        count = next(iter(counts.values()))
        problems.append(TopicProblem(
            OTHER_COUNT, tuple(counts),
            f"the input and account topics have {count} partitions, the configured count "
            f"(LEADPULSE_PARTITIONS) is {layout.partitions}: a co-partitioned topic created from now "
            f"on would get {layout.partitions}; set LEADPULSE_PARTITIONS={count}"))

    unknown: dict[str, list[str]] = {}  # topic -> configs the broker did not describe
    for name in layout.co_partitioned:
        if name not in described:
            continue
        configs = described[name].configs
        for key in UNLIMITED_RETENTION:
            value = configs.get(key)
            if value is None:
                unknown.setdefault(name, []).append(key)
            elif not _unlimited(value):
                problems.append(TopicProblem(
                    FINITE_RETENTION, (name,),
                    f"{name}: {key}={value} is finite: the broker deletes older records, and a worker "
                    f"that lost its data directory cannot rebuild from this topic; set {key}=-1 "
                    f"({_alter_hint(name, 'retention.ms=-1,retention.bytes=-1')})"))
        if "compact" in _policies(configs.get("cleanup.policy", "")):
            problems.append(TopicProblem(
                COMPACTED_INPUT, (name,),
                f"{name}: cleanup.policy={configs['cleanup.policy']} keeps only the newest record per "
                f"key, and a rebuild needs every version; set cleanup.policy=delete with unlimited "
                f"retention ({_alter_hint(name, 'cleanup.policy=delete')})"))

    if layout.scores in described:
        configs = described[layout.scores].configs
        policy = configs.get("cleanup.policy")
        if policy is None and not configs:
            unknown.setdefault(layout.scores, []).append("cleanup.policy")
        elif "compact" not in _policies(policy or ""):
            problems.append(TopicProblem(
                NOT_COMPACTED, (layout.scores,),
                f"{layout.scores} is not compacted (cleanup.policy={policy or 'delete'}): retention "
                f"deletes the newest score of quiet leads, which a consumer rebuilding its table "
                f"needs; set cleanup.policy=compact ({_alter_hint(layout.scores, 'cleanup.policy=compact')})"))

    if unknown:
        listed = "; ".join(f"{name} ({', '.join(keys)})" for name, keys in unknown.items())
        problems.append(TopicProblem(
            UNKNOWN, tuple(unknown),
            f"retention or compaction unknown, the broker did not describe it: {listed}. The embedded "
            "Tansu broker describes only the configs a topic was created with; on Apache Kafka, this "
            "client may lack the DescribeConfigs permission. Make sure of them by hand"))
    return problems


# --------------------------------------------------------------------------- broker calls
def _where(target: Target) -> str:
    return as_connection(target).bootstrap


def _existing(client: KafkaAdminClient, names: Iterable[str]) -> list[str]:
    existing = set(client.list_topics())
    return [n for n in names if n in existing]


def topic_partitions(target: Target, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each existing topic among ``names`` (absent topics are left out)."""
    names = list(names)
    wanted: list[str] = []
    try:
        with _admin(target) as client:
            wanted = _existing(client, names)
            if not wanted:
                return {}
            described = client.describe_topics(wanted)
    except KafkaError as exc:
        raise TopicsError(f"cannot describe topics {wanted or names} on {_where(target)}: {exc}") from exc
    return {t["name"]: len(t["partitions"]) for t in described if not t.get("error_code")}


def topic_states(target: Target, names: Iterable[str]) -> dict[str, TopicState]:
    """Partition count and described configs of each existing topic among ``names``.

    Configs are asked for in full (``config_filter='all'``, no key list): Tansu labels the
    configs given at creation ``DEFAULT_CONFIG``, which the client's default filter drops, and
    closes the connection on a DescribeConfigs that names keys (docs/kafka-notes.md#trap-11).
    """
    names = list(names)
    wanted: list[str] = []
    try:
        with _admin(target) as client:
            wanted = _existing(client, names)
            if not wanted:
                return {}
            topics = {t["name"]: len(t["partitions"]) for t in client.describe_topics(wanted)
                      if not t.get("error_code")}
            described = client.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in topics], config_filter="all")
    except KafkaError as exc:
        raise TopicsError(f"cannot describe the topics on {_where(target)}: {exc}") from exc
    configs = described.get("topic", {})
    return {n: TopicState(count, {k: c["value"] for k, c in configs.get(n, {}).items() if c.get("value") is not None})
            for n, count in topics.items()}


def verify_topics(target: Target, layout: TopicLayout) -> list[TopicProblem]:
    """:func:`check_topics` on what the broker describes now."""
    return check_topics(layout, topic_states(target, layout.names))


def _create_missing(target: Target, names: list[str], partitions: int, replication: int,
                    configs: Mapping[str, Mapping[str, str]], timeout: float) -> list[str]:
    if partitions < 1 or replication < 1:
        raise ValueError("partitions and replication must be >= 1")
    try:
        with _admin(target) as client:
            missing = [n for n in names if n not in set(client.list_topics())]
            if not missing:
                return []
            result = client.create_topics(
                {n: {"num_partitions": partitions, "replication_factor": replication,
                     "configs": dict(configs.get(n, {}))} for n in missing},
                timeout_ms=int(timeout * 1000), raise_errors=False)
    except KafkaError as exc:
        raise TopicsError(f"cannot create topics on {_where(target)}: {exc}") from exc
    failed = [(t["name"], t["error_code"], t.get("error_message"))
              for t in result["topics"] if t["error_code"] not in (0, _TOPIC_EXISTS)]
    if failed:
        raise TopicsError(f"cannot create topics: {failed}")
    logger.info("created topics %s with %d partitions", missing, partitions)
    return missing


def _wait_visible(target: Target, names: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = topic_partitions(target, names)
        if len(counts) == len(names):
            return {n: counts[n] for n in names}
        if time.monotonic() > deadline:
            raise TopicsError(f"topics not visible after {timeout:.0f} s: {sorted(set(names) - set(counts))}")
        time.sleep(0.1)


def ensure_topics(target: Target, names: Iterable[str], partitions: int = 4, replication: int = 1,
                  timeout: float = 15.0, configs: Optional[Mapping[str, Mapping[str, str]]] = None,
                  ) -> dict[str, int]:
    """Create every topic of ``names`` that does not exist yet; leave existing ones alone.

    Idempotent and safe to race: "already exists" is success. An existing topic with another
    partition count is kept as it is (logged as a warning): repartitioning would move keys.
    leadpulse's own topics are created by :func:`create_topics`, which sets their configs.

    Args:
        target: a ``KafkaConnection`` or ``host:port[,...]`` of the cluster.
        names: topic names (duplicates are ignored).
        partitions: partition count of created topics (default 4).
        replication: replication factor of created topics (default 1).
        timeout: seconds to wait until every topic is visible in metadata (default 15).
        configs: topic name -> topic configs it is created with (default: the broker's).

    Returns:
        topic name -> its partition count, for every name.

    Raises:
        TopicsError: creation failed for another reason, or a topic never became visible.
    """
    names = list(dict.fromkeys(names))
    _create_missing(target, names, partitions, replication, configs or {}, timeout)
    counts = _wait_visible(target, names, timeout)
    for name, count in counts.items():
        if count != partitions:
            logger.warning("topic %s exists with %d partitions (wanted %d); kept as is", name, count, partitions)
    return counts


def ensure_input_topics(target: Target, names: Iterable[str], partitions: int = 4, replication: int = 1,
                        timeout: float = 15.0) -> dict[str, int]:
    """:func:`ensure_topics` for input topics: missing ones are created as ``leadpulse topics
    create`` creates them (``partitions``, ``replication``, unlimited retention)."""
    names = list(dict.fromkeys(names))
    return ensure_topics(target, names, partitions, replication, timeout,
                         configs={n: UNLIMITED_RETENTION for n in names})


def create_topics(target: Target, layout: TopicLayout, timeout: float = 15.0) -> list[str]:
    """Create the missing topics of ``layout`` with its partitions, replication and each topic's
    configs (:meth:`TopicLayout.configs`); existing topics are left as they are (check them with
    :func:`verify_topics`).

    Returns:
        the names created, in layout order (empty when every topic existed).

    Raises:
        TopicsError: creation failed, or a topic never became visible.
    """
    names = layout.names
    created = _create_missing(target, names, layout.partitions, layout.replication,
                              {n: layout.configs(n) for n in names}, timeout)
    _wait_visible(target, names, timeout)
    return created
