"""Scorer: incremental (k-hop union from the graph store) equals full snapshot, point in time,
tiers, and latency figures (printed, never asserted)."""
from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pytest

from leadpulse.model.base import CutoffExamples
from leadpulse.model.features import khop_subgraph
from leadpulse.model.scorer import ScoreBatch, Scorer, score
from leadpulse.model.train import TrainOptions, train_gnn
from leadpulse.schemas.timeutil import MICROS_PER_DAY, to_micros
from tests.model.test_gnn_synth import make_examples, make_graph

DAY = MICROS_PER_DAY


@pytest.fixture(scope="module")
def synth_model():
    return train_gnn(make_examples([1, 2, 3]), make_examples([4]),
                     TrainOptions.of(epochs=20, patience=10, min_count=2))


@pytest.fixture(scope="module")
def world_store():
    memory = pytest.importorskip("leadpulse.graph_store.memory")
    simulator = pytest.importorskip("leadpulse.simulator")
    world = simulator.simulate("tiny", seed=0)
    store = memory.MemoryGraphStore()
    store.apply(world.all_events())
    return world, store, memory


@pytest.fixture(scope="module")
def world_examples(world_store):
    """Three weekly-ish cutoffs of the tiny world: two to train on, one to validate on."""
    from leadpulse.model.task import DEFAULT_TASK, parse_task
    world, store, _ = world_store
    task = parse_task(DEFAULT_TASK)
    end = to_micros(world.end)
    examples = []
    for t in (end - 70 * DAY, end - 55 * DAY, end - 40 * DAY):
        ids = [c for c in store.node_ids("contact", t) if store.node("contact", c, t)]
        examples.append(CutoffExamples(t, ids, task.label(store, ids, t),
                                       build_graph=lambda t=t: store.snapshot(t)))
    return examples


@pytest.fixture(scope="module")
def world_model(world_examples):
    return train_gnn(world_examples[:2], world_examples[2:], TrainOptions.of(epochs=10, patience=5, min_count=2))


@pytest.fixture(scope="module")
def world_tabular(world_examples):
    """``lgbm_agg`` and ``lgbm_flat`` fitted on the tiny world's cutoffs (small leaves: few positives)."""
    from leadpulse.model.baselines import LGBMAggModel, LGBMFlatModel, LGBMOptions
    opts = LGBMOptions(min_data_in_leaf=5, num_boost_round=60)
    return {cls.name: cls(opts).fit(world_examples[:2], world_examples[2:], seed=0)
            for cls in (LGBMAggModel, LGBMFlatModel)}


def test_scorer_equals_full_on_synthetic_khop(synth_model):
    g, _ = make_graph(21, companies=40)
    ids = g.node_ids["contact"]
    full = synth_model.predict_proba(g, ids)
    seeds = list(range(0, len(ids), 3))
    batch = Scorer(synth_model).score(khop_subgraph(g, seeds))
    assert batch.contact_ids == [ids[i] for i in seeds]
    np.testing.assert_allclose(batch.scores, full[seeds], atol=1e-5, rtol=0)
    assert set(batch.tiers) <= set("ABCD") and len(batch.tiers) == len(seeds)


def test_incremental_equals_full_with_graph_store(world_model, world_store):
    _incremental_equals_full(world_model, world_store)


@pytest.fixture(scope="module")
def week_model(world_examples):
    """A GNN whose graphs carry a week of activities: a window that cuts most of the tiny world's."""
    return train_gnn(world_examples[:2], world_examples[2:],
                     TrainOptions.of(epochs=10, patience=5, min_count=2, activity_days=7))


def test_an_activity_window_scores_and_explains_a_windowed_read_as_the_snapshot(week_model, world_store):
    world, store, _ = world_store
    t = to_micros(world.end) - 10 * DAY
    scorer = Scorer(week_model)
    assert scorer.activity_days == 7 and week_model.spec.activity_days == 7
    snap = store.snapshot(t)
    cut = snap.recent_activities(7)
    assert 0 < len(cut.node_ids["activity"]) < len(snap.node_ids["activity"]) / 2   # the window binds
    _incremental_equals_full(week_model, world_store)
    seeds = [c for c in snap.node_ids["contact"] if store.node("contact", c, t)][:30]
    read = store.subgraph(seeds, t, hops=2, activity_days=scorer.activity_days)
    assert len(read.node_ids["activity"]) < len(store.subgraph(seeds, t, hops=2).node_ids["activity"])
    batch = scorer.score(read, seeds, top_k=3)
    np.testing.assert_allclose(batch.scores, week_model.predict_proba(snap, seeds), atol=1e-5, rtol=0)
    from leadpulse.model.explain import explain
    for whole, windowed in zip(explain(week_model, snap, seeds[:5], top_k=3), batch.factors[:5]):
        assert [(f.factor, f.group) for f in whole] == [(f.factor, f.group) for f in windowed]
        np.testing.assert_allclose([f.contribution for f in whole], [f.contribution for f in windowed], atol=1e-6)


def _incremental_equals_full(model, world_store):
    """Scores of store reads (the model's activity window read by the store, and whole) equal
    the snapshot's."""
    world, store, _ = world_store
    t = to_micros(world.end) - 10 * DAY
    snap = store.snapshot(t)
    ids = [c for c in snap.node_ids["contact"] if store.node("contact", c, t)]
    full = model.predict_proba(snap, ids)
    scorer = Scorer(model)
    rng = np.random.default_rng(0)
    for k in (1, 5, 40, len(ids)):
        pick = sorted(rng.choice(len(ids), size=k, replace=False).tolist())
        seeds = [ids[i] for i in pick]
        for days in {scorer.activity_days, None}:
            batch = scorer.score(store.subgraph(seeds, t, hops=2, activity_days=days), seeds)
            np.testing.assert_allclose(batch.scores, full[pick], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["lgbm_agg", "lgbm_flat"])
def test_tabular_incremental_equals_full_with_graph_store(world_tabular, world_store, name):
    """A LightGBM baseline's features read a lead's 2-hop neighbourhood only (colleagues,
    opportunities, the company's and peer companies' orders come with each node), so its scores
    on the k-hop union of any seeds equal its scores on the snapshot, at several times."""
    model = world_tabular[name]
    world, store, _ = world_store
    assert model.constant is None and model.tier_cuts != (1.0, 1.0, 1.0)
    scorer = Scorer(model)
    rng = np.random.default_rng(1)
    end = to_micros(world.end)
    for t in (end - 100 * DAY, end - 45 * DAY, end - 10 * DAY, end):
        snap = store.snapshot(t)
        ids = [c for c in snap.node_ids["contact"] if store.node("contact", c, t)]
        full = model.predict_proba(snap, ids)
        assert np.ptp(full) > 0, "a constant score would prove nothing"
        for k in (1, 3, 17, 60, len(ids)):
            for _ in range(2 if k < len(ids) else 1):
                pick = sorted(rng.choice(len(ids), size=k, replace=False).tolist())
                seeds = [ids[i] for i in pick]
                batch = scorer.score(store.subgraph(seeds, t, hops=2), seeds)
                np.testing.assert_allclose(batch.scores, full[pick], atol=1e-9, rtol=0)
                assert batch.tiers == model.tiers(full[pick])
                # the family reads no activity node: the stream's read carries none, same scores
                bare = store.subgraph(seeds, t, hops=2, activity_days=scorer.activity_days)
                assert scorer.activity_days == 0 and not bare.node_ids["activity"]
                np.testing.assert_array_equal(scorer.score(bare, seeds).scores, batch.scores)


def test_tabular_scores_carry_factors_and_unservable_models_are_refused(world_tabular, world_store):
    from leadpulse.model.baselines import LGBMAggModel
    from leadpulse.model.explain import explain
    world, store, _ = world_store
    model = world_tabular["lgbm_agg"]
    t = to_micros(world.end) - 10 * DAY
    ids = [c for c in store.node_ids("contact", t) if store.node("contact", c, t)][:12]
    graph = store.subgraph(ids, t, hops=2)
    batch = Scorer(model).score(graph, ids, top_k=3)
    assert batch.factors == explain(model, graph, ids, top_k=3)
    assert any(batch.factors) and all(len(fs) <= 3 for fs in batch.factors)
    with pytest.raises(ValueError, match="not fitted"):
        Scorer(LGBMAggModel())
    with pytest.raises(ValueError, match="cannot serve a str: only the GNN, the hybrid, the rules model and the tabular"):
        Scorer("a model")


@pytest.mark.parametrize("name", ["lgbm_agg", "lgbm_flat"])
def test_a_tabular_batch_explains_some_of_its_leads_from_the_table_its_scoring_built(
        world_tabular, world_store, name):
    """The stream scores a chunk, then explains the few it publishes with the rows the scoring
    built (``ScoreBatch.encoded``): the same factors, to the last bit, as explaining them alone
    (each row depends only on its lead and the graph; a family without the factors' own columns
    adds them for those leads only)."""
    from leadpulse.model.explain import explain_signed
    from leadpulse.model.tabular import TableRows
    model = world_tabular[name]
    world, store, _ = world_store
    t = to_micros(world.end) - 10 * DAY
    ids = [c for c in store.node_ids("contact", t) if store.node("contact", c, t)][:40]
    graph = store.subgraph(ids, t, hops=2)
    batch = Scorer(model).score(graph, ids)
    assert isinstance(batch.encoded, TableRows) and batch.encoded.contact_ids == ids
    some = ids[31:36] + ids[3:5]
    reused = explain_signed(model, graph, some, top_k=4, encoded=batch.encoded)
    assert reused == explain_signed(model, graph, some, top_k=4)
    assert any(e.top for e in reused)
    np.testing.assert_array_equal(model.predict_proba(graph, some, rows=batch.encoded),
                                  batch.scores[[ids.index(c) for c in some]])


def test_the_hybrid_scores_a_k_hop_union_as_the_snapshot_and_explains_with_both_parts(
        world_model, world_tabular, world_examples, world_store, tmp_path):
    """The hybrid stacks the GNN and ``lgbm_agg``, both exact on a 2-hop union, so it is too;
    its factors keep the words' signs, and a saved hybrid scores the same after loading."""
    from leadpulse.model.hybrid import HybridModel
    world, store, _ = world_store
    model = HybridModel(gnn=world_model, agg=world_tabular["lgbm_agg"]).fit(
        world_examples[:2], world_examples[2:], seed=0)
    assert model.blend.fitted_on == "validation" and model.tier_card["tiers"][0]["tier"] == "A"
    scorer = Scorer(model)
    rng = np.random.default_rng(2)
    end = to_micros(world.end)
    for t in (end - 45 * DAY, end):
        snap = store.snapshot(t)
        ids = [c for c in snap.node_ids["contact"] if store.node("contact", c, t)]
        full = model.predict_proba(snap, ids)
        assert np.ptp(full) > 0
        for k in (1, 9, len(ids)):
            pick = sorted(rng.choice(len(ids), size=k, replace=False).tolist())
            seeds = [ids[i] for i in pick]
            batch = scorer.score(store.subgraph(seeds, t, hops=2), seeds)
            np.testing.assert_allclose(batch.scores, full[pick], atol=1e-5, rtol=0)
            assert batch.tiers == model.tiers(full[pick])
    from leadpulse.model.explain import explain_signed
    ids = ids[:15]
    union = store.subgraph(ids, end, hops=2)
    explained = explain_signed(model, union, ids, top_k=4)
    # the stream's way: scored first, explained with both parts' rows the scoring built, same factors
    batch = scorer.score(union, ids, top_k=4)
    assert batch.encoded is not None
    for got, want in zip(batch.factors, (e.top for e in explained)):
        assert [f.factor for f in got] == [f.factor for f in want]
        np.testing.assert_allclose([f.contribution for f in got], [f.contribution for f in want], atol=1e-6)
    some = ids[9:13]  # a few of the scored leads, as the stream's explanation budget picks them
    for got, want in zip(explain_signed(model, union, some, top_k=4, encoded=scorer.score(union, ids).encoded),
                         explain_signed(model, union, some, top_k=4)):
        assert [f.factor for f in got.top] == [f.factor for f in want.top]
        np.testing.assert_allclose([f.contribution for f in got.top], [f.contribution for f in want.top], atol=1e-6)
    assert any(e.positive for e in explained) and any(e.negative for e in explained)
    for e in explained:
        assert all(f.contribution > 0 for f in e.positive) and all(f.contribution < 0 for f in e.negative)
        assert all(f.factor for f in e.top) and len(e.top) <= 4
    model.version = "hybrid-v0001"
    model.save(tmp_path / "hybrid")
    loaded = HybridModel.load(tmp_path / "hybrid")
    np.testing.assert_allclose(loaded.predict_proba(snap, ids), model.predict_proba(snap, ids), atol=1e-12)


def test_future_event_does_not_move_scores_in_store(world_model, world_store):
    world, _, memory = world_store
    from leadpulse.schemas.events import Activity, Order
    store = memory.MemoryGraphStore()
    store.apply(world.all_events())
    t = to_micros(world.end) - 20 * DAY
    ids = [c for c in store.node_ids("contact", t) if store.node("contact", c, t)][:30]
    before = Scorer(world_model).score(store.subgraph(ids, t), ids).scores
    snap_before = world_model.predict_proba(store.snapshot(t), ids)
    future = world.end - timedelta(days=19)  # after t
    events = []
    for i, cid in enumerate(ids):
        events += [Activity(activity_id=f"fut_p{i}", contact_id=cid, type="page_view", page="pricing", timestamp=future),
                   Activity(activity_id=f"fut_d{i}", contact_id=cid, type="demo_request", timestamp=future + timedelta(hours=1)),
                   Order(order_id=f"fut_o{i}", contact_id=cid, amount=1e6, timestamp=future + timedelta(hours=2))]
    store.apply(events)
    after = Scorer(world_model).score(store.subgraph(ids, t), ids).scores
    np.testing.assert_array_equal(after, before)
    np.testing.assert_array_equal(world_model.predict_proba(store.snapshot(t), ids), snap_before)


def test_empty_batch_and_records(synth_model):
    g, _ = make_graph(22)
    b = score(synth_model, g, [])
    assert isinstance(b, ScoreBatch) and b.scores.shape == (0,) and b.records() == []
    b = score(synth_model, g, g.node_ids["contact"][:2], top_k=2)
    recs = b.records()
    assert [r["contact_id"] for r in recs] == g.node_ids["contact"][:2]
    assert all(len(r["top_factors"]) <= 2 for r in recs)


def test_latency_figures(synth_model, capsys):
    """Prints scoring latency for 1/100/1000 leads (a figure, not a pass/fail)."""
    g, _ = make_graph(23, companies=400, per_company=6)
    ids = g.node_ids["contact"]
    import torch
    threads = torch.get_num_threads()
    scorer = Scorer(synth_model, num_threads=1)  # the stream worker's setting (docs/model.md)
    figures = {}
    for k in (1, 100, 1000):
        seeds = list(range(min(k, len(ids))))
        sub = khop_subgraph(g, seeds)
        scorer.score(sub)  # warm-up
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            scorer.score(sub)
            runs.append(time.perf_counter() - t0)
        figures[len(seeds)] = 1000 * float(np.median(runs))
    torch.set_num_threads(threads)
    with capsys.disabled():
        print("\nscoring latency (ms, median of 5, features+forward):",
              {k: round(v, 2) for k, v in figures.items()})
