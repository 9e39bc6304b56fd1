"""Fixtures for worker integration tests: a trained tiny model and real worker processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from leadpulse.schemas.topics import ALL_TOPICS
from leadpulse.stream.config import TOPIC_FIELDS
from tests.stream.tests_support import wait_for

ROOT = Path(__file__).resolve().parents[2]


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
        return {s.name: self.prefix + s.name for s in ALL_TOPICS}

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
        """The body of a 2xx answer, else None."""
        status, body = self.fetch(path)
        return body if status is not None and status < 300 else None

    def fetch(self, path: str) -> tuple[Optional[int], Optional[str]]:
        """(status, body) of any answer; (None, None) when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return None, None

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families
        text = self.get("/metrics") or ""
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == name and labels.items() <= s.labels.items())

    def log(self) -> str:
        return (self.data_dir / "worker.log").read_text(errors="replace")[-4000:]


@pytest.fixture
def worker_factory(broker, tmp_path, request) -> Iterator[Callable[..., WorkerRun]]:
    """Builds WorkerRuns sharing one topic prefix (one "deployment") per test. Their model
    registry is ``trained_registry``'s (trained only when a worker needs it) unless ``model_dir``
    names another."""
    from leadpulse.stream.broker import free_port
    from leadpulse.stream.config import Settings
    from leadpulse.stream.topics_admin import TopicLayout, create_topics

    prefix = f"w{uuid.uuid4().hex[:8]}."
    runs: list[WorkerRun] = []
    # as `leadpulse topics create` makes them: on Apache Kafka the worker refuses finite retention
    create_topics(broker, TopicLayout.from_settings(Settings.from_env({"LEADPULSE_PARTITIONS": "2"}), prefix))

    def make(name: str = "w1", model_dir: Optional[Path] = None, **env: str) -> WorkerRun:
        root = model_dir if model_dir is not None else request.getfixturevalue("trained_registry")[0]
        run = WorkerRun(broker, tmp_path / name, root, prefix, free_port(), dict(env))
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.kill()
