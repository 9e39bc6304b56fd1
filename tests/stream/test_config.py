"""Settings from the environment, and the options built from them."""
from __future__ import annotations

import doctest
from pathlib import Path
from typing import Optional

import pytest
from pydantic import Field, SecretStr, ValidationError

import leadpulse.stream.config
from leadpulse.schemas.topics import ALL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS
from leadpulse.stream.config import TOPIC_FIELDS, Settings, SettingsError
from leadpulse.stream.connection import KafkaConnection
from leadpulse.stream.options import AppOptions, ScoringOptions

DEFAULTS = Settings.from_env({})


def test_defaults() -> None:
    s = DEFAULTS
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
    s = Settings.from_env({"KAFKA_BOOTSTRAP": "  ", "LEADPULSE_PARTITIONS": "", "LEADPULSE_TOPIC_SCORES": " "})
    assert s.kafka_bootstrap is None and s.partitions == 4 and s.topic_scores == "leads.scores"


def test_each_setting_has_one_variable() -> None:
    # the Kafka client's names have no prefix, and the prefixed spelling of one is not read
    assert Settings.from_env({"LEADPULSE_KAFKA_BOOTSTRAP": "k:9092"}).kafka_bootstrap is None
    assert Settings.env_name("kafka_bootstrap") == "KAFKA_BOOTSTRAP"
    assert Settings.env_name("web_port") == "LEADPULSE_WEB_PORT"
    secrets = {"kafka_ssl_key_password", "kafka_sasl_username", "kafka_sasl_password", "api_token"}
    assert Settings.env_vars() == {**{Settings.env_name(name): name for name in Settings.model_fields},
                                   **{Settings.env_name(name) + "_FILE": name for name in secrets}}


def test_from_env_reads_only_the_mapping_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADPULSE_PARTITIONS", "7")
    assert Settings.from_env({}).partitions == 4
    assert Settings.from_env().partitions == Settings().partitions == 7
    assert Settings(partitions=2).partitions == 2  # keyword arguments win over the environment


@pytest.mark.parametrize("env", [
    {"LEADPULSE_PARTITIONS": "zero"}, {"LEADPULSE_PARTITIONS": "0"}, {"LEADPULSE_EPSILON": "-1"},
    {"LEADPULSE_EPSILON": "nan"}, {"LEADPULSE_WEB_PORT": "70000"}, {"LEADPULSE_LOG_LEVEL": "loud"},
    {"LEADPULSE_RETRAIN_EPOCHS": "0"}, {"LEADPULSE_MAX_FUTURE_SECONDS": "-1"},
    {"LEADPULSE_MAX_FUTURE_SECONDS": "inf"},
])
def test_bad_values_name_the_variable_and_the_value(env: dict[str, str]) -> None:
    (name, value), = env.items()
    with pytest.raises(SettingsError, match=f"^{name}='{value}': "):
        Settings.from_env(env)


def test_bad_keyword_arguments_name_the_variable_too() -> None:
    with pytest.raises(SettingsError, match="^KAFKA_BOOTSTRAP=1: "):
        Settings(kafka_bootstrap=1)  # type: ignore[arg-type]


def test_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        DEFAULTS.partitions = 2  # type: ignore[misc]
    assert DEFAULTS.model_copy(update={"partitions": 2}).partitions == 2 and DEFAULTS.partitions == 4


def test_every_setting_is_described() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description (it is the doc's meaning column)"


def test_the_doctests_of_the_module_pass() -> None:
    assert doctest.testmod(leadpulse.stream.config).failed == 0


def test_unknown_topic() -> None:
    with pytest.raises(KeyError):
        DEFAULTS.topic("nope")


def test_each_topic_field_holds_its_own_topic() -> None:
    assert set(TOPIC_FIELDS) == {s.name for s in ALL_TOPICS}
    for default, name in TOPIC_FIELDS.items():  # topic_deadletter <- crm.deadletter, ...
        assert name.rsplit("_", 1)[-1] in default, (name, default)


# ------------------------------------------------------------- built options
def test_default_settings_build_the_options_defaults() -> None:
    """Each default is written once, in the options: the settings' defaults give them back."""
    app = DEFAULTS.app_options("k:9092")
    assert app == AppOptions(app_id=DEFAULTS.app_id, bootstrap=KafkaConnection("k:9092"), partitions=DEFAULTS.partitions,
                             topics=DEFAULTS.topic_map())
    assert DEFAULTS.scoring_options() == ScoringOptions()


#: settings that feed no option of the app or of scoring (the worker reads them itself)
NOT_OPTIONS = {"kafka_bootstrap", "replication", "data_dir", "broker_bin", "log_level", "model_dir",
               "model_version", "retrain_epochs", "allow_unsafe_topics",
               "feeds", "feeds_file",
               "min_train_positives", "min_train_examples", "candidates"} | {
    n for n in Settings.model_fields if n.startswith("kafka_")}
# (the minimum data feeds the training commands' ``MinimumData``: test_minimum_data_reaches_training;
# the candidates their families: test_candidates_reach_training)
# (the feeds are JSON, which the generic change below cannot make: test_feeds_reach_the_options)


def _changed(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return f"{value}-x" if value is not None else "x"


@pytest.mark.parametrize("name", sorted(set(Settings.model_fields) - NOT_OPTIONS))
def test_every_setting_reaches_the_options(name: str) -> None:
    secret = Settings.model_fields[name].annotation == Optional[SecretStr]
    changed = DEFAULTS.model_copy(update={name: SecretStr("x") if secret else _changed(getattr(DEFAULTS, name))})
    assert (changed.app_options("k:9092"), changed.scoring_options()) != \
        (DEFAULTS.app_options("k:9092"), DEFAULTS.scoring_options()), f"{name} is not passed to any option"


def test_candidates_reach_training() -> None:
    from leadpulse.model.registry import FAMILIES
    assert DEFAULTS.families() == FAMILIES
    assert Settings.from_env({"LEADPULSE_CANDIDATES": " hybrid, gnn,hybrid"}).families() == ("hybrid", "gnn")
    for bad in (",", "gnn,xgboost", "rules"):  # (blank is the default, as for every setting)
        with pytest.raises(SettingsError, match="LEADPULSE_CANDIDATES"):
            Settings.from_env({"LEADPULSE_CANDIDATES": bad})


def test_minimum_data_reaches_training() -> None:
    from leadpulse.model.registry import MinimumData
    assert DEFAULTS.minimum_data() == MinimumData()
    s = Settings.from_env({"LEADPULSE_MIN_TRAIN_POSITIVES": "0", "LEADPULSE_MIN_TRAIN_EXAMPLES": "50"})
    assert s.minimum_data() == MinimumData(positives=0, examples=50)


def test_batch_size_bounds_both_stages() -> None:
    s = Settings.from_env({"LEADPULSE_BATCH_SIZE": "50", "LEADPULSE_BATCH_MS": "20", "LEADPULSE_COALESCE_MS": "0"})
    assert s.app_options("k").batch_size == s.scoring_options().max_batch_leads == 50
    assert s.app_options("k").batch_seconds == 0.02 and s.scoring_options().coalesce == 0


# ------------------------------------------------------------------- secrets
class _WithSecret(Settings):
    """How a secret is declared and read (one with a constraint, to see a bad one named)."""
    example_secret: Optional[SecretStr] = Field(
        None, validation_alias="EXAMPLE_SECRET", min_length=8, description="password")


def test_a_secret_comes_from_its_variable_or_its_file(tmp_path: Path) -> None:
    assert _WithSecret.env_vars()["EXAMPLE_SECRET_FILE"] == "example_secret"
    s = _WithSecret.from_env({"EXAMPLE_SECRET": "hunter2hunter2"})
    assert s.example_secret.get_secret_value() == "hunter2hunter2"
    assert "hunter2" not in repr(s)
    (tmp_path / "pw").write_text("from-a-file\n")
    s = _WithSecret.from_env({"EXAMPLE_SECRET_FILE": str(tmp_path / "pw")})
    assert s.example_secret.get_secret_value() == "from-a-file"
    assert "`EXAMPLE_SECRET_FILE`" in leadpulse.stream.config.markdown_table(_WithSecret)


def test_a_bad_secret_is_named_but_never_shown(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="^EXAMPLE_SECRET='\\*+': ") as err:
        _WithSecret.from_env({"EXAMPLE_SECRET": "short"})
    assert "short" not in str(err.value)
    with pytest.raises(SettingsError, match="EXAMPLE_SECRET_FILE="):
        _WithSecret.from_env({"EXAMPLE_SECRET_FILE": str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match="both set"):
        (tmp_path / "pw").write_text("a-password")
        _WithSecret.from_env({"EXAMPLE_SECRET": "a-password", "EXAMPLE_SECRET_FILE": str(tmp_path / "pw")})


# ------------------------------------------------------------- kafka security
SASL_SSL = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "key", "KAFKA_SASL_PASSWORD": "s3cret-s3cret"}


def test_every_kafka_setting_reaches_the_connection(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-a-file\n")
    env = {**SASL_SSL, "KAFKA_SASL_PASSWORD": "", "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "pw"),
           "LEADPULSE_KAFKA_TIMEOUT_SECONDS": "3"}
    c = Settings.from_env(env).kafka_connection("b:9093")
    assert (c.bootstrap, c.security_protocol, c.sasl_mechanism, c.sasl_username, c.sasl_password,
            c.request_timeout_s) == ("b:9093", "SASL_SSL", "SCRAM-SHA-512", "key", "from-a-file", 3.0)
    assert "from-a-file" not in repr(c) and "s3cret" not in repr(Settings.from_env(SASL_SSL))


@pytest.mark.parametrize("env, variable", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
    ({**SASL_SSL, "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
    ({**SASL_SSL, "KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_USERNAME"),
    ({"KAFKA_SSL_CAFILE": "/etc/hostname"}, "KAFKA_SSL_CAFILE"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent.pem"}, "KAFKA_SSL_CAFILE"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "/etc/hostname"}, "KAFKA_SSL_CERTFILE"),
    ({**SASL_SSL, "KAFKA_SASL_PASSWORD": "", "KAFKA_SASL_PASSWORD_FILE": "/nonexistent"},
     "KAFKA_SASL_PASSWORD_FILE"),
])
def test_a_wrong_or_incomplete_security_setting_names_the_variable(env: dict, variable: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}\\b") as err:
        Settings.from_env(env)
    assert "s3cret" not in str(err.value)


def test_feeds_reach_the_options(tmp_path) -> None:
    from leadpulse.schemas.feeds import FeedFormat
    text = '{"crm.contacts": {"format": "debezium", "fields": {"id": "contact_id"}}}'
    by_value = Settings.from_env({"LEADPULSE_FEEDS": text}).app_options("k:9092").feeds
    path = tmp_path / "feeds.json"
    path.write_text(text)
    by_file = Settings.from_env({"LEADPULSE_FEEDS_FILE": str(path)}).app_options("k:9092").feeds
    assert by_value == by_file
    assert by_value["crm.contacts"].format == FeedFormat.DEBEZIUM
    assert by_value["crm.contacts"].fields == {"id": "contact_id"}


@pytest.mark.parametrize("env, says", [
    ({"LEADPULSE_FEEDS": "{not json"}, "LEADPULSE_FEEDS"),
    ({"LEADPULSE_FEEDS": '{"crm.nothing": {}}'}, "crm.nothing"),
    ({"LEADPULSE_FEEDS": '{"crm.contacts": {"format": "csv"}}'}, "LEADPULSE_FEEDS"),
    ({"LEADPULSE_FEEDS_FILE": "/nonexistent/feeds.json"}, "LEADPULSE_FEEDS_FILE"),
])
def test_a_bad_feed_mapping_stops_at_start_naming_it(env, says) -> None:
    with pytest.raises(SettingsError, match=says):
        Settings.from_env(env)
