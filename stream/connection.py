"""How every Kafka client of leadpulse connects: bootstrap, TLS and SASL, in one object.

``KafkaConnection`` is built once from the settings (``Settings.kafka_connection``: the
``KAFKA_*`` variables of docs/configuration.md) and handed to each client the project starts
— the Faust worker, aiokafka producers and consumers, kafka-python's admin client — so none of
them can be started without the security settings (docs/operating.md, "A secured cluster").
A plain ``"host:port"`` string still works wherever a connection is taken: it means PLAINTEXT.

>>> c = KafkaConnection("b:9093", "SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
...                     sasl_username="u", sasl_password="p")
>>> sorted(kafka_python_kwargs(c))
['bootstrap_servers', 'sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol', 'ssl_context']
>>> KafkaConnection("b:9092", "SASL_PLAINTEXT")
Traceback (most recent call last):
...
leadpulse.stream.connection.ConnectionSettingsError: KAFKA_SASL_MECHANISM must be set when KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT
"""
from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Any, Optional, Union

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ConnectionSettingsError(ValueError):
    """The Kafka connection settings are wrong or incomplete; the message names the variable."""


@dataclass(frozen=True)
class KafkaConnection:
    """Where the cluster is and how to talk to it.

    Args:
        bootstrap: ``host:port[,host:port]`` (``KAFKA_BOOTSTRAP``).
        security_protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default PLAINTEXT).
        ssl_cafile: CA bundle to verify the brokers with (default: the system's trust store).
        ssl_certfile, ssl_keyfile: client certificate and key, for clusters that require mTLS
            (both or neither).
        ssl_key_password: the key file's password, if it has one.
        sasl_mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL protocols only).
        sasl_username, sasl_password: SASL credentials (SASL protocols only).
        request_timeout_s: how long a client waits for the cluster before it gives up with an
            error naming the bootstrap (default 15): an unreachable or refusing broker never
            hangs a command.
    """
    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: Optional[str] = None
    ssl_certfile: Optional[str] = None
    ssl_keyfile: Optional[str] = None
    ssl_key_password: Optional[str] = field(default=None, repr=False)
    sasl_mechanism: Optional[str] = None
    sasl_username: Optional[str] = None
    sasl_password: Optional[str] = field(default=None, repr=False)
    request_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        _check(self)

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def ssl_context(self) -> Optional[ssl.SSLContext]:
        """A verifying TLS context (hostname checked), or None for the plaintext protocols."""
        if not self.uses_ssl:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, self.ssl_key_password)
        return context


def _check(c: KafkaConnection) -> None:
    if not c.bootstrap or not c.bootstrap.strip():
        raise ConnectionSettingsError("KAFKA_BOOTSTRAP is empty")
    if c.security_protocol not in PROTOCOLS:
        raise ConnectionSettingsError(
            f"KAFKA_SECURITY_PROTOCOL={c.security_protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if c.uses_sasl:
        if c.sasl_mechanism is None:
            raise ConnectionSettingsError(
                f"KAFKA_SASL_MECHANISM must be set when KAFKA_SECURITY_PROTOCOL is {c.security_protocol}")
        if c.sasl_mechanism not in MECHANISMS:
            raise ConnectionSettingsError(
                f"KAFKA_SASL_MECHANISM={c.sasl_mechanism!r} is not one of {', '.join(MECHANISMS)}")
        for name, value in (("KAFKA_SASL_USERNAME", c.sasl_username), ("KAFKA_SASL_PASSWORD", c.sasl_password)):
            if not value:
                raise ConnectionSettingsError(
                    f"{name} (or {name}_FILE) must be set when KAFKA_SECURITY_PROTOCOL is {c.security_protocol}")
    else:
        for name, value in (("KAFKA_SASL_MECHANISM", c.sasl_mechanism), ("KAFKA_SASL_USERNAME", c.sasl_username),
                            ("KAFKA_SASL_PASSWORD", c.sasl_password)):
            if value:  # a forgotten protocol would otherwise send no credentials, silently
                raise ConnectionSettingsError(
                    f"{name} is set but KAFKA_SECURITY_PROTOCOL is {c.security_protocol}: "
                    "set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)")
    files = (("KAFKA_SSL_CAFILE", c.ssl_cafile), ("KAFKA_SSL_CERTFILE", c.ssl_certfile),
             ("KAFKA_SSL_KEYFILE", c.ssl_keyfile))
    if not c.uses_ssl:
        for name, value in files:
            if value:
                raise ConnectionSettingsError(
                    f"{name} is set but KAFKA_SECURITY_PROTOCOL is {c.security_protocol}: "
                    "set KAFKA_SECURITY_PROTOCOL=SSL (or SASL_SSL)")
        return
    for name, value in files:
        if value and not os.access(value, os.R_OK):
            raise ConnectionSettingsError(f"{name}={value!r}: no readable file there")
    if bool(c.ssl_certfile) != bool(c.ssl_keyfile):
        raise ConnectionSettingsError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together: set both or neither")
    try:
        c.ssl_context()
    except (ssl.SSLError, OSError) as exc:
        raise ConnectionSettingsError(f"KAFKA_SSL_*: the TLS files cannot be loaded ({exc})") from exc


def as_connection(target: Union[str, KafkaConnection]) -> KafkaConnection:
    """A connection from a connection or a plain ``host:port`` (PLAINTEXT)."""
    return target if isinstance(target, KafkaConnection) else KafkaConnection(target)


def aiokafka_kwargs(target: Union[str, KafkaConnection]) -> dict[str, Any]:
    """Keyword arguments of ``AIOKafkaProducer`` / ``AIOKafkaConsumer`` / the aiokafka admin."""
    c = as_connection(target)
    kwargs: dict[str, Any] = {"bootstrap_servers": c.bootstrap, "security_protocol": c.security_protocol,
                              "request_timeout_ms": int(c.request_timeout_s * 1000)}
    if c.uses_ssl:
        kwargs["ssl_context"] = c.ssl_context()
    if c.uses_sasl:
        kwargs.update(sasl_mechanism=c.sasl_mechanism, sasl_plain_username=c.sasl_username,
                      sasl_plain_password=c.sasl_password)
    return kwargs


def kafka_python_kwargs(target: Union[str, KafkaConnection]) -> dict[str, Any]:
    """Keyword arguments of kafka-python's clients (admin, producer, consumer)."""
    c = as_connection(target)
    kwargs: dict[str, Any] = {"bootstrap_servers": c.bootstrap}
    if c.security_protocol != "PLAINTEXT":
        kwargs["security_protocol"] = c.security_protocol
    if c.uses_ssl:
        kwargs["ssl_context"] = c.ssl_context()
    if c.uses_sasl:
        kwargs.update(sasl_mechanism=c.sasl_mechanism, sasl_plain_username=c.sasl_username,
                      sasl_plain_password=c.sasl_password)
    return kwargs


def faust_settings(target: Union[str, KafkaConnection]) -> dict[str, Any]:
    """Settings of a Faust app: the broker URL and ``broker_credentials``."""
    import faust

    c = as_connection(target)
    urls = ";".join(f"kafka://{h.strip()}" for h in c.bootstrap.split(","))
    settings: dict[str, Any] = {"broker": urls}
    if c.uses_sasl:
        settings["broker_credentials"] = faust.SASLCredentials(
            username=c.sasl_username, password=c.sasl_password, mechanism=c.sasl_mechanism,
            ssl_context=c.ssl_context())
    elif c.uses_ssl:
        settings["broker_credentials"] = faust.SSLCredentials(c.ssl_context())
    return settings
