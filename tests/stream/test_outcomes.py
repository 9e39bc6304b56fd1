"""Live outcome monitoring through the real account stage (RocksDB store and score book, the
rules model served by the scorer): the gauges equal an offline computation (sklearn) on the same
published scores and labels from the raw events, and survive a restart."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from leadpulse.model.task import DEFAULT_TASK, parse_task
from leadpulse.schemas.timeutil import to_micros
from tests.stream.test_accounts import _records

WINDOW = 60


def _processor(work, model, store=None, book=None):
    from leadpulse.graph_store.rocks import RocksDBGraphStore
    from leadpulse.model.scorer import Scorer
    from leadpulse.stream.accounts import AccountProcessor
    from leadpulse.stream.metrics import Metrics
    from leadpulse.stream.options import ScoringOptions
    from leadpulse.stream.outcomes import OutcomeMonitor
    from leadpulse.stream.state import KVState
    store = store or RocksDBGraphStore(work / "graph")
    book = book or KVState(work / "scores")
    metrics = Metrics()
    proc = AccountProcessor(store, book, Scorer(model), ScoringOptions(top_factors=0), metrics)
    proc.outcomes = OutcomeMonitor(book, store, metrics, WINDOW)
    return proc


@pytest.fixture(scope="module")
def world():
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.examples import build_split, data_span
    from leadpulse.model.rules import RulesModel
    from leadpulse.simulator import simulate
    events = simulate("tiny", seed=0).all_events()
    events.sort(key=lambda e: e.event_time)
    store = MemoryGraphStore()
    store.apply(events)
    split = build_split(store, parse_task(DEFAULT_TASK), *data_span(events))
    model = RulesModel().fit(split.train, split.valid)
    model.version = "rules-v0001"
    return events, model


def _gauge(proc, name, **labels):
    return proc.metrics.registry.get_sample_value(name, labels)


def _offline(commits, events, task):
    """The monitor's rule replayed on what was published: a lead's first published score opens an
    observation; after each commit, those whose window ended by the watermark close, labelled
    from the raw events (the brute-force reference of ``Task.label``)."""
    open_: dict[str, tuple] = {}
    labelled = []
    for scores, mark in commits:
        for s in scores:
            if s.contact_id not in open_:
                open_[s.contact_id] = (s.score, s.tier, to_micros(s.as_of))
        for cid, (score, tier, as_of) in sorted(open_.items(), key=lambda kv: (kv[1][2], kv[0])):
            if as_of + task.horizon <= mark:
                labelled.append((score, tier, float(task.label(events, [cid], as_of)[0])))
                del open_[cid]
    return labelled, len(open_)


def test_gauges_equal_the_offline_computation_and_survive_a_restart(world, tmp_path):
    events, model = world
    task = parse_task(DEFAULT_TASK)
    proc = _processor(tmp_path, model)
    commits = []
    for lo in range(0, len(events), 100):
        out = proc.process(_records(events[lo:lo + 100], lo), 0)
        scores = list(out.scores)
        proc.commit_published(out)
        commits.append((scores, proc.watermark(0)))

    labelled, still_open = _offline(commits, events, task)
    assert len(labelled) > WINDOW  # the ring wrapped
    last = labelled[-WINDOW:]
    scores = np.array([x[0] for x in last])
    labels = np.array([x[2] for x in last])
    assert 0 < labels.sum() < labels.size, "the tiny world's window needs both classes"

    def check(p):
        assert _gauge(p, "leadpulse_outcome_labelled_leads") == WINDOW
        assert _gauge(p, "leadpulse_outcome_positives") == labels.sum()
        assert _gauge(p, "leadpulse_outcome_auroc") == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert _gauge(p, "leadpulse_outcome_average_precision") == pytest.approx(
            average_precision_score(labels, scores), abs=1e-12)
        assert _gauge(p, "leadpulse_outcome_open_leads") == still_open
        tiers = np.array([x[1] for x in last])
        for tier in "ABCD":
            mask = tiers == tier
            observed = _gauge(p, "leadpulse_outcome_conversion_observed", tier=tier)
            expected = _gauge(p, "leadpulse_outcome_conversion_expected", tier=tier)
            if not mask.any():
                assert observed is None and expected is None
                continue
            assert observed == pytest.approx(labels[mask].mean(), abs=1e-12)
            assert expected == pytest.approx(scores[mask].mean(), abs=1e-12)

    check(proc)
    # the monitor's state is in the score book: a restarted worker shows the same figures
    proc.store.close()
    proc.book.close()
    again = _processor(tmp_path, model)
    try:
        check(again)
    finally:
        again.store.close()
        again.book.close()


def test_an_erased_lead_leaves_the_monitor(world, tmp_path):
    events, model = world
    proc = _processor(tmp_path, model)
    try:
        out = proc.process(_records(events[:400]), 0)
        proc.commit_published(out)
        opened = {key[0] for key, _ in proc.book.scan("oo")}
        assert opened and _gauge(proc, "leadpulse_outcome_open_leads") == len(opened)
        assert math.isnan(_gauge(proc, "leadpulse_outcome_auroc"))  # nothing labelled yet
        cid = sorted(opened)[0]
        out = proc.erase(cid, proc.watermark(0))
        proc.commit_published(out)
        assert proc.book.get("oo", cid) is None
        assert _gauge(proc, "leadpulse_outcome_open_leads") == len(opened) - 1
    finally:
        proc.store.close()
        proc.book.close()


def test_observations_are_judged_by_the_task_the_model_serves(world, tmp_path):
    """A model served with its task (``Serving.task``, set by ``stream.worker.load_scorer``)
    opens its observations with that task's text and horizon, not the default one's."""
    from leadpulse.stream.serving import Serving
    events, model = world
    task = parse_task("PREDICT COUNT(orders.*, 0, 90, DAYS) > 0 FOR EACH contacts.contact_id")
    proc = _processor(tmp_path, model)
    proc.scorer.serving = Serving(task=task)
    try:
        out = proc.process(_records(events[:400]), 0)
        proc.commit_published(out)
        opened = [obs for _, obs in proc.book.scan("oo")]
        assert opened and {obs["task"] for obs in opened} == {task.query()}
        assert all(obs["close"] == obs["as_of"] + task.horizon for obs in opened)
    finally:
        proc.store.close()
        proc.book.close()
