"""Shared pieces of the benchmarks: worlds, a trained model, worker processes, JSON output.

Benchmarks measure and write JSON; they never assert timings. Everything here is real: the
simulator's worlds, a GNN trained by ``leadpulse train``, ``leadpulse worker`` processes on a
real broker: ``KAFKA_BOOTSTRAP`` with the TLS and SASL settings every leadpulse client reads
(``Settings.kafka_connection``), or the embedded one.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from leadpulse.stream.connection import KafkaConnection, as_connection

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path(os.environ.get("LEADPULSE_BENCH_CACHE", "/tmp/leadpulse-bench"))
DEFAULT_OUT = ROOT / "bench" / "results"

logger = logging.getLogger(__name__)


def world_spec(name: str):
    """Simulator size of a benchmark world: tiny, small, large, or ``10k`` (~11k contacts, 455
    days: enough activity for minutes of streaming at 2,000 events/s)."""
    from leadpulse.simulator.params import SizeSpec
    if name == "10k":
        return SizeSpec(companies=1_000, contacts_per_company=10.0, days=455)
    if name == "100k":
        return "large"
    return name


def ensure_world(name: str, seed: int = 0, cache: Path = DEFAULT_CACHE) -> Path:
    """Tables of world ``name`` (cached under ``cache``; the 100k world is accuracy.py's large)."""
    spec = world_spec(name)
    label = spec if isinstance(spec, str) else name
    out = Path(cache) / f"{label}-s{seed}"
    if not (out / "world.json").exists():
        from leadpulse.simulator import simulate
        t0 = time.perf_counter()
        simulate(spec, seed=seed, out_dir=out)
        print(f"simulated world {name} (seed {seed}) in {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
    return out


def ensure_model(registry: Path, world: str = "tiny", epochs: int = 2, seed: int = 0,
                 cache: Path = DEFAULT_CACHE) -> Path:
    """A model registry with a champion, trained by ``leadpulse train`` unless it has one."""
    from leadpulse.model.registry import ModelRegistry
    registry = Path(registry)
    if registry.exists() and ModelRegistry(registry).champion():
        return registry
    tables = ensure_world(world, seed, cache)
    t0 = time.perf_counter()
    # the benchmarks measure the GNN: the only candidate (on the tiny world the validation
    # choice may fall on another family), and no minimum data (that would get the rules model)
    env = dict(os.environ, LEADPULSE_MODEL_DIR=str(registry), LEADPULSE_LOG_LEVEL="WARNING",
               LEADPULSE_CANDIDATES="gnn", LEADPULSE_MIN_TRAIN_POSITIVES="0",
               LEADPULSE_MIN_TRAIN_EXAMPLES="0")
    env.pop("KAFKA_BOOTSTRAP", None)  # no announcement: no broker needed
    subprocess.run([sys.executable, "-m", "leadpulse.stream.cli", "train", "--tables", str(tables),
                    "--epochs", str(epochs), "--seed", str(seed)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    print(f"trained the benchmark model on {world} ({epochs} epochs) in {time.perf_counter() - t0:.0f} s",
          flush=True)
    return registry


def load_scorer(registry: Path):
    """The champion of ``registry`` as a ``model.scorer.Scorer``."""
    from leadpulse.model.registry import ModelRegistry
    from leadpulse.model.scorer import Scorer
    return Scorer(ModelRegistry(registry).load("champion"))


def machine() -> dict:
    """What the figures were measured on (the report prints it)."""
    info: dict = {"python": platform.python_version(), "platform": platform.platform(),
                  "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}
    try:
        info["lscpu"] = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        info["lscpu"] = None
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()
        info["meminfo"] = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in mem[:3])}
    except OSError:
        info["meminfo"] = None
    # distribution metadata, not ``__version__``: rocksdict has none
    for mod, dist in (("torch", "torch"), ("torch_geometric", "torch-geometric"), ("faust", "faust-streaming"),
                      ("aiokafka", "aiokafka"), ("rocksdict", "rocksdict"), ("numpy", "numpy")):
        try:
            info[mod] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:  # a missing optional package is just not described
            info[mod] = None
    return info


def write_json(path: Path, data: dict) -> Path:
    """Write ``data`` with the machine description and the command line that produced it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**data, "machine": machine(), "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"wrote {path}", flush=True)
    return path


def percentiles(values, qs=(50, 95, 99)) -> dict:
    """``{"p50": ..., ...}`` in the unit of ``values`` (None when empty)."""
    import numpy as np
    if len(values) == 0:
        return {f"p{q}": None for q in qs}
    arr = np.asarray(values, dtype=float)
    return {f"p{q}": float(np.percentile(arr, q)) for q in qs}


def du(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.25) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed; whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


@dataclass
class Service:
    """One ``leadpulse worker`` (or pass-through) process of a deployment with its own topics.

    Every topic name carries ``prefix`` so runs on one broker never share a topic or group. The
    process gets ``KAFKA_BOOTSTRAP`` from ``bootstrap`` and every other connection variable from
    this process's environment, as the connection was built from it (:func:`start_broker`).
    """
    bootstrap: Union[str, KafkaConnection]
    data_dir: Path
    prefix: str = field(default_factory=lambda: f"b{uuid.uuid4().hex[:8]}.")
    partitions: int = 4
    model_dir: Optional[Path] = None
    port: int = 0
    argv: Optional[list[str]] = None  # default: the worker
    extra_env: dict = field(default_factory=dict)
    proc: Optional[subprocess.Popen] = None

    def topic(self, default: str) -> str:
        return self.prefix + default

    def env(self) -> dict:
        from leadpulse.stream.config import TOPIC_FIELDS
        env = dict(os.environ, KAFKA_BOOTSTRAP=as_connection(self.bootstrap).bootstrap,
                   LEADPULSE_DATA_DIR=str(self.data_dir),
                   LEADPULSE_WEB_PORT=str(self.port), LEADPULSE_PARTITIONS=str(self.partitions),
                   LEADPULSE_APP_ID=self.prefix + "leadpulse", LEADPULSE_LOG_LEVEL="WARNING",
                   LEADPULSE_TOPIC_ACCOUNTS=self.prefix + "leadpulse.accounts", PYTHONUNBUFFERED="1")
        if self.model_dir:
            env["LEADPULSE_MODEL_DIR"] = str(self.model_dir)
        for default, name in TOPIC_FIELDS.items():
            env["LEADPULSE_" + name.upper()] = self.topic(default)
        env.update(self.extra_env)
        return env

    def ensure_topics(self, extra: tuple[str, ...] = ()) -> None:
        from leadpulse.stream.config import Settings
        from leadpulse.stream.topics_admin import TopicLayout, create_topics, ensure_topics
        # the names env() gives the worker, created as `leadpulse topics create` creates them
        layout = TopicLayout.from_settings(Settings.from_env({"LEADPULSE_PARTITIONS": str(self.partitions)}),
                                           self.prefix)
        create_topics(self.bootstrap, layout)
        if extra:
            ensure_topics(self.bootstrap, [self.topic(t) for t in extra], self.partitions)

    def start(self, timeout: float = 90) -> "Service":
        """Start the process and wait until it answers HTTP (not yet: until it joined its group)."""
        from leadpulse.stream.broker import free_port
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = open(self.data_dir / "service.log", "ab")
        argv = self.argv or [sys.executable, "-m", "leadpulse.stream.cli", "worker"]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if not wait_for(lambda: self.alive() and self.get("/healthz") is not None, timeout, 0.2):
            raise RuntimeError(f"service did not answer within {timeout:.0f} s:\n{self.log()}")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process (by its own pid) and reap it."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(15)

    def get(self, path: str, timeout: float = 5) -> Optional[str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.read().decode()
        except OSError:
            return None

    def metric(self, name: str) -> Optional[float]:
        """Sum of the samples of ``name`` on /metrics (None when the worker did not answer)."""
        got = self.metrics([name])
        return None if got is None else got[name]

    def metrics(self, names: list[str]) -> Optional[dict[str, float]]:
        """Sum of the samples of each of ``names`` from one /metrics read (None: no answer)."""
        from prometheus_client.parser import text_string_to_metric_families
        text = self.get("/metrics")
        if text is None:
            return None
        out = dict.fromkeys(names, 0.0)
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in out:
                    out[s.name] += s.value
        return out

    def log(self, tail: int = 3000) -> str:
        path = self.data_dir / "service.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""


class Settled:
    """True once the workers ``svcs`` consumed ``sent`` events, their account stages applied
    them and every score those caused is published (``leadpulse_unpublished_events`` is 0).

    Ingest alone runs far ahead of the account stage
    (docs/benchmarks.md#stream-throughput-and-latency-beside-a-pass-through), and the account
    stage scores a coalescing window after applying it, so neither count says the worker is done. Applied may stay short of ``sent`` for good: an activity whose contact
    has not arrived yet is held by the router. So: every event applied, or the applied count
    standing still for ``quiet`` seconds, with nothing left unpublished. ``applied`` is the
    last count read (summed over the processes).
    """

    NAMES = ["leadpulse_events_consumed_total", "leadpulse_events_applied_total",
             "leadpulse_events_duplicate_total", "leadpulse_unpublished_events"]

    def __init__(self, svcs: list[Service], sent: int, quiet: float = 10.0) -> None:
        self.svcs, self.sent, self.quiet = svcs, sent, quiet
        self.applied: Optional[float] = None
        self._last: Optional[tuple[float, float]] = None  # (applied, since when)

    def __call__(self) -> bool:
        got = [svc.metrics(self.NAMES) for svc in self.svcs]
        if any(g is None for g in got):  # busy: not an answer, never quiet
            return False
        consumed, applied, duplicates, unpublished = (sum(g[n] for g in got) for n in self.NAMES)
        self.applied = applied + duplicates
        if consumed < self.sent or unpublished > 0:
            self._last = None
            return False
        if self.applied >= self.sent:
            return True
        now = time.monotonic()
        if self._last is None or self._last[0] != self.applied:
            self._last = (self.applied, now)
        return now - self._last[1] >= self.quiet


def start_broker(stack) -> KafkaConnection:
    """The cluster of ``KAFKA_BOOTSTRAP`` with the security settings (checked: it answers), else
    an embedded broker (PLAINTEXT) owned by ``stack`` (an ExitStack).

    Raises:
        leadpulse.stream.connection.BrokerUnavailable: ``KAFKA_BOOTSTRAP`` does not answer (the
            message says why).
    """
    from leadpulse.stream.broker import EmbeddedBroker
    from leadpulse.stream.config import Settings
    from leadpulse.stream.connection import check_reachable
    settings = Settings.from_env()
    if settings.kafka_bootstrap:
        conn = settings.kafka_connection()
        check_reachable(conn)
        return conn
    return KafkaConnection(stack.enter_context(EmbeddedBroker()).bootstrap)


def script_setup() -> None:
    """What every benchmark script does first: warnings and errors of every logger on stderr."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def fill_defaults(args, defaults: dict):
    """Set every option still None to its default (``--quick`` picks the defaults)."""
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def add_model_args(ap) -> None:
    """The options every speed benchmark shares: the model it scores with, the cache, the output."""
    ap.add_argument("--models", type=Path, default=None, help="model registry (default: train one and cache it)")
    ap.add_argument("--model-world", default=None,
                    help="world the model is trained on (default tiny: speed does not depend on its accuracy)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default 10; quick 2)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="simulated worlds and models cache")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)


def model_defaults(quick: bool) -> dict:
    """``fill_defaults`` entries of ``add_model_args``' options."""
    return {"model_world": "tiny", "epochs": 2 if quick else 10}


def benchmark_model(args) -> Path:
    """The registry the speed benchmarks score with (``--models``, or one trained and cached)."""
    if args.models is None:
        # keyed by the default architecture too: a cached model of an older one would measure
        # the speed of a network the worker no longer trains
        from leadpulse.model.train import TrainOptions
        arch = hashlib.sha256(json.dumps(TrainOptions().to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        args.models = args.cache / f"models-{args.model_world}-e{args.epochs}-gnn-{arch}"
    return ensure_model(args.models, args.model_world, args.epochs, cache=args.cache)
