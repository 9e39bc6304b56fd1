"""Registry: versioned artifacts, champion loading, promotion only when better (reason recorded)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from leadpulse.model.registry import ModelRegistry, RegistryError
from leadpulse.model.train import TrainOptions, train_gnn
from tests.model.test_gnn_synth import make_examples, make_graph

TASK = "PREDICT COUNT(orders.*, 0, 30, days) > 0 FOR EACH contacts.contact_id"
W1, W2 = [100, 200], [200, 300]


@pytest.fixture(scope="module")
def model():
    return train_gnn(make_examples([1, 2]), make_examples([4]), TrainOptions.of(epochs=5, min_count=2))


def test_register_load_round_trip(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    v = reg.register(model, TASK, [1, 2], metrics=[{"window": W1, "metrics": {"auroc": 0.7}}])
    assert v == "gnn-v0001" and reg.versions() == [v]
    art = reg.artifact(v)
    assert art["version"] == v and art["task"] == TASK and art["train_window"] == [1, 2]
    assert art["parent"] is None and art["created_at"]
    files = {p.name for p in (tmp_path / "versions" / v).iterdir()}
    assert {"artifact.json", "weights.pt", "feature_spec.json", "model.json"} <= files
    assert json.loads((tmp_path / "versions" / v / "model.json").read_text())["version"] == v
    with pytest.raises(RegistryError):
        reg.load("champion")
    reg.promote_if_better(v)
    loaded = reg.load("champion")
    assert loaded.version == v
    g, _ = make_graph(41)
    ids = g.node_ids["contact"]
    np.testing.assert_array_equal(loaded.predict_proba(g, ids), model.predict_proba(g, ids))
    with pytest.raises(RegistryError):
        reg.load("nope")


def test_promote_only_when_better_on_latest_window(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    champ = reg.register(model, TASK, [1, 2], metrics=[{"window": W1, "metrics": {"auroc": 0.70}},
                                                       {"window": W2, "metrics": {"auroc": 0.72}}])
    first = reg.promote_if_better(champ)
    assert first.promoted and "no champion" in first.reason

    # better on an older window but worse on the most recent one: not promoted
    worse = reg.register(model, TASK, [1, 2], parent=champ,
                         metrics=[{"window": W1, "metrics": {"auroc": 0.99}}, {"window": W2, "metrics": {"auroc": 0.71}}])
    d = reg.promote_if_better(worse, metric="auroc")
    assert not d.promoted and d.window == W2 and d.champion_value == 0.72
    assert "does not beat" in d.reason and reg.champion() == champ

    # equal is not better
    tie = reg.register(model, TASK, [1, 2], metrics=[{"window": W2, "metrics": {"auroc": 0.72}}])
    assert not reg.promote_if_better(tie).promoted

    better = reg.register(model, TASK, [1, 2], parent=champ, metrics=[{"window": W2, "metrics": {"auroc": 0.80}}])
    d = reg.promote_if_better(better)
    assert d.promoted and reg.champion() == better and "0.8000 > champion" in d.reason
    assert reg.load("champion").version == better

    decisions = reg.decisions()
    assert [x["promoted"] for x in decisions] == [True, False, False, True]
    assert all(x["reason"] for x in decisions)
    assert json.loads((tmp_path / "champion.json").read_text())["version"] == better


def test_champion_evaluated_on_new_window_when_missing(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    champ = reg.register(model, TASK, [1, 2], metrics=[{"window": W1, "metrics": {"auroc": 0.7}}])
    reg.promote_if_better(champ)
    chal = reg.register(model, TASK, [1, 2], metrics=[{"window": W2, "metrics": {"auroc": 0.75}}])
    d = reg.promote_if_better(chal)
    assert not d.promoted and "has no auroc" in d.reason  # no evaluate given: refuse, say why
    calls = []
    d = reg.promote_if_better(chal, evaluate=lambda m, w: calls.append((m.version, w)) or {"auroc": 0.74})
    assert d.promoted and calls == [(champ, W2)]
    assert {"window": W2, "metrics": {"auroc": 0.74}} in reg.artifact(champ)["metrics"]


def test_challenger_without_metrics_is_not_promoted(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    v = reg.register(model, TASK, [1, 2])
    d = reg.promote_if_better(v)
    assert not d.promoted and reg.champion() is None


def test_registry_doctest():
    import doctest

    import leadpulse.model.registry
    assert doctest.testmod(leadpulse.model.registry).failed == 0


def test_first_model_is_promoted_even_when_its_window_has_no_positives(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    v = reg.register(model, TASK, [1, 2], metrics=[{"window": [3, 4], "metrics": {"brier": 0.01}}])
    d = reg.promote_if_better(v)
    assert d.promoted and reg.champion() == v and "unmeasured" in d.reason
