"""Baselines on small hand-built graphs: what each feature family sees, and degenerate training."""
from __future__ import annotations

import doctest

import numpy as np
import pytest

import leadpulse.model.baselines
import leadpulse.model.rules
import leadpulse.model.tabular
from leadpulse.graph_store.base import Subgraph
from leadpulse.model.base import CutoffExamples
from leadpulse.model.baselines import (
    BASELINES,
    LGBMAggModel,
    LGBMFlatModel,
    LGBMOptions,
    LogRegModel,
    RulesModel,
    feature_table,
    load_model,
    make_model,
)
from leadpulse.schemas.timeutil import MICROS_PER_DAY as DAY

T = 400 * DAY


def _graph(n_contacts: int = 40, seed: int = 0) -> tuple[Subgraph, np.ndarray]:
    """Contacts at 4 companies; every 'buyer' has recent demo requests, and labels follow them."""
    rng = np.random.default_rng(seed)
    companies = [f"k{i}" for i in range(4)]
    k_attrs = [{"company_id": k, "industry": ["software", "retail", "software", "government"][i],
                "employees": [800, 30, 3000, None][i]} for i, k in enumerate(companies)]
    orders = [[(T - 5 * DAY, 100.0)]] + [[] for _ in companies[1:]]
    contacts, c_attrs, timelines, labels, works = [], [], [], [], []
    for i in range(n_contacts):
        buyer = rng.random() < 0.3
        k = int(rng.integers(0, 4))
        timeline = [(T - int(d * DAY), "page_view", "blog") for d in rng.integers(1, 90, size=3)]
        if buyer:
            timeline += [(T - 2 * DAY, "page_view", "pricing"), (T - DAY, "demo_request", None)]
        contacts.append(f"c{i}")
        c_attrs.append({"contact_id": f"c{i}", "company_id": companies[k],
                        "seniority": ["ic", "manager", "director", "vp"][i % 4],
                        "source": "other"})
        timelines.append(sorted(timeline))
        labels.append(float(buyer))
        works.append((i, k))
    ei = np.array(works, dtype=np.int64).T
    g = Subgraph(as_of=T, node_ids={"contact": contacts, "company": companies},
                 attrs={"contact": c_attrs, "company": k_attrs}, timelines=timelines, orders=orders,
                 edges={("contact", "works_at", "company"): ei,
                        ("company", "rev_works_at", "contact"): ei[::-1].copy(),
                        ("company", "industry_peer", "company"): np.array([[0], [2]])},
                 edge_time={("contact", "works_at", "company"): np.zeros(ei.shape[1], dtype=np.int64),
                            ("company", "rev_works_at", "contact"): np.zeros(ei.shape[1], dtype=np.int64),
                            ("company", "industry_peer", "company"): np.zeros(1, dtype=np.int64)})
    return g, np.array(labels)


def _examples(g: Subgraph, labels: np.ndarray) -> list[CutoffExamples]:
    return [CutoffExamples(g.as_of, list(g.node_ids["contact"]), labels, lambda: g)]


@pytest.mark.parametrize("module", [leadpulse.model.baselines, leadpulse.model.rules, leadpulse.model.tabular])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_registry_names():
    assert list(BASELINES) == ["rules", "logreg", "lgbm_flat", "lgbm_agg"]
    with pytest.raises(ValueError, match="unknown baseline"):
        make_model("xgboost")


def test_rule_points_add_fit_and_decayed_engagement():
    g = Subgraph(as_of=T, node_ids={"contact": ["fresh", "stale", "cold"]}, attrs={"contact": [
        {"title": "VP of Data", "department": "data"}, {"title": "VP of Data", "department": "data"},
        {"seniority": "ic"},
    ]}, timelines=[[(T, "demo_request", None)], [(T - 30 * DAY, "demo_request", None)],
                   [(T + DAY, "demo_request", None)]])  # the last is after as_of: ignored
    pts = RulesModel().points(g, ["fresh", "stale", "cold"])
    assert pts.tolist() == [20 + 10 + 25, 20 + 10 + 12.5, 0]


def test_rules_calibration_is_monotone_in_points():
    g, y = _graph(80)
    rules = RulesModel().fit(_examples(g, y))
    ids = g.node_ids["contact"]
    order = np.argsort(rules.points(g, ids), kind="stable")
    p = rules.predict_proba(g, ids)[order]
    assert np.all(np.diff(p) >= 0) and rules.a > 0


@pytest.mark.parametrize("cls", [LogRegModel, LGBMFlatModel, LGBMAggModel])
def test_single_class_training_predicts_the_base_rate(cls, tmp_path):
    g, y = _graph()
    m = cls().fit(_examples(g, np.zeros_like(y)))
    assert m.predict_proba(g, ["c0", "c1"]).tolist() == [0.0, 0.0]
    m.save(tmp_path)
    assert load_model(tmp_path).predict_proba(g, ["c0"]).tolist() == [0.0]


def test_activity_models_find_the_buyers():
    g, y = _graph(120)
    ids = g.node_ids["contact"]
    from leadpulse.model.metrics import score_metrics
    for cls in (LGBMFlatModel, LGBMAggModel):
        m = cls(LGBMOptions(min_data_in_leaf=5, num_boost_round=50)).fit(_examples(g, y))
        assert score_metrics(y, m.predict_proba(g, ids)).auroc > 0.95, cls.name


def test_account_features_see_colleagues_and_peers():
    """lgbm_agg's table differs from lgbm_flat's exactly by the account block."""
    g, _ = _graph()
    ids = g.node_ids["contact"]
    flat = feature_table(g, ids, LGBMFlatModel.feature_sets)
    agg = feature_table(g, ids, LGBMAggModel.feature_sets)
    cols = agg.num_cols
    np.testing.assert_array_equal(agg.num[:, [cols.index(c) for c in flat.num_cols]], flat.num)
    account = feature_table(g, ids, ["account"]).num_cols
    assert sorted(cols) == sorted(flat.num_cols + account)
    k0 = [i for i, c in enumerate(g.attrs["contact"]) if c["company_id"] == "k0"]
    k1 = [i for i, c in enumerate(g.attrs["contact"]) if c["company_id"] == "k1"]
    assert agg.num[k0[0], cols.index("acct_contacts")] == len(k0) - 1
    assert agg.num[k0[0], cols.index("acct_orders_ever")] == 1
    assert agg.num[k0[0], cols.index("industry_peer_n")] == 1
    assert agg.num[k1[0], cols.index("industry_peer_n")] == 0
    # the peer of k2 is k0, which ordered 5 days ago
    k2 = [i for i, c in enumerate(g.attrs["contact"]) if c["company_id"] == "k2"]
    assert agg.num[k2[0], cols.index("industry_peer_orders_90d")] == 1


def test_rare_categories_share_a_bucket_and_unseen_ones_do_not_crash():
    g, y = _graph(60)
    m = LogRegModel().fit(_examples(g, y))
    g.attrs["contact"][0] = {**g.attrs["contact"][0], "seniority": "galactic overlord", "source": None}
    p = m.predict_proba(g, ["c0", "nobody"])
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))
