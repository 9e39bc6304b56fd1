"""Deletes (docs/graph_store.md, "Deletes"), case by case on both stores: what a delete removes
after its time, what it leaves before, arrival order, re-creation, duplicates, affected leads.
The random worlds of the contract, index and affected suites cover deletes too."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from leadpulse.graph_store.options import GraphStoreOptions
from leadpulse.graph_store.rocks import RocksDBGraphStore
from leadpulse.schemas.events import Activity, Company, Contact, Delete, Opportunity, Order
from leadpulse.schemas.timeutil import from_micros
from tests.graph_store.embedding import contact_values
from tests.graph_store.reference import Reference, as_sets
from tests.graph_store.worlds import TIMES

T = TIMES
OPTS = GraphStoreOptions(industry_k=2, similar_k=2)
WORKS_AT = ("contact", "works_at", "company")
STAFF = ("company", "rev_works_at", "contact")
HAD = ("contact", "had_activity", "activity")


def _at(i: int):
    return from_micros(T[i])


def _delete(entity: str, nid: str, i: int) -> Delete:
    return Delete(entity=entity, entity_id=nid, deleted_at=_at(i))


def _account() -> list:
    """Company A (saas) with contacts c1, c2; c1 has two activities (one on opportunity o1) and
    an order; companies P, Q are A's industry peers."""
    return [
        Company(company_id="A", industry="saas", updated_at=_at(0)),
        Company(company_id="P", industry="saas", updated_at=_at(0)),
        Company(company_id="Q", industry="saas", updated_at=_at(0)),
        Contact(contact_id="c1", company_id="A", updated_at=_at(1), title="cto"),
        Contact(contact_id="c2", company_id="A", updated_at=_at(1)),
        Opportunity(opportunity_id="o1", company_id="A", stage="proposal", updated_at=_at(1)),
        Activity(activity_id="a1", contact_id="c1", type="call", timestamp=_at(2), opportunity_id="o1"),
        Activity(activity_id="a2", contact_id="c1", type="page_view", timestamp=_at(3), page="/p"),
        Order(order_id="r1", contact_id="c1", amount=10, timestamp=_at(3)),
    ]


def _same_as_reference(store, events, times=(T[0], T[2], T[4], T[5], T[6], T[8], T[-1])) -> None:
    ref = Reference(events, industry_k=2, similar_k=2)
    for t in times:
        assert as_sets(store.snapshot(t)) == ref.snapshot(t), t


def test_delete_contact_removes_it_its_edges_and_activities_after_its_time(make_store):
    store = make_store(OPTS)
    events = _account() + [_delete("contact", "c1", 5)]
    store.apply(events)
    before = store.node("contact", "c1", T[4])
    assert before["title"] == "cto" and [e[1] for e in before["timeline"]] == ["call", "page_view"]
    assert store.node("contact", "c1", T[5]) is None
    assert store.node_ids("contact", T[5]) == ["c2"] and store.node_ids("contact", T[4]) == ["c1", "c2"]
    assert store.node_ids("activity", T[5]) == [] and store.node("activity", "a1", T[5]) is None
    assert store.node("activity", "a1", T[4])["type"] == "call"
    assert store.neighbors(STAFF, "A", T[5]) == [("c2", T[1])]
    assert store.neighbors(("opportunity", "rev_related_to", "activity"), "o1", T[5]) == []
    assert store.neighbors(("order", "rev_placed", "contact"), "r1", T[5]) == []
    assert store.node("order", "r1", T[5]) is not None          # orders are the account's: they stay
    assert store.company_orders("A", T[5]) == [(T[3], 10.0)]
    assert store.timeline("c1", T[5]) == [] and store.neighbors(WORKS_AT, "c1", T[5]) == []
    g = store.subgraph(["c1", "c2"], T[5])
    assert g.node_ids["contact"] == ["c2"] and list(g.seeds) == [0] and g.node_ids["activity"] == []
    _same_as_reference(store, events)


def test_delete_company_leaves_its_contacts_without_works_at(make_store):
    store = make_store(OPTS)
    events = _account() + [_delete("company", "A", 5)]
    store.apply(events)
    assert store.node("company", "A", T[5]) is None and store.node("company", "A", T[4]) is not None
    assert store.node_ids("contact", T[5]) == ["c1", "c2"]
    assert store.neighbors(WORKS_AT, "c1", T[5]) == [] and store.neighbors(WORKS_AT, "c1", T[4]) == [("A", T[1])]
    assert store.neighbors(("opportunity", "rev_owns", "company"), "o1", T[5]) == []
    peers = ("company", "industry_peer", "company")
    assert sorted(p for p, _ in store.neighbors(peers, "P", T[4])) == ["A", "Q"]
    assert [p for p, _ in store.neighbors(peers, "P", T[5])] == ["Q"]   # A left the ring
    _same_as_reference(store, events)


def test_delete_activity_removes_it_from_the_timeline(make_store):
    store = make_store(OPTS)
    events = _account() + [_delete("activity", "a2", 5)]
    store.apply(events)
    assert store.timeline("c1", T[4]) == [(T[2], "call", None), (T[3], "page_view", "/p")]
    assert store.timeline("c1", T[5]) == [(T[2], "call", None)]
    assert store.neighbors(HAD, "c1", T[5]) == [("a1", T[2])]
    _same_as_reference(store, events)


def test_delete_opportunity(make_store):
    store = make_store(OPTS)
    events = _account() + [_delete("opportunity", "o1", 5)]
    store.apply(events)
    assert store.node_ids("opportunity", T[5]) == [] and store.node_ids("opportunity", T[4]) == ["o1"]
    assert store.neighbors(("activity", "related_to", "opportunity"), "a1", T[5]) == []
    assert store.node("activity", "a1", T[5])["opportunity_id"] == "o1"   # its attributes are its own
    _same_as_reference(store, events)


def test_insert_arriving_after_a_later_delete_stays_deleted(make_store):
    store = make_store(OPTS)
    gone = _delete("contact", "c1", 5)
    (eff,) = store.apply([gone])   # unknown yet: stored, so the older insert below stays deleted
    assert eff.changed and not eff.feature_nodes and not eff.edge_nodes
    assert store.affected_leads([eff], T[6]) == set()
    store.apply([Contact(contact_id="c1", company_id="A", updated_at=_at(2)),
                 Activity(activity_id="a1", contact_id="c1", type="call", timestamp=_at(3)),
                 Activity(activity_id="a2", contact_id="c1", type="call", timestamp=_at(7))])
    assert store.node_ids("contact", T[4]) == ["c1"] and store.node_ids("contact", T[5]) == []
    assert store.node_ids("activity", T[8]) == []   # a2 names a contact deleted by then
    assert store.node_ids("company", T[5]) == ["A"] and store.neighbors(STAFF, "A", T[5]) == []
    _same_as_reference(store, [gone, Contact(contact_id="c1", company_id="A", updated_at=_at(2)),
                               Activity(activity_id="a1", contact_id="c1", type="call", timestamp=_at(3)),
                               Activity(activity_id="a2", contact_id="c1", type="call", timestamp=_at(7))])


def test_a_newer_version_recreates_the_entity(make_store):
    store = make_store(OPTS)
    events = _account() + [_delete("company", "A", 5), _delete("contact", "c1", 5)]
    store.apply(events)
    again = [Company(company_id="A", industry="retail", updated_at=_at(7)),
             Contact(contact_id="c1", company_id="A", updated_at=_at(8), title="ceo")]
    effects = store.apply(again)
    assert store.node("company", "A", T[6]) is None and store.node("company", "A", T[7])["industry"] == "retail"
    assert store.neighbors(STAFF, "A", T[7]) == [("c2", T[1])]   # c2 never moved: works at A again
    assert store.node("contact", "c1", T[7]) is None
    assert store.node("contact", "c1", T[8])["title"] == "ceo"
    assert [e[1] for e in store.node("contact", "c1", T[8])["timeline"]] == ["call", "page_view"]
    assert "c2" in store.affected_leads(effects[:1], T[9])
    _same_as_reference(store, events + again)


def test_duplicate_delete_changes_nothing(make_store):
    store = make_store(OPTS)
    store.apply(_account())
    gone = _delete("contact", "c2", 5)
    (first,) = store.apply([gone])
    snap = as_sets(store.snapshot(T[-1]))
    effects = store.apply([gone, gone])
    assert first.changed and [e.changed for e in effects] == [False, False]
    assert store.affected_leads(effects, T[-1]) == set()
    assert as_sets(store.snapshot(T[-1])) == snap


@pytest.mark.parametrize("delete_first", [False, True])
def test_delete_wins_over_a_version_of_the_same_time(make_store, delete_first):
    store = make_store(OPTS)
    tie = [Contact(contact_id="c1", company_id="A", updated_at=_at(1)),
           Contact(contact_id="c1", company_id="B", updated_at=_at(4)), _delete("contact", "c1", 4)]
    if delete_first:
        tie = [tie[0], tie[2], tie[1]]
    assert all(e.changed for e in store.apply(tie))
    assert store.node("contact", "c1", T[3]) is not None and store.node("contact", "c1", T[4]) is None
    assert store.node_ids("company", T[5]) == ["A", "B"]   # B was named: it exists, as a stub
    assert [e.changed for e in store.apply(tie)] == [False] * 3
    _same_as_reference(store, tie)


@pytest.mark.parametrize("delete_first", [False, True])
def test_a_company_deleted_at_its_version_time_leaves_the_ring(make_store, delete_first):
    store = make_store(OPTS)
    tie = [Company(company_id="co1", industry="saas", updated_at=_at(0)), _delete("company", "co1", 0)]
    events = (tie[::-1] if delete_first else tie) + [Company(company_id="co0", industry="saas", updated_at=_at(1))]
    store.apply(events)
    assert store.neighbors(("company", "industry_peer", "company"), "co0", T[2]) == []
    _same_as_reference(store, events)
    store.drop_partition(0)   # rebuilt in load mode
    _same_as_reference(store, events)


def test_affected_leads_of_a_contact_delete_are_itself_and_its_colleagues(make_store):
    store = make_store(OPTS)
    history = _account() + [Contact(contact_id="c3", company_id="P", updated_at=_at(1))]
    store.apply(history)
    batch = [_delete("contact", "c1", 5)]
    effects = store.apply(batch)
    for t in (T[5], T[8]):
        before = contact_values(*Reference(history, 2, 2).snapshot(t))
        after = contact_values(*Reference(history + batch, 2, 2).snapshot(t))
        changed = {c for c in set(before) | set(after) if before.get(c) != after.get(c)}
        assert changed == {"c1", "c2"} == store.affected_leads(effects, t)
    assert store.affected_leads(effects, T[4]) == set()   # nothing changed before its time


def test_delete_event_contract():
    d = Delete(entity="contact", entity_id="c1", deleted_at="2026-01-31T13:00:00+01:00")
    assert d.kind == "delete" and d.entity_id == "c1" and d.event_time == from_micros(1_769_860_800_000_000)
    for bad in ({"entity": "order", "entity_id": "r1", "deleted_at": "2026-01-31T12:00:00Z"},
                {"entity": "contact", "entity_id": "", "deleted_at": "2026-01-31T12:00:00Z"},
                {"entity": "contact", "entity_id": "c1", "deleted_at": "2026-01-31T12:00:00"}):
        with pytest.raises(ValidationError):
            Delete(**bad)


def test_reopened_store_keeps_deletes_and_their_order(tmp_path):
    events = _account() + [_delete("contact", "c1", 5), _delete("company", "A", 6),
                           Contact(contact_id="c1", company_id="A", updated_at=_at(5)),
                           Company(company_id="A", updated_at=_at(8))]
    store = RocksDBGraphStore(tmp_path, OPTS)
    store.apply(events, {("crm.all", 0): len(events)})
    store.close()
    store = RocksDBGraphStore(tmp_path, OPTS)
    _same_as_reference(store, events)
    assert store.positions() == {("crm.all", 0): len(events)}
    store.close()
