"""The worker end to end: real embedded broker, real RocksDB, real torch, real processes.

Invariants (docs/architecture.md#invariants): incremental equals full (2), exactly-once effect across
SIGKILLs and a deleted data directory (3), bad input contained (5), scores name the model
version that produced them across a hot swap (6).
"""
from __future__ import annotations

import base64
import json
import random
import threading
import time

import pytest
from kafka import KafkaProducer

from tests.stream.tests_support import (
    assert_published_equal_full,
    book_matches_reference,
    caught_up,
    consume,
    graph_signature,
    last_scores,
    open_state,
    publish,
    settle,
    wait_for,
)

pytestmark = pytest.mark.slow

BAD = [
    ("crm.activities", b"\xff\xfe not utf-8", "encoding"),
    ("crm.activities", b"{not json", "json"),
    ("crm.activities", b'["a", "list"]', "shape"),
    ("crm.activities", json.dumps({"activity_id": "bad1", "type": "page_view",
                                   "timestamp": "2026-01-05T00:00:00Z"}).encode(), "contact_id"),
    ("crm.activities", json.dumps({"activity_id": "bad2", "contact_id": 17, "type": "call",
                                   "timestamp": "2026-01-05T00:00:00Z"}).encode(), "contact_id"),
    ("crm.activities", json.dumps({"activity_id": "bad3", "contact_id": "ct_000001", "type": "call",
                                   "timestamp": "2026-01-05T00:00:00Z", "duration_s": 1e300}).encode(),
     "duration_s"),
    ("crm.companies", json.dumps({"company_id": "co_bad", "updated_at": 1767225600}).encode(), "updated_at"),
    ("crm.orders", json.dumps({"order_id": "o1", "contact_id": "ct_000001", "amount": "lots",
                               "timestamp": "2026-01-05T00:00:00Z"}).encode(), "amount"),
    ("crm.contacts", b"x" * 1_020_000, "size"),  # over our 1 MB limit, under Kafka's default
]
#: valid but references an entity that never arrives: held, never dead-lettered
UNKNOWN = ("crm.activities", json.dumps({"activity_id": "orphan1", "contact_id": "ct_never",
                                         "type": "page_view", "timestamp": "2026-01-06T00:00:00Z"}).encode())


def test_incremental_equals_full_and_bad_input_is_contained(worker_factory, tiny_world, trained_registry):
    from leadpulse.model.registry import ModelRegistry

    run = worker_factory("w1").start()
    producer = KafkaProducer(bootstrap_servers=run.bootstrap, max_request_size=1_100_000)
    for topic, raw, _ in BAD + [UNKNOWN + ("",)]:
        producer.send(run.topics[topic], key=b"k", value=raw)
    producer.flush()
    producer.close()
    sent = publish(run, tiny_world) + len(BAD) + 1
    settle(run, sent)

    assert run.metric("leadpulse_events_rejected_total") == len(BAD)
    letters = [json.loads(r.value) for r in consume(run, "crm.deadletter", len(BAD))]
    assert len(letters) == len(BAD)
    for topic, raw, field in BAD:  # raw kept (an oversized one truncated, and the error says so)
        match = [d for d in letters if d["source_topic"] == run.topics[topic]
                 and raw.startswith(base64.b64decode(d["raw"])) and field in d["error"]]
        assert len(match) == 1, f"{field}: {[d['error'][:200] for d in letters]}"
        assert match[0]["offset"] >= 0 and (len(raw) < 600_000 or "truncated" in match[0]["error"])

    scores = consume(run, "leads.scores", 1, timeout=30)
    published = last_scores(consume(run, "leads.scores", len(scores), timeout=30))
    run.kill()

    from leadpulse.schemas.tables import read_tables
    events, _ = read_tables(tiny_world)
    contacts = {e.contact_id for e in events if e.kind == "contact"}
    assert contacts <= set(published), "every contact of the world got a score"
    assert "ct_never" not in published

    store, book = open_state(run)
    try:
        model = ModelRegistry(trained_registry[0]).load(trained_registry[1][0])
        for cid, value in published.items():
            entry = book.get("s", cid)
            assert entry["score"] == pytest.approx(value["score"], abs=1e-12)
            assert value["model_version"] == trained_registry[1][0]
        assert_published_equal_full(store, model, published)
    finally:
        store.close()
        book.close()


@pytest.fixture(params=["lgbm_agg", "hybrid"])
def lgbm_registry(request, tmp_path, tiny_world):
    """A fresh registry whose champion is ``lgbm_agg`` (or the hybrid of it and a GNN) fitted on
    the tiny world's split (the split ``trained_registry`` trains its GNNs on), evaluated on its
    test window and promoted by hand."""
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.baselines import LGBMAggModel, LGBMOptions
    from leadpulse.model.examples import build_split, data_span
    from leadpulse.model.pipeline import evaluate_on
    from leadpulse.model.registry import ModelRegistry
    from leadpulse.model.task import DEFAULT_TASK, parse_task
    from leadpulse.schemas.tables import read_tables

    events, _ = read_tables(tiny_world)
    store = MemoryGraphStore()
    store.apply(events)
    task = parse_task(DEFAULT_TASK)
    split = build_split(store, task, *data_span(events), cache_graphs=True)
    model = LGBMAggModel(LGBMOptions(min_data_in_leaf=5)).fit(split.train, split.valid, seed=0)
    assert model.constant is None
    if request.param == "hybrid":
        from leadpulse.model.hybrid import HybridModel
        from leadpulse.model.train import TrainOptions, train_gnn
        gnn = train_gnn(split.train, split.valid, TrainOptions.of(epochs=8))
        model = HybridModel(gnn=gnn, agg=model).fit(split.train, split.valid, seed=0)
    registry = ModelRegistry(tmp_path / "models")
    window = [int(split.plan.test[0]), int(split.plan.test[-1]) + task.horizon]
    version = registry.register(model, task.query(), [split.plan.train[0], split.plan.train[-1]],
                                metrics=[{"window": window, "metrics": evaluate_on(model, split.test)}])
    registry.promote(version, "test: a LightGBM champion")
    return registry, version


def test_a_lightgbm_or_hybrid_champion_is_served_end_to_end(worker_factory, tiny_world, lgbm_registry):
    """lgbm_agg reads a lead's 2-hop neighbourhood only, so the worker's incremental scores equal
    the full recompute as for the GNN; its tiers, tier card and SHAP factors come with them. The
    hybrid (the GNN and lgbm_agg stacked) likewise, explained by both parts."""
    from leadpulse.model.calibration import card_of
    from tests.stream.test_models_cli import models

    registry, version = lgbm_registry
    shown = json.loads(models("show", "champion", "--json", root=registry.root).stdout)
    model = registry.load(version)
    assert shown["artifact"]["version"] == version and shown["tiers"] == card_of(model) == model.tier_card

    run = worker_factory("w1", model_dir=registry.root).start()
    health = json.loads(run.get("/healthz"))
    family = model.name
    assert health["model_family"] == family and health["model_version"] == version
    assert health["tiers"] == model.tier_card and health["tiers"]["leads"] > 0
    settle(run, publish(run, tiny_world))
    total = int(run.metric("leadpulse_scores_published_total"))
    published = last_scores(consume(run, "leads.scores", total))
    run.kill()

    assert published and all(v["model_version"] == version for v in published.values())
    assert version.startswith(f"{family}-")
    # each score's tier by the model's cut points, and the cuts do split the leads
    assert all(model.tiers([v["score"]]) == [v["tier"]] for v in published.values())
    assert len({v["tier"] for v in published.values()}) > 1
    explained = [v for v in published.values() if v["positive_factors"] or v["negative_factors"]]
    assert any(v["positive_factors"] for v in explained) and any(v["negative_factors"] for v in explained)
    for v in explained:  # signed lists, as the GNN's
        assert all(f["contribution"] > 0 for f in v["positive_factors"])
        assert all(f["contribution"] < 0 for f in v["negative_factors"])

    store, book = open_state(run)
    try:
        assert_published_equal_full(store, model, published)
    finally:
        store.close()
        book.close()


def test_crash_resume_and_rebuild_match_the_reference(worker_factory, tiny_world, trained_registry):
    from leadpulse.graph_store.memory import MemoryGraphStore
    from leadpulse.model.registry import ModelRegistry
    from leadpulse.schemas.tables import read_tables

    events, _ = read_tables(tiny_world)
    reference = MemoryGraphStore()
    reference.apply(events)
    end = max(int(e.event_time.timestamp() * 1e6) for e in events) + 1

    rng = random.Random(7)
    run = worker_factory("w1").start()
    publisher = threading.Thread(target=publish, args=(run, tiny_world, 150.0))
    publisher.start()
    for _ in range(3):  # SIGKILL at random moments mid-stream, restart each time
        time.sleep(rng.uniform(1.0, 3.0))
        run.kill()
        run.start()
    publisher.join()
    settle(run, 1)
    wait_for(lambda: caught_up(run, len(events)), 240, "all events applied\n" + run.log())
    settle(run, 1)
    run.kill()

    def check() -> None:
        store, book = open_state(run)
        try:
            assert graph_signature(store, end) == graph_signature(reference, end)
        finally:
            store.close()
            book.close()
        book_matches_reference(run, reference, ModelRegistry(trained_registry[0]).load(trained_registry[1][0]))

    check()
    # a deleted data directory rebuilds from the topics with the same result
    import shutil
    shutil.rmtree(run.data_dir / "worker")
    run.start()
    wait_for(lambda: caught_up(run, len(events)), 240, "rebuild applied every event\n" + run.log())
    settle(run, 1)
    run.kill()
    check()


def test_model_swap_mid_stream_names_the_new_version(worker_factory, tiny_world, trained_registry):
    from leadpulse.model.registry import ModelRegistry

    root, (v1, v2) = trained_registry
    registry = ModelRegistry(root)
    registry.set_champion(v1, "test")
    try:
        run = worker_factory("w1").start()
        sent = publish(run, tiny_world)
        settle(run, sent)
        registry.set_champion(v2, "test: swap mid-stream")
        wait_for(lambda: json.loads(run.get("/healthz") or "{}").get("model_version") == v2, 60,
                 "hot swap\n" + run.log())
        settle(run, sent)
        total = int(run.metric("leadpulse_scores_published_total"))
        published = last_scores(consume(run, "leads.scores", total))
        assert {v["model_version"] for v in published.values()} == {v2}
        assert run.metric("leadpulse_scores_published_total", ) > 0
    finally:
        registry.set_champion(v1, "test: restore")


def test_periodic_retrain_runs_beside_the_worker_and_announces(worker_factory, tiny_world, trained_registry,
                                                               tmp_path):
    import shutil
    models = tmp_path / "models"  # a promotion here must not change the other tests' champion
    shutil.copytree(trained_registry[0], models)
    run = worker_factory("w1", LEADPULSE_RETRAIN_SECONDS="8", LEADPULSE_RETRAIN_EPOCHS="3",
                         LEADPULSE_MODEL_DIR=str(models)).start()
    sent = publish(run, tiny_world)
    settle(run, sent)
    wait_for(lambda: run.metric("leadpulse_retrain_runs_total") >= 1, 240, "a periodic retrain\n" + run.log())
    ok = run.get("/metrics") or ""
    assert 'leadpulse_retrain_runs_total{outcome="ok"}' in ok, (run.data_dir / "worker" / "retrain.log").read_text()
    update = json.loads(consume(run, "models.updates", 1)[0].value)
    # every candidate family was fitted; the update is about the one chosen on validation, and names it
    from leadpulse.model.registry import FAMILIES
    assert update["family"] in FAMILIES and update["model_version"].startswith(f"{update['family']}-v")
    assert isinstance(update["promoted"], bool)
    retrain_log = (run.data_dir / "worker" / "retrain.log").read_text()
    assert all(f"candidate {f}-v" in retrain_log for f in FAMILIES if f != update["family"]), retrain_log
    assert update["reason"]
