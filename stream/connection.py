"""How every Kafka client of leadpulse connects: bootstrap, TLS and SASL, in one object.

``KafkaConnection`` is built once from the settings (``Settings.kafka_connection``: the
``KAFKA_*`` variables of docs/configuration.md) and handed to each client the project starts
— the Faust worker, aiokafka producers and consumers, kafka-python's admin client — so none of
them can be started without the security settings (docs/operating.md, "A secured cluster").
A plain ``"host:port"`` string still works wherever a connection is taken: it means PLAINTEXT.

>>> c = KafkaConnection("b:9093", "SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
...                     sasl_username="u", sasl_password="p")
>>> sorted(kafka_python_kwargs(c))  # doctest: +NORMALIZE_WHITESPACE
['bootstrap_servers', 'sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username',
 'security_protocol', 'ssl_context']
>>> KafkaConnection("b:9092", "SASL_PLAINTEXT")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
leadpulse.stream.connection.ConnectionSettingsError: KAFKA_SASL_MECHANISM must be set when ...

Before a command starts its clients, :func:`check_reachable` makes sure a broker answers with these
settings and otherwise raises :class:`BrokerUnavailable` naming the bootstrap and the cause (refused,
TLS certificate not trusted, not a TLS port, SASL mechanism not offered, no answer in time).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Union

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ConnectionSettingsError(ValueError):
    """The Kafka connection settings are wrong or incomplete; the message names the variable."""


class BrokerUnavailable(ConnectionError):
    """No broker of the bootstrap list could be talked to with the connection's settings (refused,
    unreachable, TLS handshake or certificate, not Kafka, SASL mechanism not offered, or no answer
    in time); the message names the bootstrap and the cause."""


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
    return {"bootstrap_servers": c.bootstrap, "security_protocol": c.security_protocol,
            "request_timeout_ms": int(c.request_timeout_s * 1000), **_security_kwargs(c)}


def kafka_python_kwargs(target: Union[str, KafkaConnection]) -> dict[str, Any]:
    """Keyword arguments of kafka-python's clients (admin, producer, consumer)."""
    c = as_connection(target)
    kwargs: dict[str, Any] = {"bootstrap_servers": c.bootstrap, **_security_kwargs(c)}
    if c.security_protocol != "PLAINTEXT":
        kwargs["security_protocol"] = c.security_protocol
    return kwargs


def _security_kwargs(c: KafkaConnection) -> dict[str, Any]:
    # aiokafka and kafka-python name the TLS context and the SASL settings alike
    kwargs: dict[str, Any] = {}
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


# --------------------------------------------------------------------------- reachability
_API_VERSIONS, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 18, 17, 36
_UNSUPPORTED_SASL_MECHANISM = 33
_SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
_CLIENT_ID = b"leadpulse-check"


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        try:
            out.append((host.strip("[]") or "localhost", int(port)))
        except ValueError:
            raise BrokerUnavailable(f"KAFKA_BOOTSTRAP={bootstrap!r}: {item.strip()!r} is not host:port") from None
    return out


def _request(api_key: int, version: int, correlation: int, body: bytes = b"") -> bytes:
    head = struct.pack(">hhih", api_key, version, correlation, len(_CLIENT_ID)) + _CLIENT_ID
    return struct.pack(">i", len(head) + len(body)) + head + body


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _response(sock: socket.socket, correlation: int) -> bytes:
    size, got = struct.unpack(">ii", _read_exactly(sock, 8))
    if got != correlation or not 4 <= size < 1 << 24:
        raise EOFError
    return _read_exactly(sock, size - 4)


def _offered_mechanisms(body: bytes) -> tuple[int, list[str]]:
    error, count = struct.unpack_from(">hi", body)
    offset, names = 6, []
    for _ in range(max(count, 0)):
        (length,) = struct.unpack_from(">h", body, offset)
        names.append(body[offset + 2:offset + 2 + length].decode(errors="replace"))
        offset += 2 + length
    return error, names


def scram_client_final(mechanism: str, password: str, client_first_bare: str, server_first: str) -> tuple[str, str]:
    """RFC 5802: the client-final message answering ``server_first``, and the server signature
    (``v=`` of the server-final message) a broker holding the same password sends back."""
    name = _SCRAM_HASHES[mechanism]
    fields = dict(item.split("=", 1) for item in server_first.split(",") if "=" in item)
    salted = hashlib.pbkdf2_hmac(name, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", name).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(hashlib.new(name, client_key).digest(), auth_message, name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_signature = hmac.new(hmac.new(salted, b"Server Key", name).digest(), auth_message, name).digest()
    return (f"{without_proof},p={base64.b64encode(proof).decode()}",
            "v=" + base64.b64encode(server_signature).decode())


def _authenticate(sock: socket.socket, c: KafkaConnection, token: bytes, correlation: int) -> bytes:
    """One SaslAuthenticate (v1) round trip: the broker's token, or ``_Failed`` with its refusal."""
    sock.sendall(_request(_SASL_AUTHENTICATE, 1, correlation, struct.pack(">i", len(token)) + token))
    body = _response(sock, correlation)
    error, length = struct.unpack_from(">hh", body)
    message = body[4:4 + length].decode(errors="replace") if length > 0 else ""
    offset = 4 + max(length, 0)
    (size,) = struct.unpack_from(">i", body, offset)
    if error:
        raise _Failed(f"SASL login ({c.sasl_mechanism}) refused: {message or f'Kafka error code {error}'}; "
                      "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
    return body[offset + 4:offset + 4 + max(size, 0)]


def _login(sock: socket.socket, c: KafkaConnection) -> None:
    """Log in as the clients will: PLAIN (RFC 4616) or SCRAM (RFC 5802, the server checked too)."""
    user, password = c.sasl_username or "", c.sasl_password or ""
    if c.sasl_mechanism == "PLAIN":
        _authenticate(sock, c, f"\0{user}\0{password}".encode(), 3)
        return
    refused = f"SASL login ({c.sasl_mechanism}) refused: the broker says %r; check KAFKA_SASL_USERNAME and " \
              "KAFKA_SASL_PASSWORD"
    bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={secrets.token_urlsafe(18)}"
    server_first = _authenticate(sock, c, f"n,,{bare}".encode(), 3).decode(errors="replace")
    if server_first.startswith("e="):
        raise _Failed(refused % server_first[2:])
    if not server_first.startswith("r=" + bare.rpartition(",r=")[2]):
        raise _Failed(f"SASL login ({c.sasl_mechanism}): the broker's answer is not SCRAM: {server_first[:80]!r}")
    final, expected = scram_client_final(c.sasl_mechanism or "", password, bare, server_first)
    server_final = _authenticate(sock, c, final.encode(), 4).decode(errors="replace")
    if server_final.startswith("e="):
        raise _Failed(refused % server_final[2:])
    if not hmac.compare_digest(server_final.split(",")[0], expected):
        raise _Failed(f"SASL login ({c.sasl_mechanism}): the broker's SCRAM signature is wrong (not the cluster "
                      "these credentials belong to?)")


def _hint(c: KafkaConnection, stage: str) -> str:
    if stage == "Kafka request" and not c.uses_ssl:  # a TLS listener drops a client that skips the handshake
        return " (is it a TLS listener? then set KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL)"
    if stage == "TLS handshake":
        return f" (does this port speak TLS? KAFKA_SECURITY_PROTOCOL={c.security_protocol})"
    if stage == "SASL handshake":
        return f" (the broker may not offer {c.sasl_mechanism})"
    if stage == "SASL login":
        return " (check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD)"
    return ""


class _Failed(Exception):
    """One address failed the check; the message says why."""


def _check_one(c: KafkaConnection, host: str, port: int, budget: float) -> None:
    """One broker address within ``budget`` seconds: TCP, TLS, a Kafka answer, the SASL
    mechanism. Raises ``_Failed``."""
    deadline = time.monotonic() + budget

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout
        return remaining

    stage = "TCP connect"
    try:
        sock = socket.create_connection((host, port), timeout=left())
    except socket.gaierror as exc:
        raise _Failed(f"cannot resolve {host!r} ({exc.strerror})") from exc
    except socket.timeout:
        raise _Failed(f"no TCP answer within {budget:g} s") from None
    except OSError as exc:
        raise _Failed(exc.strerror or str(exc)) from exc
    try:
        if c.uses_ssl:
            stage = "TLS handshake"
            sock.settimeout(left())
            try:
                sock = c.ssl_context().wrap_socket(sock, server_hostname=host)  # type: ignore[union-attr]
            except ssl.SSLCertVerificationError as exc:
                trust = (f"KAFKA_SSL_CAFILE={c.ssl_cafile}" if c.ssl_cafile
                         else "the system's trust store, as KAFKA_SSL_CAFILE is unset")
                raise _Failed(f"TLS handshake failed: certificate verify failed: {exc.verify_message} (checked against "
                              f"{trust}; KAFKA_SSL_CAFILE must be the CA that signed the brokers' "
                              "certificates)") from exc
            except ssl.SSLError as exc:
                raise _Failed(f"TLS handshake failed: {exc.reason or exc} (does this port speak TLS? "
                              f"KAFKA_SECURITY_PROTOCOL={c.security_protocol})") from exc
        stage = "Kafka request"
        sock.settimeout(left())
        sock.sendall(_request(_API_VERSIONS, 0, 1))
        _response(sock, 1)
        if c.uses_sasl:
            stage = "SASL handshake"
            sock.settimeout(left())
            mechanism = (c.sasl_mechanism or "").encode()
            sock.sendall(_request(_SASL_HANDSHAKE, 1, 2, struct.pack(">h", len(mechanism)) + mechanism))
            error, offered = _offered_mechanisms(_response(sock, 2))
            if error == _UNSUPPORTED_SASL_MECHANISM and c.sasl_mechanism not in offered:
                raise _Failed(f"the broker does not offer SASL mechanism {c.sasl_mechanism} (it offers "
                              f"{', '.join(offered) or 'none'}): set KAFKA_SASL_MECHANISM to one of them")
            if error:
                raise _Failed(f"the broker refused the SASL handshake for {c.sasl_mechanism} (Kafka error "
                              f"code {error}): does this listener take SASL?")
            stage = "SASL login"
            sock.settimeout(left())
            _login(sock, c)
    except socket.timeout:
        raise _Failed(f"no answer to the {stage} within {budget:g} s{_hint(c, stage)}") from None
    except (EOFError, ConnectionError, struct.error) as exc:
        raise _Failed(f"the connection closed during the {stage}{_hint(c, stage)}") from exc
    except OSError as exc:
        hint = ""
        if "CERTIFICATE_REQUIRED" in str(exc) or "HANDSHAKE_FAILURE" in str(exc):  # TLS 1.3 reports it late
            hint = (" (the broker may require a client certificate: KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE)"
                    if not c.ssl_certfile else " (the broker did not accept the client certificate)")
        raise _Failed(f"{stage} failed: {exc.strerror or exc}{hint}") from exc
    finally:
        sock.close()


def check_reachable(target: Union[str, KafkaConnection], timeout: Optional[float] = None) -> None:
    """Make sure a broker of the bootstrap list talks Kafka with these settings, or say why not.

    Checked per address, until one passes: the TCP connection, the TLS handshake with the
    connection's context (certificate chain and host name), one ApiVersions round trip (a Kafka
    broker answers on that port), and with SASL that the broker offers the mechanism (the
    credentials themselves are checked by the client that logs in). Meant to run before a
    command starts its clients, whose own errors say little more than "Unable to bootstrap"
    (the TLS reason only goes to their logs).

    Args:
        target: a ``KafkaConnection`` or ``host:port[,...]`` (PLAINTEXT).
        timeout: seconds for the whole check (default: the connection's ``request_timeout_s``).

    Raises:
        BrokerUnavailable: no address passed; the message names the bootstrap and each cause.
    """
    c = as_connection(target)
    deadline = time.monotonic() + (c.request_timeout_s if timeout is None else timeout)
    addresses = _addresses(c.bootstrap)
    failures = []
    for i, (host, port) in enumerate(addresses):
        # a silent first broker must leave time for the others, as the clients would try them
        budget = (deadline - time.monotonic()) / (len(addresses) - i)
        try:
            _check_one(c, host, port, round(budget, 1))
            return
        except _Failed as exc:
            failures.append(f"{host}:{port}: {exc}")
    raise BrokerUnavailable(f"cannot reach Kafka at {c.bootstrap} ({c.security_protocol}): " + "; ".join(failures))


def explain_failure(target: Union[str, KafkaConnection], error: BaseException) -> BrokerUnavailable:
    """The error to raise when a client could not bootstrap from the cluster (``error``): the cause
    :func:`check_reachable` finds (the certificate, a refused port ...), else the client's own
    error; either way naming the bootstrap. Blocks up to the connection's timeout."""
    try:
        check_reachable(target)
    except BrokerUnavailable as found:
        return found
    return BrokerUnavailable(f"cannot reach Kafka at {as_connection(target).bootstrap}: {error}")
