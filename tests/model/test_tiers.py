"""Tiers a sales team can act on: cut at shares of the validation leads (A top 10 %, B next
20 %, C next 30 %, D the rest), each with the rate its leads converted at on validation — the
model card's figures equal an offline recomputation on the validation set."""
from __future__ import annotations

import json

import numpy as np
import pytest

from leadpulse.model.calibration import TIER_SHARES, TIERS, assign_tiers, card_from_rates, card_of, tier_card
from leadpulse.model.gnn import GNNLeadModel
from leadpulse.model.train import TrainOptions, train_gnn
from tests.model.test_gnn_synth import make_examples


@pytest.fixture(scope="module")
def trained():
    valid = make_examples([4, 6], as_of_step=30)
    model = train_gnn(make_examples([1, 2]), valid, TrainOptions.of(epochs=6, patience=6, min_count=2, seed=3))
    return model, valid


def test_the_card_is_the_offline_computation_on_the_validation_set(trained, tmp_path):
    model, valid = trained
    proba = np.concatenate([model.predict_proba(ex.build_graph(), ex.contact_ids) for ex in valid])
    y = np.concatenate([ex.labels for ex in valid])
    tiers = np.array(assign_tiers(proba, model.tier_cuts))
    card = model.tier_card
    assert card["leads"] == len(y) and card["converted"] == int(y.sum())
    assert card["base_rate"] == pytest.approx(y.mean())
    for row, share in zip(card["tiers"], TIER_SHARES + (1 - sum(TIER_SHARES),)):
        m = tiers == row["tier"]
        # the card was measured on the training loop's logits; predict_proba recomputes them
        # (float32 in a different batch), so a lead sitting exactly on a cut may change sides
        assert abs(row["leads"] - int(m.sum())) <= 1, row
        if m.sum() > 5:
            assert row["conversion_rate"] == pytest.approx(y[m].mean(), abs=1.0 / m.sum()), row
            assert row["lift"] == pytest.approx(row["conversion_rate"] / y.mean())
        assert row["share"] == pytest.approx(share, abs=0.05), row  # cut at the documented shares
        assert row["action"]
    assert [r["min_score"] for r in card["tiers"][:3]] == list(model.tier_cuts)
    assert model.tier_rates["A"] == pytest.approx(card["tiers"][0]["conversion_rate"])
    # strict JSON in model.json, and back
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert meta["tier_card"] == card
    assert GNNLeadModel.load(tmp_path / "m").tier_card == card


def test_tier_card_counts_by_hand():
    p = np.array([0.9, 0.8, 0.5, 0.45, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01])
    y = np.array([1, 1, 0, 1, 0, 0, 0, 1, 0, 0])
    card = tier_card(p, y, (0.8, 0.4, 0.1))
    rows = {r["tier"]: r for r in card["tiers"]}
    assert [rows[t]["leads"] for t in TIERS] == [2, 2, 3, 3]
    assert [rows[t]["converted"] for t in TIERS] == [2, 1, 0, 1]
    assert rows["A"]["conversion_rate"] == 1.0 and rows["A"]["lift"] == pytest.approx(1 / 0.4)
    assert rows["D"]["min_score"] == 0.0 and card["base_rate"] == pytest.approx(0.4)
    empty = tier_card(p, y, (2.0, 0.4, 0.1))
    assert empty["tiers"][0]["conversion_rate"] is None and empty["tiers"][0]["lift"] is None


def test_an_older_model_gets_a_card_from_its_cuts_and_rates():
    class Old:
        tier_cuts = (0.5, 0.2, 0.1)
        tier_rates = {"A": 0.4, "B": float("nan")}
    card = card_of(Old())
    assert card == card_from_rates(Old.tier_cuts, Old.tier_rates)
    assert [r["conversion_rate"] for r in card["tiers"]] == [0.4, None, None, None]
    assert card_of(None) is None


@pytest.mark.parametrize("name", ["lgbm_agg", "lgbm_flat", "logreg"])
def test_a_tabular_model_fits_its_card_on_validation_and_an_old_file_is_all_tier_d(name, tmp_path):
    from leadpulse.model.baselines import LGBMOptions, load_model, make_model
    from tests.model.test_baselines import _examples, _graph
    train_g, train_y = _graph(120, seed=1)
    valid_g, valid_y = _graph(200, seed=2)
    model = make_model(name)
    if name != "logreg":
        model.options = LGBMOptions(min_data_in_leaf=5, num_boost_round=50)
    model.fit(_examples(train_g, train_y), _examples(valid_g, valid_y))
    proba = model.predict_proba(valid_g, valid_g.node_ids["contact"])
    assert model.tier_card == tier_card(proba, valid_y, model.tier_cuts)  # offline, on validation
    assert card_of(model) == model.tier_card and model.tier_card["leads"] == len(valid_y)
    assert model.tiers(proba) == assign_tiers(proba, model.tier_cuts) and "A" in model.tiers(proba)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert (loaded.tier_cuts, loaded.tier_rates, loaded.tier_card) == (model.tier_cuts, model.tier_rates,
                                                                       model.tier_card)
    # a file written before tiers (format 1): it loads, scores the same, and every lead is tier D
    state = json.loads((tmp_path / "m" / "model.json").read_text())
    for key in ("tier_cuts", "tier_rates", "tier_card"):
        del state[key]
    (tmp_path / "m" / "model.json").write_text(json.dumps({**state, "format_version": 1}))
    old = load_model(tmp_path / "m")
    np.testing.assert_array_equal(old.predict_proba(valid_g, valid_g.node_ids["contact"]), proba)
    assert set(old.tiers(proba)) == {"D"} and [r["conversion_rate"] for r in card_of(old)["tiers"]] == [None] * 4


def test_without_validation_the_tabular_tiers_are_fit_on_training():
    from leadpulse.model.baselines import LGBMAggModel, LGBMOptions
    from tests.model.test_baselines import _examples, _graph
    g, y = _graph(120)
    model = LGBMAggModel(LGBMOptions(min_data_in_leaf=5, num_boost_round=50)).fit(_examples(g, y))
    assert model.tier_card == tier_card(model.predict_proba(g, g.node_ids["contact"]), y, model.tier_cuts)
