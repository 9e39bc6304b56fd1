"""GNNLeadModel: determinism, save/load, subgraph == snapshot, point in time, edge cases."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from leadpulse.model import features as feats
from leadpulse.model.features import FeatureSpec, extract, khop_subgraph, seed_index, to_hetero_data
from leadpulse.model.gnn import GNNLeadModel
from leadpulse.model.train import TrainOptions, train_gnn
from tests.model.test_gnn_synth import DAY, build, make_examples, make_graph

OPTS = TrainOptions.of(epochs=25, patience=10, min_count=2, seed=3)


@pytest.fixture(scope="module")
def model():
    return train_gnn(make_examples([1, 2, 3]), make_examples([4]), OPTS)


def test_learns_the_planted_rule(model):
    from sklearn.metrics import roc_auc_score
    g, y = make_graph(11, companies=60)
    p = model.predict_proba(g, g.node_ids["contact"])
    assert ((p >= 0) & (p <= 1)).all()
    assert roc_auc_score(y, p) > 0.75
    assert model.tier_cuts[0] >= model.tier_cuts[1] >= model.tier_cuts[2]


def test_deterministic_by_seed(model):
    again = train_gnn(make_examples([1, 2, 3]), make_examples([4]), OPTS)
    g, _ = make_graph(12)
    ids = g.node_ids["contact"]
    np.testing.assert_array_equal(model.predict_proba(g, ids), again.predict_proba(g, ids))


def test_save_load_identical(model, tmp_path):
    model.save(tmp_path / "m")
    loaded = GNNLeadModel.load(tmp_path / "m")
    g, _ = make_graph(13)
    ids = g.node_ids["contact"]
    np.testing.assert_array_equal(model.predict_proba(g, ids), loaded.predict_proba(g, ids))
    assert loaded.tier_cuts == model.tier_cuts and loaded.spec == model.spec
    assert FeatureSpec.from_json(model.spec.to_json()) == model.spec


def test_subgraph_equals_snapshot(model):
    g, _ = make_graph(14, companies=50)
    ids = g.node_ids["contact"]
    full = model.predict_proba(g, ids)
    for seeds in ([0], [1, 2, 3], list(range(0, len(ids), 7))):
        sub = khop_subgraph(g, seeds)
        sub_ids = [ids[i] for i in seeds]
        np.testing.assert_allclose(model.predict_proba(sub, sub_ids), full[seeds], atol=1e-5, rtol=0)
        # features of a node do not depend on the batch
        x_sub = to_hetero_data(sub, model.spec)[0]["contact"].x[sub.seeds]
        x_full = to_hetero_data(g, model.spec)[0]["contact"].x[seeds]
        np.testing.assert_array_equal(x_sub.numpy(), x_full.numpy())


def test_big_graph_is_scored_in_chunks_with_the_same_scores(model, monkeypatch):
    """Above ``max_full_nodes``, predict_proba scores chunks of leads on their k-hop subgraphs."""
    import leadpulse.model.gnn as gnn
    g, _ = make_graph(15, companies=50)
    ids = list(reversed(g.node_ids["contact"]))  # any order, not the graph's
    whole = model.predict_proba(g, ids)
    chunked = copy.copy(model)
    chunked.options = OPTS.replaced(max_full_nodes=10)
    monkeypatch.setattr(gnn, "PREDICT_CHUNK", 7)
    assert len(ids) > 7 and sum(map(len, g.node_ids.values())) > 10
    np.testing.assert_allclose(chunked.predict_proba(g, ids), whole, atol=1e-5, rtol=0)


def test_future_event_does_not_move_scores(model):
    """A graph as of t whose timelines contain a future, huge signal scores as without it."""
    g, _ = make_graph(15)
    ids = g.node_ids["contact"]
    before = model.predict_proba(g, ids)
    g2 = copy.deepcopy(g)
    g2.timelines = [list(tl) + [(g.as_of + DAY, "page_view", "pricing"),
                                (g.as_of + 2 * DAY, "demo_request", None)] * 5 for tl in g2.all_timelines()]
    g2.orders = [list(o) + [(g.as_of + DAY, 1e6)] * 10 for o in g2.all_orders()]
    np.testing.assert_array_equal(model.predict_proba(g2, ids), before)


def test_isolated_contact_and_lonely_company(model):
    """No activities, no colleagues, a company with no peers, a stub contact: all score."""
    t = 20_000 * DAY
    nodes = {"contact": [("lone", {"seniority": "vp", "timeline": []}), ("stub", {})],
             "company": [("co", {"industry": "software", "orders": []})]}
    from leadpulse.schemas.types import WORKS_AT
    g = build(t, nodes, {WORKS_AT: [(0, 0, t - DAY)]})
    p = model.predict_proba(g, ["lone", "stub"])
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    # the same contacts inside a big graph score the same (empty edge types contribute 0)
    big, _ = make_graph(16)
    merged = _disjoint(big, g)
    np.testing.assert_allclose(model.predict_proba(merged, ["lone", "stub"]), p, atol=1e-6)
    assert model.predict_proba(g, []).shape == (0,)


def test_unknown_categories_go_to_other(model):
    raw = extract(build(20_000 * DAY, {"contact": [("x", {"seniority": "galactic overlord"})]}, {}))
    x = model.spec.encode_nodes("contact", raw.nodes["contact"])
    cols = model.spec.column_names("contact")
    assert x[0, cols.index(f"seniority={feats.OTHER}")] == 1.0


def test_missing_contact_raises(model):
    g, _ = make_graph(17)
    with pytest.raises(KeyError):
        model.predict_proba(g, ["nobody"])
    with pytest.raises(KeyError):
        seed_index(g, ["nobody"])


def test_big_graph_trains_on_sampled_subgraphs():
    opts = TrainOptions.of(epochs=3, patience=2, min_count=2, max_full_nodes=50, min_negatives=20)
    m = train_gnn(make_examples([1, 2]), make_examples([4]), opts)
    g, _ = make_graph(18)
    assert np.isfinite(m.predict_proba(g, g.node_ids["contact"])).all()


def _disjoint(a, b):
    """Disjoint union of two Subgraphs (same as_of)."""
    out = copy.deepcopy(a)
    off = {t: len(a.node_ids.get(t, [])) for t in out.node_ids}
    for t in b.node_ids:
        out.node_ids[t] = out.node_ids.get(t, []) + b.node_ids[t]
        out.attrs[t] = out.attrs.get(t, []) + b.attrs[t]
    out.timelines = list(a.all_timelines()) + list(b.all_timelines())
    out.orders = list(a.all_orders()) + list(b.all_orders())
    for et, ei in b.edges.items():
        shifted = ei + np.array([[off.get(et[0], 0)], [off.get(et[2], 0)]])
        out.edges[et] = np.concatenate([out.edges[et], shifted], axis=1)
        out.edge_time[et] = np.concatenate([out.edge_time[et], b.edge_time[et]])
    return out


def test_feature_doctests():
    import doctest

    import leadpulse.model.features
    import leadpulse.model.train
    assert doctest.testmod(leadpulse.model.features).failed == 0
    assert doctest.testmod(leadpulse.model.train).failed == 0


def test_stub_nodes_are_marked_as_stubs():
    """A company named by a contact before its record arrives, and a contact named by an
    activity before its record arrives, are stubs in a graph read from the store."""
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.schemas.events import Activity, Company, Contact
    from leadpulse.schemas.timeutil import from_micros
    t0 = 1_700_000_000_000_000
    store = MemoryGraphStore()
    store.apply([Company(company_id="known", updated_at=from_micros(t0)),
                 Contact(contact_id="c1", company_id="known", updated_at=from_micros(t0)),
                 Contact(contact_id="c2", company_id="later", updated_at=from_micros(t0)),
                 Activity(activity_id="a1", contact_id="c-later", type="call", timestamp=from_micros(t0))])
    raw = extract(store.snapshot(t0 + 1))
    for ntype, expected in (("contact", {"c1": 0.0, "c2": 0.0, "c-later": 1.0}),
                            ("company", {"known": 0.0, "later": 1.0})):
        nodes = raw.nodes[ntype]
        col = nodes.num[:, nodes.num_cols.index("is_stub")]
        got = dict(zip(raw.subgraph.node_ids[ntype], col.tolist()))
        assert got == expected, ntype
