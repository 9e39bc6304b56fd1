"""Careers (docs/graph_store.md, "Careers") on a hand-built world, both stores: former stints, the
orders inside them, late orders, moves back, deletes, and the leads an order at a former
employer reaches."""
from __future__ import annotations

from leadpulse.graph_store.career import EMPTY, Career, Stint
from leadpulse.graph_store.options import GraphStoreOptions
from leadpulse.schemas.events import Activity, Company, Contact, Delete, Order
from leadpulse.schemas.timeutil import from_micros
from tests.graph_store.worlds import TIMES

OPTS = GraphStoreOptions(industry_k=2, similar_k=2)


def _at(i: int):
    return from_micros(TIMES[i])


def _world() -> list:
    """p works at A from day 1, moves to B on day 6; A orders on days 2 and 4 (the second
    without a company: its buyer b works at A); p's colleague at B is r."""
    return [
        Company(company_id="A", industry="saas", updated_at=_at(0)),
        Company(company_id="B", industry="bank", updated_at=_at(0)),
        Contact(contact_id="p", company_id="A", updated_at=_at(1), title="ic"),
        Contact(contact_id="b", company_id="A", updated_at=_at(1)),
        Contact(contact_id="r", company_id="B", updated_at=_at(1)),
        Activity(activity_id="a1", contact_id="p", type="page_view", timestamp=_at(2)),
        Order(order_id="o1", contact_id="b", amount=5, timestamp=_at(2), company_id="A"),
        Order(order_id="o2", contact_id="b", amount=7, timestamp=_at(4)),
        Contact(contact_id="p", company_id="B", updated_at=_at(6), title="manager"),
    ]


def test_a_move_makes_a_former_stint_with_its_orders(make_store):
    store = make_store(OPTS)
    store.apply(_world())
    assert store.career("p", TIMES[5]) == EMPTY                # still at A: nothing former yet
    want = Career(TIMES[6], (Stint("A", TIMES[1], TIMES[6], (TIMES[2], TIMES[4])),))
    assert store.career("p", TIMES[6]) == want
    assert store.career("p", TIMES[3]) == EMPTY
    assert store.career("r", TIMES[9]) == EMPTY and store.career("nobody", TIMES[9]) == EMPTY
    g = store.subgraph(["p", "r"], TIMES[9])
    assert g.career(g.node_ids["contact"].index("p")) == want
    assert g.career(g.node_ids["contact"].index("r")) == EMPTY
    snap = store.snapshot(TIMES[9])
    assert dict(zip(snap.node_ids["contact"], snap.all_careers()))["p"] == want


def test_only_orders_as_of_t_inside_the_stint_count(make_store):
    store = make_store(OPTS)
    store.apply(_world() + [Order(order_id="o3", contact_id="b", amount=1, timestamp=_at(8)),      # after p left
                            Order(order_id="o0", contact_id="b", amount=1, timestamp=_at(0), company_id="A")])  # before p
    assert store.career("p", TIMES[9]).former[0].orders == (TIMES[2], TIMES[4])


def test_a_late_order_inside_the_former_stint_reaches_the_mover_and_the_new_colleagues(make_store):
    store = make_store(OPTS)
    store.apply(_world())
    effects = store.apply([Order(order_id="late", contact_id="b", amount=3, timestamp=_at(5))])
    assert store.career("p", TIMES[9]).former[0].orders == (TIMES[2], TIMES[4], TIMES[5])
    assert store.career("p", TIMES[5]) == EMPTY
    leads = store.affected_leads(effects, TIMES[9])
    assert {"p", "r", "b"} <= leads   # r: p's features feed r through B


def test_moving_back_and_a_delete_end_stints(make_store):
    store = make_store(OPTS)
    store.apply(_world() + [Contact(contact_id="p", company_id="A", updated_at=_at(8)),
                            Delete(entity="contact", entity_id="r", deleted_at=_at(3)),
                            Contact(contact_id="r", company_id="B", updated_at=_at(7))])
    assert store.career("p", TIMES[9]) == Career(TIMES[8], (Stint("A", TIMES[1], TIMES[6], (TIMES[2], TIMES[4])),
                                                           Stint("B", TIMES[6], TIMES[8], ())))
    assert store.career("r", TIMES[5]) == EMPTY   # deleted then: absent
    assert store.career("r", TIMES[7]) == Career(TIMES[7], (Stint("B", TIMES[1], TIMES[3], ()),))


def test_a_version_at_its_delete_time_is_never_a_stint(make_store):
    store = make_store(OPTS)
    store.apply([Contact(contact_id="p", company_id="A", updated_at=_at(1)),
                 Contact(contact_id="p", company_id="B", updated_at=_at(3)),
                 Delete(entity="contact", entity_id="p", deleted_at=_at(3)),
                 Contact(contact_id="p", company_id="C", updated_at=_at(5))])
    assert store.career("p", TIMES[6]) == Career(TIMES[5], (Stint("A", TIMES[1], TIMES[3], ()),))
