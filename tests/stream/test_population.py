"""The account stage scores only the leads of its model's population (real RocksDB, real torch,
no Kafka): a contact outside is never published, a published lead that leaves (it converted, or
went quiet) gets one final record with ``status`` "left_population" and nothing after it."""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pytest

from leadpulse.schemas.events import Activity, Company, Contact, Order
from leadpulse.schemas.timeutil import to_micros

QUERY = ("PREDICT COUNT(orders.*, 0, 90, DAYS) > 0 FOR EACH contacts.contact_id "
         "WHERE COUNT(orders.*, -3650, 0, DAYS) = 0 AND COUNT(activities.*, -30, 0, DAYS) > 0")
T = datetime(2026, 3, 2, tzinfo=timezone.utc)
_TOPIC = {"company": "crm.companies", "contact": "crm.contacts", "activity": "crm.activities", "order": "crm.orders"}


def _day(d: float) -> datetime:
    return T + timedelta(days=d)


def _activity(aid: str, cid: str, day: float) -> Activity:
    return Activity(activity_id=aid, contact_id=cid, type="demo_request", timestamp=_day(day), page="pricing")


@pytest.fixture
def registry_with_population(tmp_path, trained_registry):
    """A copy of the tiny registry with the champion's model registered again for ``QUERY``."""
    from leadpulse.model.registry import ModelRegistry
    root = tmp_path / "models"
    shutil.copytree(trained_registry[0], root)
    registry = ModelRegistry(root)
    model = registry.load("champion")
    version = registry.register(model, QUERY, [0, 0], version="gnn-open-leads")
    return root, version


@pytest.fixture
def processor(tmp_path, registry_with_population):
    from leadpulse.graph_store.rocks import RocksDBGraphStore
    from leadpulse.stream.accounts import AccountProcessor
    from leadpulse.stream.config import Settings
    from leadpulse.stream.options import ScoringOptions
    from leadpulse.stream.state import KVState
    from leadpulse.stream.worker import load_scorer
    root, version = registry_with_population
    scorer = load_scorer(Settings.from_env({"LEADPULSE_MODEL_DIR": str(root), "LEADPULSE_DATA_DIR": str(tmp_path)}),
                         version)
    proc = AccountProcessor(RocksDBGraphStore(tmp_path / "graph"), KVState(tmp_path / "scores"), scorer,
                            ScoringOptions(epsilon=0.0, decay_min_age=3600.0))
    yield proc
    proc.store.close()
    proc.book.close()


def _send(proc, events, offset: int) -> list:
    from leadpulse.stream.ingest import RawRecord
    from leadpulse.stream.router import Forward
    records = [RawRecord("acc", 0, offset + i, None, Forward("acct", _TOPIC[e.kind], e, None).wire())
               for i, e in enumerate(events)]
    out = proc.process(records, 0)
    proc.commit_published(out)
    return out.scores


def test_the_worker_applies_the_population_its_model_was_trained_for(processor):
    from leadpulse.model.task import parse_task
    serving = processor.scorer.serving
    assert serving.task == parse_task(QUERY) and parse_task(serving.query) == serving.task
    # registered again without held-out metrics, and neither the champion nor pinned
    assert (serving.family, serving.auroc, serving.reason) == ("gnn", None, None)


def test_leads_outside_are_never_published_and_leavers_get_one_final_record(processor):
    task = processor.scorer.serving.task
    # "quiet" works at an account of its own (an industry of its own, no tech: no peers), so only
    # the decay sweep rescores it once the watermark moves on
    history = [Company(company_id="co", updated_at=_day(-400), industry="software", employees=80),
               Company(company_id="co-quiet", updated_at=_day(-400), industry="zz-none", tech_stack=[])]
    history += [Contact(contact_id=c, company_id="co-quiet" if c == "quiet" else "co", updated_at=_day(-200),
                        seniority="vp", department="it") for c in ("lead", "buyer", "quiet", "cold")]
    history += [Order(order_id="old-order", contact_id="buyer", amount=900, timestamp=_day(-120)),  # a customer
                _activity("q1", "quiet", -40),    # active 40 days ago: a lead then, gone quiet since
                _activity("c1", "cold", -300)]    # cold for most of a year: never a lead
    published = []
    offset = 0
    for batch in (history[:6], history[6:7], history[7:8], history[8:],
                  [_activity("l1", "lead", -5), _activity("b1", "buyer", -5)],
                  [_activity("l2", "lead", -1), _activity("b2", "buyer", -1)]):
        published += _send(processor, batch, offset)
        offset += len(batch)
    by_lead: dict[str, list] = {}
    for s in published:
        by_lead.setdefault(s.contact_id, []).append(s)
    # every record so far is an active score of a lead in the population as of its time
    assert published and {s.status for s in published} == {"active"}
    for s in published:
        assert task.in_population(processor.store, [s.contact_id], to_micros(s.as_of)).tolist() == [True]
    assert "buyer" not in by_lead and "cold" not in by_lead  # touched by every batch (colleagues), never leads
    assert "lead" in by_lead and "quiet" in by_lead
    assert processor.last_score("buyer") is None and processor.last_score("cold") is None

    # the lead converts: one final record, as of the order, and its score leaves the book
    final = _send(processor, [Order(order_id="new-order", contact_id="lead", amount=5000, timestamp=_day(0))], offset)
    mine = [s for s in final if s.contact_id == "lead"]
    assert len(mine) == 1 and mine[0].status == "left_population"
    assert mine[0].as_of == _day(0) and mine[0].cause == "crm.orders:new-order"
    last = by_lead["lead"][-1]
    assert (mine[0].score, mine[0].tier, mine[0].previous_score, mine[0].delta) == (last.score, last.tier, last.score, 0.0)
    assert processor.last_score("lead") is None
    assert processor.withdrawn("lead") == {"contact_id": "lead", "status": "left_population"}
    # nothing more about it: its next activity is scored by no one
    later = _send(processor, [_activity("l3", "lead", 2), _activity("b3", "buyer", 2)], offset + 1)
    assert not [s for s in later if s.contact_id in ("lead", "buyer", "cold")]

    # "quiet" left by time alone (no activity in 30 days): the decay sweep finds it, once
    swept = processor.sweep(1000)
    processor.commit_published(swept)
    gone = [s for s in swept.scores if s.contact_id == "quiet"]
    assert len(gone) == 1 and gone[0].status == "left_population" and gone[0].cause == "decay"
    assert processor.last_score("quiet") is None
    again = processor.sweep(1000)
    assert not [s for s in again.scores if s.contact_id == "quiet"]
    # the wire form carries the status (a new field: older consumers ignore it)
    assert '"status":"left_population"' in gone[0].model_dump_json()
