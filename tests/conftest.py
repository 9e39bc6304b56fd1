"""Shared fixtures: one real broker per test session, unique topic names per test.

Set ``KAFKA_BOOTSTRAP`` to run the suite against an existing Kafka instead of the embedded
Tansu broker (topic names are unique per test, so reruns never collide).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from leadpulse.schemas.topics import ALL_TOPICS


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """Bootstrap string of a real broker: ``KAFKA_BOOTSTRAP``, or a fresh embedded Tansu
    killed (SIGKILL, by pid) at the end of the session."""
    external = os.environ.get("KAFKA_BOOTSTRAP", "").strip()
    if external:
        yield external
        return
    from leadpulse.stream.broker import EmbeddedBroker

    with EmbeddedBroker() as embedded:
        yield embedded.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, e.g. ``t3f9a1c2e.``."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def topic_map(topic_prefix: str) -> dict[str, str]:
    """Default topic name -> a name unique to this test, for every topic of the contract.

    Pass it wherever a ``topics`` mapping is accepted (``stream.publish.publish(topics=...)``).
    """
    return {s.name: topic_prefix + s.name for s in ALL_TOPICS}


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
                                 TrainOptions.of(epochs=8, seed=seed), families=("gnn",)).version
                for seed in (0, 1)]
    registry.set_champion(versions[0], "test: first model")
    return root, versions


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0 loads its protocol schemas with deprecated importlib.resources calls
    for message in ("read_text is deprecated", "open_text is deprecated"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}:DeprecationWarning")
