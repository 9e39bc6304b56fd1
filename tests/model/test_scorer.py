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
def world_model(world_store):
    from leadpulse.model.task import DEFAULT_TASK, parse_task
    world, store, _ = world_store
    task = parse_task(DEFAULT_TASK)
    end = to_micros(world.end)
    examples = []
    for t in (end - 70 * DAY, end - 55 * DAY, end - 40 * DAY):
        ids = [c for c in store.node_ids("contact", t) if store.node("contact", c, t)]
        examples.append(CutoffExamples(t, ids, task.label(store, ids, t),
                                       build_graph=lambda t=t: store.snapshot(t)))
    return train_gnn(examples[:2], examples[2:], TrainOptions.of(epochs=10, patience=5, min_count=2))


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
    world, store, _ = world_store
    t = to_micros(world.end) - 10 * DAY
    snap = store.snapshot(t)
    ids = [c for c in snap.node_ids["contact"] if store.node("contact", c, t)]
    full = world_model.predict_proba(snap, ids)
    scorer = Scorer(world_model)
    rng = np.random.default_rng(0)
    for k in (1, 5, 40, len(ids)):
        pick = sorted(rng.choice(len(ids), size=k, replace=False).tolist())
        seeds = [ids[i] for i in pick]
        batch = scorer.score(store.subgraph(seeds, t, hops=2), seeds)
        np.testing.assert_allclose(batch.scores, full[pick], atol=1e-5, rtol=0)


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
