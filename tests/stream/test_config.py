"""Settings from the environment."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import leadpulse.stream.config
from leadpulse.schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS
from leadpulse.stream.config import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.kafka_bootstrap is None and s.partitions == 4 and s.data_dir == Path("var")
    assert s.input_topics == [t.name for t in INPUT_TOPICS]
    assert s.output_topics == [t.name for t in OUTPUT_TOPICS]
    assert s.topic_map() == {n: n for n in s.all_topics}


def test_overrides() -> None:
    s = Settings.from_env({
        "KAFKA_BOOTSTRAP": "k1:9092,k2:9092", "LEADPULSE_PARTITIONS": "12",
        "LEADPULSE_DATA_DIR": "/data", "LEADPULSE_TOPIC_ACTIVITIES": "prod.activities",
        "LEADPULSE_TOPIC_MODEL_UPDATES": "prod.models", "LEADPULSE_LOG_LEVEL": "debug",
    })
    assert s.kafka_bootstrap == "k1:9092,k2:9092" and s.partitions == 12
    assert s.data_dir == Path("/data") and s.log_level == "DEBUG"
    assert s.topic("crm.activities") == "prod.activities"
    assert s.topic("models.updates") == "prod.models"
    assert "prod.activities" in s.input_topics and "prod.models" in s.output_topics


def test_empty_means_default() -> None:
    s = Settings.from_env({"KAFKA_BOOTSTRAP": "  ", "LEADPULSE_PARTITIONS": ""})
    assert s.kafka_bootstrap is None and s.partitions == 4


@pytest.mark.parametrize("env", [{"LEADPULSE_PARTITIONS": "zero"}, {"LEADPULSE_PARTITIONS": "0"}])
def test_bad_values_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="LEADPULSE_PARTITIONS"):
        Settings.from_env(env)


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().partitions = 2  # type: ignore[misc]


def test_every_variable_is_documented() -> None:
    doc = leadpulse.stream.config.__doc__ or ""
    for env in Settings.env_vars():
        assert env in doc, f"{env} missing from the table in stream/config.py"


def test_unknown_topic() -> None:
    with pytest.raises(KeyError):
        Settings().topic("nope")
