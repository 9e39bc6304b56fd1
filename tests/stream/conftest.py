"""Fixtures for worker integration tests: a trained tiny model and real worker processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from leadpulse.schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS
from leadpulse.stream.config import TOPIC_FIELDS

ROOT = Path(__file__).resolve().parents[2]

from tests.stream.tests_support import wait_for


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    from leadpulse.simulator import simulate
    out = tmp_path_factory.mktemp("tiny-world")
    simulate(size="tiny", seed=0, out_dir=out)
    return out


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory, tiny_world) -> tuple[Path, list[str]]:
    """A registry with two GNN versions trained on the tiny world (the first is champion)."""
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.examples import data_span
    from leadpulse.model.pipeline import train_challenger
    from leadpulse.model.registry import ModelRegistry
    from leadpulse.model.task import DEFAULT_TASK, parse_task
    from leadpulse.model.train import TrainOptions
    from leadpulse.schemas.tables import read_tables

    root = tmp_path_factory.mktemp("models")
    events, _ = read_tables(tiny_world)
    store = MemoryGraphStore()
    store.apply(events)
    start, end = data_span(events)
    registry = ModelRegistry(root)
    versions = [train_challenger(store, start, end, parse_task(DEFAULT_TASK), registry,
                                 TrainOptions.of(epochs=8, seed=seed)).version for seed in (0, 1)]
    registry.set_champion(versions[0], "test: first model")
    return root, versions


@dataclass
class WorkerRun:
    """One ``leadpulse worker`` process with its own data dir, web port and topic names."""
    bootstrap: str
    data_dir: Path
    model_dir: Path
    prefix: str
    port: int
    extra_env: dict = field(default_factory=dict)
    proc: Optional[subprocess.Popen] = None

    @property
    def topics(self) -> dict[str, str]:
        return {s.name: self.prefix + s.name for s in INPUT_TOPICS + OUTPUT_TOPICS}

    def env(self) -> dict:
        env = dict(os.environ, KAFKA_BOOTSTRAP=self.bootstrap, LEADPULSE_DATA_DIR=str(self.data_dir),
                   LEADPULSE_MODEL_DIR=str(self.model_dir), LEADPULSE_WEB_PORT=str(self.port),
                   LEADPULSE_PARTITIONS="2", LEADPULSE_APP_ID=self.prefix + "leadpulse",
                   LEADPULSE_TOPIC_ACCOUNTS=self.prefix + "leadpulse.accounts",
                   LEADPULSE_EPSILON="0", LEADPULSE_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        for default, field_name in TOPIC_FIELDS.items():
            env["LEADPULSE_" + field_name.upper()] = self.topics[default]
        env.update(self.extra_env)
        return env

    def start(self) -> "WorkerRun":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "worker.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "leadpulse.stream.cli", "worker"], cwd=ROOT,
                                     env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.get("/healthz") is not None, 60, "worker /healthz")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def get(self, path: str) -> Optional[str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None

    def metric(self, name: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families
        text = self.get("/metrics") or ""
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)

    def log(self) -> str:
        return (self.data_dir / "worker.log").read_text(errors="replace")[-4000:]


@pytest.fixture
def worker_factory(broker, tmp_path, trained_registry) -> Iterator[Callable[..., WorkerRun]]:
    """Builds WorkerRuns sharing one topic prefix (one "deployment") per test."""
    from leadpulse.stream.broker import free_port
    from leadpulse.stream.topics_admin import ensure_topics

    prefix = f"w{uuid.uuid4().hex[:8]}."
    runs: list[WorkerRun] = []
    names = [prefix + s.name for s in INPUT_TOPICS + OUTPUT_TOPICS] + [prefix + "leadpulse.accounts"]
    ensure_topics(broker, names, partitions=2)

    def make(name: str = "w1", **env: str) -> WorkerRun:
        run = WorkerRun(broker, tmp_path / name, trained_registry[0], prefix, free_port(), dict(env))
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.kill()
