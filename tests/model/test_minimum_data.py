"""Minimum data (docs/model.md#minimum-data): a learned model trained on too little is not
promoted; the rules model is fitted instead and can be served like the GNN."""
from __future__ import annotations

import numpy as np
import pytest

from leadpulse.model.registry import MinimumData, ModelRegistry
from leadpulse.model.rules import RulesModel
from leadpulse.model.train import TrainOptions, train_gnn
from tests.model.test_gnn_synth import make_examples

TASK = "PREDICT COUNT(orders.*, 0, 30, days) > 0 FOR EACH contacts.contact_id"
W = [200, 300]


@pytest.fixture(scope="module")
def tiny():
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.examples import data_span
    from leadpulse.simulator import simulate
    events = simulate("tiny", seed=0).all_events()
    store = MemoryGraphStore()
    store.apply(events)
    return store, data_span(events)


def test_shortfall_names_what_is_missing():
    m = MinimumData(positives=120, examples=1000)
    assert m.shortfall({"examples": 5000, "positives": 300}) is None
    assert m.shortfall(None) is None  # a version registered before the counts: not held to it
    text = m.shortfall({"examples": 135, "positives": 12})
    assert text == ("too little training data for a learned model: 12 positive leads (minimum 120) "
                    "and 135 leads (minimum 1,000)")
    assert MinimumData(0, 0).shortfall({"examples": 0, "positives": 0}) is None


def test_a_learned_challenger_short_of_data_keeps_the_previous_champion(tmp_path):
    model = train_gnn(make_examples([1, 2]), make_examples([4]), TrainOptions.of(epochs=2, min_count=2))
    reg = ModelRegistry(tmp_path)
    champ = reg.register(model, TASK, [1, 2], metrics=[{"window": W, "metrics": {"auroc": 0.6}}],
                         training_data={"examples": 5000, "positives": 400})
    assert reg.promote_if_better(champ, minimum=MinimumData()).promoted
    small = reg.register(model, TASK, [1, 2], metrics=[{"window": W, "metrics": {"auroc": 0.9}}],
                         training_data={"examples": 800, "positives": 40})
    d = reg.promote_if_better(small, minimum=MinimumData())
    assert not d.promoted and reg.champion() == champ
    assert d.reason.startswith("too little training data for a learned model: 40 positive leads (minimum 120)")
    assert reg.decisions()[-1]["reason"] == d.reason
    assert reg.artifact(small)["training_data"] == {"examples": 800, "positives": 40}
    # no minimum: the better figure wins as before
    assert reg.promote_if_better(small).promoted


def test_the_tiny_world_gets_the_rules_model_with_the_reason(tiny, tmp_path):
    from leadpulse.model.pipeline import train_challenger
    from leadpulse.model.task import parse_task
    store, (start, end) = tiny
    reg = ModelRegistry(tmp_path)
    result = train_challenger(store, start, end, parse_task(TASK), reg, TrainOptions.of(epochs=2),
                              minimum=MinimumData())
    data = result.training_data
    assert 0 < data["positives"] < 120 and data["examples"] < 1000
    # every family was fitted and registered; the one chosen on validation was decided on, and refused
    from leadpulse.model.pipeline import FAMILIES
    assert [c["family"] for c in result.candidates][1:] == [f for f in FAMILIES if f != result.family]
    assert result.candidates[0]["version"] == result.version and set(reg.versions()) >= {
        c["version"] for c in result.candidates}
    assert not result.decision.promoted and result.version.startswith(f"{result.family}-")
    assert result.decision.reason.startswith("too little training data for a learned model")
    fallback = result.fallback
    assert fallback is not None and fallback.version.startswith("rules-")
    assert fallback.decision.promoted and reg.champion() == fallback.version
    assert fallback.decision.reason.startswith(f"fallback for {result.version} (too little training data")
    assert "no champion yet" in fallback.decision.reason
    assert reg.champion_reason() == fallback.decision.reason
    assert not reg.artifact(fallback.version)["learned"] and reg.artifact(result.version)["learned"]
    loaded = reg.load("champion")
    assert isinstance(loaded, RulesModel) and loaded.version == fallback.version
    assert loaded.tier_cuts != (1.0, 1.0, 1.0)  # tiers fitted, so the stream can serve it
    # and its tier card, measured on validation as every family's (/healthz, models show)
    from leadpulse.model.calibration import card_of
    card = card_of(loaded)
    assert card["basis"] == "validation" and card["leads"] > 0 and card["base_rate"] is not None
    assert [t["tier"] for t in card["tiers"]] == ["A", "B", "C", "D"] and sum(t["leads"] for t in card["tiers"]) == card["leads"]

    # a second run, still short: the rules champion stays (its ranking is the same points table)
    again = train_challenger(store, start, end, parse_task(TASK), reg, TrainOptions.of(epochs=2),
                             minimum=MinimumData())
    assert not again.decision.promoted and again.fallback is not None
    assert reg.champion() == fallback.version


def test_the_rules_model_is_served_and_a_k_hop_union_scores_as_the_snapshot(tiny):
    from leadpulse.model.examples import build_split
    from leadpulse.model.scorer import Scorer
    from leadpulse.model.task import parse_task
    store, (start, end) = tiny
    split = build_split(store, parse_task(TASK), start, end)
    model = RulesModel().fit(split.train, split.valid)
    model.version = "rules-v0001"
    t = split.plan.test[0]
    snapshot = store.snapshot(t)
    ids = sorted(snapshot.node_ids["contact"])[::7]
    batch = Scorer(model).score(store.subgraph(ids, t, hops=2), ids, top_k=3)
    full = model.predict_proba(snapshot, ids)
    np.testing.assert_allclose(batch.scores, full, atol=1e-9)
    assert batch.tiers == model.tiers(full) and set(batch.tiers) <= set("ABCD")
    # its factors are its points (model.tabular_explain), as ``explain`` gives them
    from leadpulse.model.explain import explain
    assert batch.factors == explain(model, store.subgraph(ids, t, hops=2), ids, top_k=3) and any(batch.factors)
    assert batch.model_version == "rules-v0001"
    loaded = RulesModel.load(_saved(model))
    assert loaded.tier_cuts == model.tier_cuts and loaded.tiers(full) == batch.tiers


def _saved(model):
    import tempfile
    from pathlib import Path
    path = Path(tempfile.mkdtemp())
    model.save(path)
    return path


def test_a_relaxed_split_judges_the_candidates_on_censored_labels_and_registers_the_whole_fits(tiny, tmp_path):
    """90 days of data for a 25-day window: the training labels overlap validation; the
    candidates are chosen on fits to the labels known at the first validation cutoff
    (docs/model.md#the-hybrid-and-the-champion-family)."""
    from leadpulse.model.baselines import LGBMAggModel
    from leadpulse.model.evaluate import CENSORED_NOTE
    from leadpulse.model.examples import build_split
    from leadpulse.model.pipeline import evaluate_on, train_challenger
    from leadpulse.model.task import parse_task
    store, (start, end) = tiny
    task = parse_task("PREDICT COUNT(orders.*, 0, 25, DAYS) > 0 FOR EACH contacts.contact_id")
    reg = ModelRegistry(tmp_path)
    result = train_challenger(store, start, end, task, reg, TrainOptions.of(epochs=2))
    assert CENSORED_NOTE in result.decision.reason
    chosen = max(result.candidates, key=lambda c: c["valid_auroc"])
    assert chosen["family"] == result.family and chosen["version"] == result.version
    # the registered lgbm_agg is the fit on the whole labels: validation shows the other figure
    split = build_split(store, task, start, end)
    agg = next(c for c in result.candidates if c["family"] == "lgbm_agg")
    whole = evaluate_on(reg.load(agg["version"]), split.valid)["auroc"]
    options = TrainOptions.of(epochs=2)
    censored = evaluate_on(LGBMAggModel(career=options.career).fit(split.train_censored, split.valid,
                                                                    seed=options.seed), split.valid)["auroc"]
    assert agg["valid_auroc"] == pytest.approx(censored, abs=1e-12) and whole != pytest.approx(censored, abs=1e-6)
