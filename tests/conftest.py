"""Shared fixtures: one real broker per test session, unique topic names per test.

Set ``KAFKA_BOOTSTRAP`` to run the suite against an existing Kafka instead of the embedded
Tansu broker (topic names are unique per test, so reruns never collide).
"""
from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from leadpulse.schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS


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
    return {s.name: topic_prefix + s.name for s in INPUT_TOPICS + OUTPUT_TOPICS}


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0 loads its protocol schemas with deprecated importlib.resources calls
    for message in ("read_text is deprecated", "open_text is deprecated"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}:DeprecationWarning")
