"""Signed factors of the tabular baselines (TreeSHAP, coefficients) and the rules model (points):
every column has a group, the groups add up to the score, the words agree with the signs."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy.special import expit

import leadpulse.model.factors
import leadpulse.model.tabular_explain
from leadpulse.model.baselines import LGBMAggModel, LGBMFlatModel, LGBMOptions, LogRegModel, RulesModel
from leadpulse.model.explain import GROUPS, Explanation, explain_signed
from leadpulse.model.tabular import Encoder, feature_table
from leadpulse.model.tabular_explain import column_group, group_contributions
from tests.model.test_baselines import _examples, _graph
from tests.model.test_explain import _assert_words_agree

_SMALL = LGBMOptions(min_data_in_leaf=5, num_boost_round=50)


def _fitted(cls, g, y):
    return (cls(_SMALL) if cls in (LGBMAggModel, LGBMFlatModel) else cls()).fit(_examples(g, y))


@pytest.fixture(scope="module")
def buyers():
    g, y = _graph(120)
    return g, y, {cls.name: _fitted(cls, g, y) for cls in (LGBMAggModel, LGBMFlatModel, LogRegModel, RulesModel)}


@pytest.fixture(scope="module")
def tiny():
    """The tiny world's store and three cutoffs (two to train on, one to validate on)."""
    from leadpulse import simulator
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.base import CutoffExamples
    from leadpulse.model.task import DEFAULT_TASK, parse_task
    from leadpulse.schemas.timeutil import MICROS_PER_DAY, to_micros
    world = simulator.simulate("tiny", seed=0)
    store = MemoryGraphStore()
    store.apply(world.all_events())
    task, end = parse_task(DEFAULT_TASK), to_micros(world.end)
    examples = []
    for t in (end - 70 * MICROS_PER_DAY, end - 55 * MICROS_PER_DAY, end - 40 * MICROS_PER_DAY):
        ids = [c for c in store.node_ids("contact", t) if store.node("contact", c, t)]
        examples.append(CutoffExamples(t, ids, task.label(store, ids, t), build_graph=lambda t=t: store.snapshot(t)))
    return store, end, examples


@pytest.mark.parametrize("module", [leadpulse.model.factors, leadpulse.model.tabular_explain])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_every_column_of_every_family_has_a_group():
    g, _ = _graph(60)
    raw = feature_table(g, g.node_ids["contact"], ("own", "activity", "account", "career"))
    columns = Encoder.fit(raw, min_count=1).columns
    assert {column_group(c) for c in columns} == set(GROUPS)  # every group is fed by some column
    with pytest.raises(ValueError, match="belongs to no explanation group"):
        column_group("a_new_feature")


def test_group_log_odds_add_up_to_the_score_and_points_roughly_too(buyers):
    g, _, models = buyers
    ids = g.node_ids["contact"]
    for name in ("lgbm_agg", "lgbm_flat"):
        m = models[name]
        X = m.encoder.transform(feature_table(g, ids, m.feature_sets))
        shap = m.booster.predict(X, pred_contrib=True)
        logit, base = shap.sum(axis=1), shap[:, -1]
        facts = feature_table(g, ids, ("activity",))
        groups = group_contributions(m.encoder.columns, shap[:, :-1], dict(zip(facts.num_cols, facts.num.T)))
        np.testing.assert_allclose(groups.sum(axis=1), logit - base, atol=1e-9)
        p = m.predict_proba(g, ids)
        np.testing.assert_allclose(p, expit(logit), atol=1e-12)
        out = explain_signed(m, g, ids, top_k=len(GROUPS), min_abs=0)
        total = np.array([sum(f.contribution for f in e.top) for e in out])
        size = np.array([sum(abs(f.contribution) for f in e.top) for e in out])
        # each group is p - sigmoid(logit - c): exact alone, bent a little by the sigmoid in a sum
        assert np.all(np.abs(total - (p - expit(base))) <= 0.1 * size + 1e-9), name


def test_the_words_agree_with_the_signs_on_hand_built_buyers(buyers):
    g, y, models = buyers
    ids = g.node_ids["contact"]
    for m in models.values():
        out = explain_signed(m, g, ids, top_k=len(GROUPS), min_abs=0)
        assert len(out) == len(ids)
        for e in out:
            _assert_words_agree(e)
            assert all(f.group in GROUPS for f in e.top)
    # the buyers' recent demo is what raises their score, and it is worded as such
    m = models["lgbm_agg"]
    for i in np.flatnonzero(y)[:5]:
        e = explain_signed(m, g, [ids[i]], top_k=len(GROUPS))[0]
        own = [f for f in e.positive if f.group == "own_activity"]
        assert own and own[0].factor == "1 demo/meeting/call/trial step in the last 14 days", e
        assert e.positive[0] == own[0]
    for i in np.flatnonzero(y == 0)[:5]:
        e = explain_signed(m, g, [ids[i]], top_k=len(GROUPS))[0]
        assert [f.group for f in e.negative][:1] == ["own_activity"] and e.negative[0].factor.startswith("only "), e


def test_the_words_agree_with_the_signs_on_the_tiny_world(tiny):
    from leadpulse.schemas.timeutil import MICROS_PER_DAY
    store, end, examples = tiny
    graph = store.snapshot(end - 10 * MICROS_PER_DAY)
    ids = graph.node_ids["contact"][:80]
    for cls in (LGBMAggModel, LGBMFlatModel, LogRegModel, RulesModel):
        m = (cls(_SMALL) if cls in (LGBMAggModel, LGBMFlatModel) else cls()).fit(examples[:2], examples[2:])
        out = explain_signed(m, graph, ids, top_k=len(GROUPS), min_abs=0)
        for e in out:
            _assert_words_agree(e)
        assert any(e.positive for e in out) and (cls is RulesModel or any(e.negative for e in out)), cls.name
        if cls is LGBMAggModel:  # the account groups appear, in their words
            groups = {f.group for e in out for f in e.top}
            assert {"colleagues", "account_orders", "firmographics", "own_activity"} <= groups, groups
        assert explain_signed(m, graph, ids, top_k=3) == explain_signed(m, graph, ids, top_k=3)  # deterministic


def test_a_constant_model_and_a_model_without_factors_explain_nothing():
    g, y = _graph()
    ids = g.node_ids["contact"][:4]
    for cls in (LGBMAggModel, LogRegModel):
        m = cls().fit(_examples(g, np.zeros_like(y)))
        assert m.constant == 0.0
        assert explain_signed(m, g, ids, top_k=5, min_abs=0) == [Explanation([], [], [])] * 4

    class NoFactors:
        pass
    assert explain_signed(NoFactors(), g, ids) == [Explanation([], [], [])] * 4


def test_rules_factors_are_its_points_through_its_platt_map():
    from leadpulse.graph_store.base import Subgraph
    from leadpulse.schemas.timeutil import MICROS_PER_DAY as DAY
    T = 400 * DAY
    g = Subgraph(as_of=T, node_ids={"contact": ["vp", "ic"], "company": ["k"]},
                 attrs={"contact": [{"contact_id": "vp", "title": "VP of Data", "department": "data", "company_id": "k"},
                                    {"contact_id": "ic", "seniority": "ic", "company_id": "k"}],
                        "company": [{"industry": "education", "employees": 800}]},
                 timelines=[[(T - DAY, "demo_request", None)], []],
                 edges={("contact", "works_at", "company"): np.array([[0, 1], [0, 0]])},
                 edge_time={("contact", "works_at", "company"): np.zeros(2, dtype=np.int64)})
    m = RulesModel()
    vp, ic = explain_signed(m, g, ["vp", "ic"], top_k=len(GROUPS), min_abs=0)
    z = m.a * m.points(g, ["vp"])[0] + m.b
    by = {f.group: f for f in vp.top}
    # title: seniority 20 + department 10; firmographics: education -5 + size 10; engagement: 25 halved over a day
    assert by["title"].factor == "title: VP of Data, department: data"
    assert by["title"].contribution == pytest.approx(expit(z) - expit(z - m.a * 30))
    assert by["firmographics"].contribution == pytest.approx(expit(z) - expit(z - m.a * 5))
    assert by["own_activity"].factor == "1 demo/meeting/call/trial step in the last 14 days"
    assert by["own_activity"].contribution == pytest.approx(expit(z) - expit(z - m.a * 25 * 0.5 ** (1 / 30)))
    assert [f.group for f in vp.negative] == []
    # the ic has no title points and no activity: only the company speaks for it
    assert [f.group for f in ic.top] == ["firmographics"]
