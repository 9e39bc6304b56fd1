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


# ---------------------------------------------------------------------- champion history, rollback, pin
def _three(model, reg: ModelRegistry, aurocs=(0.70, 0.75, 0.80)) -> list[str]:
    return [reg.register(model, TASK, [1, 2], metrics=[{"window": W2, "metrics": {"auroc": a}}]) for a in aurocs]


def test_every_champion_change_is_appended_to_the_history(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    v1, v2, v3 = _three(model, reg)
    assert reg.champion_history() == [] and reg.promote_if_better(v1).promoted
    reg.set_champion(v2, "by hand")
    reg.promote_if_better(v3)
    history = reg.champion_history()
    assert [(h["action"], h["version"], h["previous"]) for h in history] == \
        [("promote", v1, None), ("promote", v2, v1), ("promote", v3, v2)]
    assert history[1]["reason"] == "by hand" and all(h["at"] for h in history)
    lines = (tmp_path / "champions.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == history  # the file is the history, one line each
    pointer = json.loads((tmp_path / "champion.json").read_text())
    assert pointer["version"] == v3 and pointer["since"] == history[-1]["at"]


def test_a_registry_from_before_the_history_starts_it_with_its_champion(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    v1, v2, _ = _three(model, reg)
    (tmp_path / "champion.json").write_text(json.dumps({"version": v1, "since": "2026-01-01T00:00:00+00:00",
                                                        "reason": "old"}))
    assert [h["version"] for h in reg.champion_history()] == [v1]
    reg.promote(v2, "newer")
    assert [(h["version"], h["reason"]) for h in reg.champion_history()] == [(v1, "old"), (v2, "manual: newer")]
    assert reg.rollback().challenger == v1 and reg.champion() == v1


def test_rollback_one_step_then_two_then_nothing_left(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    v1, v2, v3 = _three(model, reg)
    for v in (v1, v2, v3):
        assert reg.promote_if_better(v).promoted
    d = reg.rollback()
    assert (d.challenger, d.champion, d.kind, d.promoted) == (v2, v3, "rollback", True)
    assert reg.champion() == v2 and reg.load("champion").version == v2
    d = reg.rollback("jumps after v2")
    assert (d.challenger, d.champion, d.reason) == (v1, v2, "rollback: jumps after v2")
    assert reg.champion() == v1
    with pytest.raises(RegistryError, match=f"nothing to roll back to: {v1} is the first champion"):
        reg.rollback()
    assert reg.champion() == v1
    history = reg.champion_history()
    assert [(h["action"], h["version"], h["reason"]) for h in history[-2:]] == \
        [("rollback", v2, "rollback"), ("rollback", v1, "rollback: jumps after v2")]
    assert [x["kind"] for x in reg.decisions()] == ["compare"] * 3 + ["rollback"] * 2


def test_rollback_after_a_promotion_returns_to_the_champion_it_replaced(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    v1, v2, v3 = _three(model, reg)
    reg.set_champion(v1, "a")
    reg.set_champion(v2, "b")
    reg.rollback()  # v1
    reg.promote(v3, "try v3")
    assert reg.rollback().challenger == v1  # v2 was rolled back: it is not returned to
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        reg.rollback()


def test_rollback_with_no_champion_is_refused(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    _three(model, reg)
    with pytest.raises(RegistryError, match="nothing to roll back to: no champion yet"):
        reg.rollback()


def test_manual_promote_records_a_decision_and_refuses_unknown_versions(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    v1, v2, _ = _three(model, reg, aurocs=(0.80, 0.60, 0.70))
    reg.promote_if_better(v1)
    with pytest.raises(RegistryError, match="unknown version 'gnn-v0042'"):
        reg.promote("gnn-v0042", "typo")
    with pytest.raises(RegistryError, match="already the champion"):
        reg.promote(v1, "again")
    assert reg.champion() == v1 and len(reg.decisions()) == 1
    d = reg.promote(v2, "the old one scored a bulk import badly")  # worse on paper: a manual choice
    assert d.promoted and d.kind == "manual" and reg.champion() == v2
    assert (d.challenger_value, d.champion_value, d.window) == (0.60, 0.80, W2)
    assert reg.decisions()[-1]["reason"] == "manual: the old one scored a bulk import badly"
    assert reg.champion_history()[-1]["reason"] == "manual: the old one scored a bulk import badly"


def test_pin_blocks_promote_if_better_and_records_why(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    v1, v2, v3 = _three(model, reg)
    with pytest.raises(RegistryError, match="nothing to pin"):
        reg.pin()
    reg.promote_if_better(v1)
    assert reg.pin(reason="quarter close") is None and reg.pinned()["reason"] == "quarter close"
    d = reg.promote_if_better(v2)
    assert not d.promoted and reg.champion() == v1
    assert d.reason.startswith(f"pinned: the registry is pinned on {v1}") and "would have been promoted" in d.reason
    assert reg.decisions()[-1]["reason"] == d.reason and not reg.decisions()[-1]["promoted"]

    assert reg.unpin("quarter closed")["reason"] == "quarter close"
    assert reg.pinned() is None and reg.unpin() is None
    assert reg.promote_if_better(v2).promoted and reg.champion() == v2
    assert [h["action"] for h in reg.champion_history()] == ["promote", "pin", "unpin", "promote"]
    assert reg.rollback().challenger == v1  # pins are not champions: rollback skips them


def test_a_pinned_registry_refuses_manual_changes_unless_forced(model, tmp_path):
    from leadpulse.model.registry import PinnedError

    reg = ModelRegistry(tmp_path)
    v1, v2, v3 = _three(model, reg)
    reg.set_champion(v1, "a")
    d = reg.pin(v2, reason="freeze on v2")  # promotes v2 first
    assert d.kind == "manual" and d.reason == "manual: pinned: freeze on v2" and reg.champion() == v2
    with pytest.raises(PinnedError, match=f"pinned on {v2}"):
        reg.promote(v3, "try")
    with pytest.raises(PinnedError):
        reg.rollback()
    with pytest.raises(PinnedError):
        reg.pin(v3)
    assert reg.champion() == v2
    reg.promote(v3, "try", force=True)  # the pin stays, now on v3
    assert reg.champion() == v3 and reg.pinned()["reason"] == "freeze on v2"
    reg.rollback(force=True)
    assert reg.champion() == v2 and reg.pinned() is not None
    assert reg.pin(reason="another") is None and reg.pinned()["reason"] == "freeze on v2"  # already pinned


def test_a_champion_changed_during_the_comparison_is_not_replaced(model, tmp_path):
    reg = ModelRegistry(tmp_path)
    v1, v2, v3 = _three(model, reg, aurocs=(0.70, 0.75, 0.90))
    reg.add_metrics(v1, W1, {"auroc": 0.7})
    reg.set_champion(v1, "a")
    chal = reg.register(model, TASK, [1, 2], metrics=[{"window": [300, 400], "metrics": {"auroc": 0.99}}])

    def evaluate(champ, window):  # an operator promotes by hand while the retrain evaluates
        reg.promote(v2, "meanwhile")
        return {"auroc": 0.5}
    d = reg.promote_if_better(chal, evaluate=evaluate)
    assert not d.promoted and reg.champion() == v2
    assert d.reason.startswith(f"the champion changed from {v1} to {v2} during the comparison")


def test_rollback_on_a_trained_registry_loads_the_previous_model(trained_registry, tmp_path):
    import shutil

    root = tmp_path / "models"  # the session's registry is shared: mutate a copy, from a fresh history
    shutil.copytree(trained_registry[0], root)
    for name in ("champion.json", "champions.jsonl", "pin.json"):
        (root / name).unlink(missing_ok=True)
    v1, v2 = trained_registry[1]
    reg = ModelRegistry(root)
    reg.set_champion(v1, "test: first model")
    reg.promote(v2, "try the second seed")
    assert reg.load("champion").version == v2
    d = reg.rollback()
    assert (d.challenger, d.champion) == (v1, v2)
    first = reg.load("champion")
    assert first.version == v1 and type(first) is type(ModelRegistry(trained_registry[0]).load(v1))
