"""Explanations: grouped, human-readable factors; removing a top factor's evidence lowers the score."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from leadpulse.model.explain import GROUPS, explain
from leadpulse.model.train import TrainOptions, train_gnn
from tests.model.test_gnn_synth import make_examples, make_graph


@pytest.fixture(scope="module")
def model():
    return train_gnn(make_examples([1, 2, 3, 5]), make_examples([4]),
                     TrainOptions.of(epochs=40, patience=15, min_count=2, seed=1))


def _without_pricing_demo(g, ci):
    """The graph with contact ``ci``'s pricing views and demo requests deleted (nodes, edges, timeline)."""
    g = copy.deepcopy(g)
    def bad(typ, page):
        return typ == "demo_request" or page == "pricing"
    g.timelines = list(g.all_timelines())
    g.timelines[ci] = [e for e in g.timeline(ci) if not bad(e[1], e[2])]
    ha = g.edges[("contact", "had_activity", "activity")]
    drop = {int(a) for c, a in ha.T if c == ci
            and bad(g.attrs["activity"][a]["type"], g.attrs["activity"][a].get("page"))}
    keep = np.array([i not in drop for i in range(len(g.node_ids["activity"]))])
    remap = np.cumsum(keep) - 1
    g.node_ids["activity"] = [x for x, k in zip(g.node_ids["activity"], keep) if k]
    g.attrs["activity"] = [x for x, k in zip(g.attrs["activity"], keep) if k]
    for et, ei in list(g.edges.items()):
        for side, nt in ((0, et[0]), (1, et[2])):
            if nt == "activity" and ei.size:
                m = keep[ei[side]]
                ei = ei[:, m]
                g.edge_time[et] = g.edge_time[et][m]
                ei[side] = remap[ei[side]]
        g.edges[et] = ei
    return g


def test_pricing_then_demo_is_a_top_factor_and_removing_it_lowers_the_score(model):
    g, _ = make_graph(31, companies=60)
    ids = g.node_ids["contact"]
    p = model.predict_proba(g, ids)
    def cols(tl):
        return [(e[1], e[2]) for e in sorted(tl)]
    planted = [i for i, tl in enumerate(g.all_timelines())
               if ("page_view", "pricing") in cols(tl) and ("demo_request", None) in cols(tl)
               and cols(tl).index(("page_view", "pricing")) < cols(tl).index(("demo_request", None))]
    assert planted
    best = max(planted, key=lambda i: p[i])
    factors = explain(model, g, [ids[best]], top_k=5)[0]
    assert factors and all(f.group in GROUPS for f in factors)
    assert factors == sorted(factors, key=lambda f: -abs(f.contribution))
    texts = [f.factor for f in factors]
    assert "viewed pricing then requested a demo" in texts, texts
    assert factors[0].contribution > 0
    g2 = _without_pricing_demo(g, best)
    after = model.predict_proba(g2, [ids[best]])[0]
    assert after < p[best] - 0.05, (p[best], after)


def test_explains_every_contact_and_is_deterministic(model):
    g, _ = make_graph(32)
    ids = g.node_ids["contact"][:8]
    a = explain(model, g, ids, top_k=3)
    b = explain(model, g, ids, top_k=3)
    assert len(a) == len(ids) and a == b
    assert all(len(fs) <= 3 for fs in a)
    assert all(isinstance(f.to_dict()["contribution"], float) for fs in a for f in fs)


def test_explaining_with_the_scored_features_equals_explaining_alone(model):
    """The stream explains with the rows its scoring pass built on the whole batch graph
    (``ScoreBatch.encoded``); alone, ``explain`` builds them on the leads' k-hop union."""
    from leadpulse.model.scorer import Scorer
    g, _ = make_graph(34)
    ids = g.node_ids["contact"][:10]
    batch = Scorer(model).score(g, ids)
    fresh = explain(model, g, ids, top_k=len(GROUPS), min_abs=0)
    reused = explain(model, g, ids, top_k=len(GROUPS), min_abs=0, encoded=batch.encoded)
    assert [[f.group for f in fs] for fs in fresh] == [[f.group for f in fs] for fs in reused]
    assert np.allclose([f.contribution for fs in fresh for f in fs],
                       [f.contribution for fs in reused for f in fs], rtol=0, atol=1e-6)


def test_contribution_is_the_occlusion_difference(model):
    """The own-activity factor equals score(graph) - score(graph without the lead's activity)."""
    g, _ = make_graph(33)
    ids = g.node_ids["contact"]
    ci = next(i for i, tl in enumerate(g.all_timelines()) if tl)
    f = {x.group: x for x in explain(model, g, [ids[ci]], top_k=len(GROUPS), min_abs=0)[0]}
    assert "own_activity" in f
    assert abs(f["own_activity"].contribution) <= 1.0


def test_a_champion_mover_gets_a_career_factor(model):
    from leadpulse.graph_store.memory import MemoryGraphStore
    from tests.model.test_career import DAY, T0, _world
    events, late = _world()
    store = MemoryGraphStore()
    store.apply(events + late)
    g = store.subgraph(["p", "r"], T0 + 72 * DAY)
    p, r = (explain(model, g, [c], top_k=len(GROUPS), min_abs=0)[0] for c in ("p", "r"))
    career = [f for f in p if f.group == "career"]
    assert [f.factor for f in career] == ["champion at a previous customer, joined 12 days ago"]
    assert not [f for f in r if f.group == "career"]   # no former employer: no career factor


# ------------------------------------------------------------------ words agree with signs
#: words that say the evidence counts against the lead, and words that say it counts for it
_LOWERING_WORDS = ("no activity for", "no recorded activity", "no colleague activity", "no recent orders",
                   "only ", "already a customer")
_RAISING_WORDS = ("last activity ", "past activity:", "engaged earlier", "bought before (none")


def _aged(g, days: int):
    """The same graph scored ``days`` later: every event ``days`` older, nothing new."""
    from tests.model.test_gnn_synth import DAY
    g = copy.copy(g)
    g.as_of = g.as_of + days * DAY
    return g


def _assert_words_agree(e):
    from leadpulse.model.explain import Explanation
    assert isinstance(e, Explanation)
    assert all(f.contribution > 0 for f in e.positive) and all(f.contribution < 0 for f in e.negative)
    assert e.positive == sorted(e.positive, key=lambda f: -f.contribution)
    assert e.negative == sorted(e.negative, key=lambda f: f.contribution)
    assert set(e.top) <= set(e.positive) | set(e.negative)
    for f in e.positive:
        assert not any(w in f.factor for w in _LOWERING_WORDS), f
    for f in e.negative:
        assert not any(f.factor.startswith(w) or w in f.factor for w in _RAISING_WORDS), f


def test_a_long_silence_is_a_negative_factor_phrased_as_one(model):
    """The issue's case: the converting pattern (pricing, then a demo) 78+ days ago. The score
    fell with the silence; "no activity for N days" is among what lowers it, never among what
    raises it, and the lead's past activity is phrased as what it is worth."""
    from leadpulse.model.explain import GROUPS, explain_signed
    from tests.model.test_gnn_synth import DAY
    g, _ = make_graph(31, companies=60)
    ids = g.node_ids["contact"]
    def cols(tl):
        return [(e[1], e[2]) for e in sorted(tl)]
    planted = [i for i, tl in enumerate(g.all_timelines())
               if ("page_view", "pricing") in cols(tl) and ("demo_request", None) in cols(tl)
               and cols(tl).index(("page_view", "pricing")) < cols(tl).index(("demo_request", None))]
    fresh = model.predict_proba(g, ids)
    best = max(planted, key=lambda i: fresh[i])
    old = _aged(g, 70)
    last = max(t for t, *_ in g.timeline(best))
    silent = int((old.as_of - last) / DAY)
    assert silent >= 70
    assert model.predict_proba(old, [ids[best]])[0] < fresh[best]  # the silence costs the lead
    e = explain_signed(model, old, [ids[best]], top_k=len(GROUPS), min_abs=0)[0]
    _assert_words_agree(e)
    silence = [f for f in e.negative if f.group == "silence"]
    assert [f.factor for f in silence] == [f"no activity for {silent} days"], e
    assert not [f for f in e.positive if f.group == "silence"]
    # and the old text no longer rides with a positive sign
    assert not [f for f in e.top if f.factor.startswith("no activity") and f.contribution > 0]


def test_every_factor_of_every_lead_reads_the_way_it_counts(model):
    from leadpulse.model.explain import GROUPS, explain_signed
    for graph in (make_graph(35)[0], _aged(make_graph(36)[0], 45)):
        ids = graph.node_ids["contact"][:40]
        out = explain_signed(model, graph, ids, top_k=len(GROUPS), min_abs=0)
        assert len(out) == len(ids)
        for e in out:
            _assert_words_agree(e)
        assert any(f.group == "silence" for e in out for f in e.top)
        # ``explain`` is the ``top`` list of ``explain_signed``
        top = explain(model, graph, ids[:5], top_k=3)
        assert top == [e.top[:3] for e in explain_signed(model, graph, ids[:5], top_k=3)]
