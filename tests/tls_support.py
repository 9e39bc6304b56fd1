"""TLS in front of the embedded Tansu broker, for tests.

Tansu 0.6.0 cannot serve TLS itself (``--cert`` and ``--key`` refuse to be given together), so
a TLS-terminating stunnel sits in front of it: Tansu listens on plaintext port A but advertises
port B in its metadata, and stunnel accepts TLS on B and forwards to A. Every connection a
client opens after bootstrap therefore goes through TLS as well.

>>> with tempfile.TemporaryDirectory() as tmp, tls_broker(tmp) as tb:   # doctest: +SKIP
...     KafkaProducer(bootstrap_servers=tb.bootstrap, **tb.kafka_python_ssl())

Certificates are made with the ``openssl`` command line tool; stunnel is Debian's ``stunnel4``,
installed on demand when running as root (:func:`ensure_stunnel`).

Only loopback addresses are used.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Optional, Union

from leadpulse.stream.broker import _TANSU_ENV, _die_with_parent, free_port, resolve_broker_bin

__all__ = ["StunnelUnavailable", "TlsBroker", "TlsFiles", "TlsSetupError", "ensure_stunnel",
           "make_ca_and_server_cert", "tls_broker"]

HOST = "127.0.0.1"
OPENSSL = "/usr/bin/openssl"
_PathLike = Union[str, "os.PathLike[str]"]


class TlsSetupError(RuntimeError):
    """Certificates could not be made, or the TLS broker did not come up."""


class StunnelUnavailable(TlsSetupError):
    """No stunnel binary, and it could not be installed."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throwaway CA and the certificates it signed."""
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Optional[Path] = None
    client_key: Optional[Path] = None


# --------------------------------------------------------------------------- certificates
def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run([OPENSSL, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if proc.returncode != 0:
        raise TlsSetupError(f"openssl {' '.join(args)} failed ({proc.returncode}): "
                            f"{proc.stdout.decode(errors='replace').strip()}")


def _issue(d: Path, name: str, subject: str, extensions: str, days: int) -> tuple[Path, Path]:
    key, csr, crt, ext = (d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt", d / f"{name}.ext")
    # Python 3.13+ verifies with VERIFY_X509_STRICT, which insists on the key identifiers
    ext.write_text(extensions + "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid,issuer\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key.name, "-out", csr.name, "-subj", subject, cwd=d)
    _openssl("x509", "-req", "-in", csr.name, "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial",
             str(int.from_bytes(os.urandom(8), "big")), "-days", str(days), "-sha256",
             "-extfile", ext.name, "-out", crt.name, cwd=d)
    csr.unlink()
    ext.unlink()
    return crt, key


def make_ca_and_server_cert(dirpath: _PathLike, client: bool = False, days: int = 2) -> TlsFiles:
    """Write a fresh CA and a server certificate for ``localhost`` / ``127.0.0.1`` into ``dirpath``.

    Args:
        dirpath: directory for the PEM files (created if missing): ``ca.crt``, ``ca.key``,
            ``server.crt``, ``server.key`` and, with ``client``, ``client.crt``, ``client.key``.
        client: also issue a client certificate (``CN=leadpulse-test-client``) for mutual TLS.
        days: validity of every certificate.

    Keys are unencrypted P-256 keys (generation takes milliseconds, unlike RSA).
    """
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.crt", "-days", str(days), "-sha256",
             "-subj", "/CN=leadpulse test CA",
             "-addext", "basicConstraints = critical,CA:TRUE",
             "-addext", "keyUsage = critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier = hash", cwd=d)
    server_cert, server_key = _issue(
        d, "server", "/CN=localhost",
        "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n", days)
    client_cert = client_key = None
    if client:
        client_cert, client_key = _issue(
            d, "client", "/CN=leadpulse-test-client",
            "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = clientAuth\n", days)
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return TlsFiles(d / "ca.crt", d / "ca.key", server_cert, server_key, client_cert, client_key)


# --------------------------------------------------------------------------- stunnel
def ensure_stunnel() -> str:
    """Path of the stunnel binary, installing Debian's ``stunnel4`` first if it is missing.

    Installing needs root and ``apt-get``; it runs ``apt-get update -qq`` then
    ``apt-get install -y -qq --no-install-recommends stunnel4``.

    Raises:
        StunnelUnavailable: not installed and it cannot (or failed to) be installed.
    """
    found = _which_stunnel()
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise StunnelUnavailable(
            "stunnel is not installed and cannot be installed here (needs root and apt-get); "
            "install Debian's stunnel4 package (apt-get install stunnel4)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", "stunnel4"]):
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=600)
        if proc.returncode != 0:
            tail = proc.stdout.decode(errors="replace").strip()[-2000:]
            raise StunnelUnavailable(f"{' '.join(cmd)} failed ({proc.returncode}): {tail}")
    found = _which_stunnel()
    if not found:
        raise StunnelUnavailable("apt-get installed stunnel4 but no stunnel binary is on PATH")
    return found


def _which_stunnel() -> Optional[str]:
    return shutil.which("stunnel4") or shutil.which("stunnel")


def _stunnel_config(tmp: Path, files: TlsFiles, accept: int, connect: int, verify_client: bool) -> Path:
    lines = [
        "foreground = yes",
        "pid =",
        "debug = notice",
        # Kafka is request/response: Nagle's algorithm would add up to 40 ms per round trip
        "socket = l:TCP_NODELAY=1",
        "socket = r:TCP_NODELAY=1",
        "",
        "[kafka]",
        f"accept = {HOST}:{accept}",
        f"connect = {HOST}:{connect}",
        f"cert = {files.server_cert}",
        f"key = {files.server_key}",
        # a client that closes should not keep the Tansu side open for the default 60 s
        "TIMEOUTclose = 0",
    ]
    if verify_client:
        lines += [f"CAfile = {files.ca_cert}", "verifyChain = yes", "requireCert = yes"]
    conf = tmp / "stunnel.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


# --------------------------------------------------------------------------- the broker
@dataclass
class TlsBroker:
    """A running Tansu behind stunnel (see :func:`tls_broker`)."""
    bootstrap: str
    """``127.0.0.1:B``: the TLS port, also what the broker advertises in metadata."""
    plaintext_bootstrap: str
    """``127.0.0.1:A``: Tansu itself. Metadata still advertises B, so a plaintext client gets
    no further than its bootstrap connection."""
    files: TlsFiles
    tansu_pid: int
    stunnel_pid: int
    tansu_log: Path
    stunnel_log: Path
    mutual: bool = False
    """True when stunnel requires a client certificate signed by the CA."""

    def ssl_context(self, with_client_cert: Optional[bool] = None) -> ssl.SSLContext:
        """A client context trusting the test CA (for aiokafka's ``ssl_context``, Faust's
        ``SSLCredentials``); it carries the client certificate when the broker is mutual
        (or ``with_client_cert`` says so)."""
        ctx = ssl.create_default_context(cafile=str(self.files.ca_cert))
        if self.mutual if with_client_cert is None else with_client_cert:
            ctx.load_cert_chain(str(self.files.client_cert), str(self.files.client_key))
        return ctx

    def kafka_python_ssl(self) -> dict:
        """Keyword arguments that make a kafka-python client talk TLS to this broker."""
        kwargs = {"security_protocol": "SSL", "ssl_cafile": str(self.files.ca_cert)}
        if self.mutual:
            kwargs.update(ssl_certfile=str(self.files.client_cert), ssl_keyfile=str(self.files.client_key))
        return kwargs


def _spawn(cmd: list[str], log: IO[bytes], env: Optional[dict] = None) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        start_new_session=True,
        # the kernel kills the child if this process dies without cleaning up
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )


def _kill(proc: Optional[subprocess.Popen]) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        # Tansu ignores SIGTERM; SIGKILL also spares stunnel's graceful shutdown
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def _api_versions_over_tls(port: int, ctx: ssl.SSLContext) -> None:
    """One ApiVersions v0 round trip through stunnel: proves TLS, the forward and Tansu."""
    client_id = b"leadpulse-tls-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((HOST, port), timeout=2.0) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 8:
                chunk = tls.recv(8 - len(head))
                if not chunk:
                    raise ConnectionError("stunnel closed the connection before Tansu answered")
                head += chunk
    size, correlation = struct.unpack(">ii", head)
    if correlation != 1 or size < 4:
        raise ConnectionError(f"unexpected ApiVersions answer (size {size}, correlation {correlation})")


def _tail(path: Path, limit: int = 2000) -> str:
    with contextlib.suppress(OSError):
        return path.read_bytes()[-limit:].decode(errors="replace").strip()
    return ""


def _start(tmp: Path, files: TlsFiles, stunnel: str, verify_client: bool,
           timeout: float) -> tuple[TlsBroker, subprocess.Popen, subprocess.Popen]:
    plain_port, tls_port = free_port(HOST), free_port(HOST)
    while tls_port == plain_port:
        tls_port = free_port(HOST)
    tansu_log, stunnel_log = tmp / "tansu.log", tmp / "stunnel.log"
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    tansu = stunnel_proc = None
    try:
        with open(tansu_log, "ab") as log:
            tansu = _spawn([resolve_broker_bin(), "broker",
                            "--listener-url", f"tcp://{HOST}:{plain_port}",
                            "--advertised-listener-url", f"tcp://{HOST}:{tls_port}",
                            "--storage-engine", "memory://tansu/"], log, env)
        deadline = time.monotonic() + timeout
        # a Kafka client cannot check Tansu here: its metadata sends the client on to port B
        while not _port_open(plain_port):
            if tansu.poll() is not None:
                raise TlsSetupError(f"Tansu exited ({tansu.returncode}): {_tail(tansu_log)}")
            if time.monotonic() > deadline:
                raise TlsSetupError(f"Tansu did not listen on {plain_port} within {timeout:.0f} s")
            time.sleep(0.02)
        conf = _stunnel_config(tmp, files, tls_port, plain_port, verify_client)
        with open(stunnel_log, "ab") as log:
            stunnel_proc = _spawn([stunnel, str(conf)], log)
        broker = TlsBroker(f"{HOST}:{tls_port}", f"{HOST}:{plain_port}", files, tansu.pid,
                           stunnel_proc.pid, tansu_log, stunnel_log, mutual=verify_client)
        probe_ctx = broker.ssl_context()
        last: Optional[Exception] = None
        while True:
            if stunnel_proc.poll() is not None:
                raise TlsSetupError(f"stunnel exited ({stunnel_proc.returncode}): {_tail(stunnel_log)}")
            if tansu.poll() is not None:
                raise TlsSetupError(f"Tansu exited ({tansu.returncode}): {_tail(tansu_log)}")
            if _port_open(tls_port):
                try:
                    _api_versions_over_tls(tls_port, probe_ctx)
                    return broker, tansu, stunnel_proc
                except (OSError, ssl.SSLError) as exc:
                    last = exc
            if time.monotonic() > deadline:
                raise TlsSetupError(f"no Kafka answer over TLS on {tls_port} within {timeout:.0f} s "
                                    f"({last!r}); stunnel: {_tail(stunnel_log)}")
            time.sleep(0.02)
    except BaseException:
        _kill(stunnel_proc)
        _kill(tansu)
        raise


@contextlib.contextmanager
def tls_broker(tmpdir: _PathLike, mutual: bool = False, files: Optional[TlsFiles] = None,
               timeout: float = 15.0) -> Iterator[TlsBroker]:
    """A fresh in-memory Tansu reachable only through TLS, killed (SIGKILL) on exit.

    Args:
        tmpdir: directory for certificates (``tmpdir/certs``), the stunnel config and both
            processes' logs (``tansu.log``, ``stunnel.log``).
        mutual: stunnel also requires a client certificate signed by the test CA (mTLS).
        files: certificates to use instead of making new ones (must include a client
            certificate when ``mutual``).
        timeout: seconds to wait until a Kafka request is answered through TLS.

    Raises:
        StunnelUnavailable: see :func:`ensure_stunnel`.
        TlsSetupError: a process exited early or nothing answered in time (after 3 tries on
            fresh ports, in case a chosen port was taken meanwhile).
    """
    tmp = Path(tmpdir)
    tmp.mkdir(parents=True, exist_ok=True)
    stunnel = ensure_stunnel()
    if files is None:
        files = make_ca_and_server_cert(tmp / "certs", client=mutual)
    elif mutual and not (files.client_cert and files.client_key):
        raise TlsSetupError("mutual TLS needs TlsFiles with a client certificate")
    for attempt in range(1, 4):
        try:
            broker, tansu, stunnel_proc = _start(tmp, files, stunnel, mutual, timeout)
            break
        except TlsSetupError:
            if attempt == 3:
                raise
    try:
        yield broker
    finally:
        _kill(stunnel_proc)
        _kill(tansu)
