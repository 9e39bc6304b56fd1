"""The population of a task (``FOR EACH contacts.contact_id WHERE ...``): parsing, and membership
as of t checked against a brute-force loop over the raw events (invariant 1), as feature stores
test their point-in-time joins."""
from __future__ import annotations

import doctest
from datetime import datetime, timezone

import numpy as np
import pytest

import leadpulse.model.population
from leadpulse.model.examples import build_examples, contacts_at, population_at
from leadpulse.model.population import COUNT_TABLES, CountTerm, FieldTerm, as_text
from leadpulse.model.task import Task, TaskError, parse_task
from leadpulse.schemas.events import Activity, Company, Contact, Opportunity, Order
from leadpulse.schemas.timeutil import MICROS_PER_DAY as DAY
from leadpulse.schemas.timeutil import from_micros, to_micros

memory = pytest.importorskip("leadpulse.graph_store.memory")

HEAD = "PREDICT COUNT(orders.*, 0, 90, DAYS) > 0 FOR EACH contacts.contact_id"
OPEN_LEADS = HEAD + " WHERE COUNT(orders.*, -3650, 0, DAYS) = 0 AND COUNT(activities.*, -30, 0, DAYS) > 0"


def test_doctests():
    result = doctest.testmod(leadpulse.model.population)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ parsing
def test_the_open_leads_query():
    task = parse_task(OPEN_LEADS)
    assert (task.table, task.start_days, task.end_days, task.filter) == ("orders", 0, 90, None)
    assert task.population == (CountTerm("orders", -3650, 0, "=", 0), CountTerm("activities", -30, 0, ">", 0))
    assert task.query() == OPEN_LEADS
    assert parse_task(task.query()) == task
    assert task.population_hops == 1
    assert parse_task(HEAD).population == ()


def test_every_table_every_operator_and_fields_round_trip():
    terms = [CountTerm(table, -40, -5 if i % 2 else 0, op, i) for i, (table, op) in
             enumerate(zip(list(COUNT_TABLES) * 2, ["=", "!=", "<", "<=", ">", ">=", "=", "!=", "<", "<="]))]
    terms.append(FieldTerm("source", "it's organic"))
    task = Task("opportunities", 0, 60, 0, ("stage", "closed_won"), "contacts.contact_id", tuple(terms))
    assert parse_task(task.query()) == task
    # the target filter may come anywhere among the terms; the canonical text puts it first
    mixed = parse_task("predict count(opportunities.*, 0, 60, days) > 0 for each contacts.contact_id where "
                       "contacts.Source = 'it''s organic' and opportunities.stage = 'closed_won' and "
                       "count(Orders.*, -10, 0, day) >= 1;")
    assert mixed.filter == ("stage", "closed_won")
    assert mixed.population == (FieldTerm("source", "it's organic"), CountTerm("orders", -10, 0, ">=", 1))
    assert mixed.query().index("opportunities.stage") < mixed.query().index("contacts.source")
    assert task.population_hops == 2


def _where(terms: str) -> str:
    return f"{HEAD} WHERE {terms}"


@pytest.mark.parametrize("query, term, fragment", [
    (_where("COUNT(activities.*, -30, 5, DAYS) > 0"), "COUNT(activities.*, -30, 5, DAYS) > 0", "start < end <= 0"),
    (_where("COUNT(activities.*, 0, 0, DAYS) > 0"), "COUNT(activities.*, 0, 0, DAYS) > 0", "window start"),
    (_where("COUNT(activities.*, -10, -20, DAYS) > 0"), "COUNT(activities.*, -10, -20, DAYS) > 0",
     "greater than its start"),
    (_where("COUNT(activities.*, -9999, 0, DAYS) > 0"), "COUNT(activities.*, -9999, 0, DAYS) > 0", "-3650"),
    (_where("COUNT(leads.*, -30, 0, DAYS) > 0"), "COUNT(leads.*, -30, 0, DAYS) > 0", "companies, contacts"),
    (_where("COUNT(orders.*, -30, 0, HOURS) > 0"), "COUNT(orders.*, -30, 0, HOURS) > 0", "DAYS"),
    (_where("COUNT(orders.*, -30, 0, DAYS) 0"), "COUNT(orders.*, -30, 0, DAYS) 0", "comparison"),
    (_where("COUNT(orders.*, -30, 0, DAYS) > -1"), "COUNT(orders.*, -30, 0, DAYS) > -1", "non-negative"),
    (_where("COUNT(orders.*, -30, 0, DAYS) = 0 AND companies.industry = 'x'"), "companies.industry = 'x'",
     "neither the target table"),
    (_where("contacts.seniority > 'vp'"), "contacts.seniority > 'vp'", "'='"),
    (_where("contacts.seniority = vp"), "contacts.seniority = vp", "quoted value"),
    (_where("contacts.contact_id = 'c1'"), "contacts.contact_id = 'c1'", "entity"),
    (_where("orders.colour = 'red'"), "orders.colour = 'red'", "unknown column"),
    (_where("orders.company_id = 'a' AND orders.company_id = 'b'"), "orders.company_id = 'b'", "only one filter"),
    (_where("COUNT(orders.*, -30, 0, DAYS) = 0 AND"), "(nothing)", "expected COUNT("),
])
def test_a_bad_where_term_is_named(query, term, fragment):
    with pytest.raises(TaskError) as info:
        parse_task(query)
    message = str(info.value)
    assert f"bad WHERE term {term!r}" in message and fragment in message, message
    assert info.value.pointer().splitlines()[1].index("^") == info.value.position
    assert query.find(term) <= info.value.position or term == "(nothing)"


def test_after_the_terms_only_and_or_the_end():
    with pytest.raises(TaskError, match="expected AND or end of query, got 'OR'"):
        parse_task(_where("COUNT(orders.*, -30, 0, DAYS) = 0 OR contacts.source = 'x'"))


# ------------------------------------------------------------------ brute force
def _first_seen(events, t: int) -> dict[tuple[str, str], int]:
    """(kind, id) -> the first time the entity exists (its own record or a reference), <= t."""
    seen: dict[tuple[str, str], int] = {}

    def note(kind: str, node_id, when: int) -> None:
        if node_id is not None and when < seen.get((kind, node_id), when + 1):
            seen[(kind, node_id)] = when
    for e in events:
        when = to_micros(e.event_time)
        if when > t:
            continue
        note(e.kind, e.entity_id, when)
        if isinstance(e, (Contact, Opportunity)):
            note("company", e.company_id, when)
        if isinstance(e, Activity):
            note("contact", e.contact_id, when)
            note("opportunity", e.opportunity_id, when)
        if isinstance(e, Order):
            note("contact", e.contact_id, when)
            note("company", e.company_id, when)
    return seen


def _latest(events, cls, t: int) -> dict:
    """Per entity id, its version valid at t (greatest time <= t; the first delivered on a tie)."""
    out: dict = {}
    for e in sorted(events, key=lambda e: e.event_time):
        if isinstance(e, cls) and to_micros(e.event_time) <= t and (
                e.entity_id not in out or to_micros(out[e.entity_id].event_time) < to_micros(e.event_time)):
            out[e.entity_id] = e
    return out


def brute_force(task: Task, events, contact_ids, t: int) -> list[bool]:
    """Population membership by a naive loop over every raw event, one contact at a time."""
    contacts = _latest(events, Contact, t)
    activities = _latest(events, Activity, t)
    orders = _latest(events, Order, t)
    opps = _latest(events, Opportunity, t)
    first = _first_seen(events, t)
    out = []
    for cid in contact_ids:
        record = contacts.get(cid)  # None for a stub (named by an activity or order before its record)
        company = record.company_id if record is not None else None
        ok = ("contact", cid) in first
        for term in task.population:
            if not ok:
                break
            if isinstance(term, FieldTerm):
                got = {**record.__dict__, **(record.model_extra or {})}.get(term.field) if record else None
                ok = got is not None and as_text(got) == term.value
                continue
            lo, hi = t + term.start_days * DAY, t + term.end_days * DAY
            n = 0
            if term.table == "activities":
                n = sum(1 for a in activities.values() if a.contact_id == cid and lo < to_micros(a.timestamp) <= hi)
            elif term.table == "orders":
                n = sum(1 for o in orders.values() if o.contact_id == cid and lo < to_micros(o.timestamp) <= hi)
            elif term.table == "contacts":
                n = int(lo < first.get(("contact", cid), hi + 1) <= hi)
            elif term.table == "companies":
                n = int(lo < first.get(("company", company), hi + 1) <= hi)
            else:
                for opp in opps.values():
                    if (opp.company_id == company and opp.contact_id in (None, cid)
                            and lo < first[("opportunity", opp.opportunity_id)] <= hi):
                        n += 1
            ok = bool(term.holds(n))
        out.append(ok)
    return out


def _store(events):
    store = memory.MemoryGraphStore()
    store.apply(sorted(events, key=lambda e: e.event_time))
    return store


T0 = to_micros(datetime(2026, 3, 1, tzinfo=timezone.utc))


def _at(days: float):
    return from_micros(T0 + round(days * DAY))


def test_window_edges_exactly_at_t_and_at_its_start():
    """``(t + start, t + end]``: an event at exactly t counts for end = 0, one at exactly
    t + start does not, one at exactly t + end (end < 0) does, one just after t is never seen."""
    events = [Company(company_id="co", updated_at=_at(-100))]
    events += [Contact(contact_id=c, company_id="co", updated_at=_at(-90), seniority="vp") for c in "abcdefg"]
    events += [Activity(activity_id="a1", contact_id="a", type="call", timestamp=_at(0)),            # at t
               Activity(activity_id="b1", contact_id="b", type="call", timestamp=_at(-30)),          # at t + start
               Activity(activity_id="c1", contact_id="c", type="call", timestamp=_at(-29.99999)),    # just inside
               Activity(activity_id="d1", contact_id="d", type="call", timestamp=_at(0.00001)),      # just after t
               Activity(activity_id="e1", contact_id="e", type="call", timestamp=_at(-10)),          # at t + end
               Order(order_id="o1", contact_id="f", amount=5, timestamp=_at(0)),                     # converted at t
               Order(order_id="o2", contact_id="g", amount=5, timestamp=_at(0.00001))]               # converts after t
    store = _store(events)
    ids = list("abcdefg")
    cases = {
        "COUNT(activities.*, -30, 0, DAYS) > 0": [True, False, True, False, True, False, False],
        "COUNT(activities.*, -30, -10, DAYS) > 0": [False, False, True, False, True, False, False],
        "COUNT(orders.*, -3650, 0, DAYS) = 0": [True, True, True, True, True, False, True],
        "COUNT(activities.*, -30, 0, DAYS) <= 0": [False, True, False, True, False, True, True],
    }
    for where, expected in cases.items():
        task = parse_task(_where(where))
        assert task.in_population(store, ids, T0).tolist() == expected, where
        assert brute_force(task, events, ids, T0) == expected, where
    # a second later the order at t is just as much in the past, and the one after t is seen
    later = parse_task(_where("COUNT(orders.*, -3650, 0, DAYS) = 0"))
    assert later.in_population(store, ["f", "g"], T0 + DAY).tolist() == [False, False]


def test_entities_count_when_they_first_appear():
    events = [Company(company_id="old", updated_at=_at(-400)), Company(company_id="new", updated_at=_at(-5)),
              Contact(contact_id="a", company_id="old", updated_at=_at(-300)),
              Contact(contact_id="a", company_id="old", updated_at=_at(-2), title="later version"),
              Contact(contact_id="b", company_id="new", updated_at=_at(-5)),
              # c is named by an activity before its own record: it exists from the activity on
              Activity(activity_id="x", contact_id="c", type="call", timestamp=_at(-50)),
              Contact(contact_id="c", company_id="new", updated_at=_at(-4)),
              Opportunity(opportunity_id="p1", company_id="old", stage="prospecting", updated_at=_at(-20)),
              Opportunity(opportunity_id="p1", company_id="old", stage="proposal", updated_at=_at(-1)),
              Opportunity(opportunity_id="p2", company_id="old", stage="prospecting", updated_at=_at(-3),
                          contact_id="someone_else"),
              # p3 names c before c's record, and is the first to name company "new" (a stub from then on)
              Opportunity(opportunity_id="p3", company_id="new", stage="prospecting", updated_at=_at(-10),
                          contact_id="c")]
    store = _store(events)
    ids = ["a", "b", "c"]
    cases = {
        "COUNT(contacts.*, -30, 0, DAYS) > 0": [False, True, False],      # versions do not count, c from day -50
        "COUNT(contacts.*, -60, 0, DAYS) > 0": [False, True, True],
        "COUNT(companies.*, -30, 0, DAYS) = 1": [False, True, True],
        "COUNT(companies.*, -7, 0, DAYS) = 1": [False, False, False],      # "new" exists since p3 (day -10)
        "COUNT(opportunities.*, -30, 0, DAYS) = 1": [True, False, True],   # p1 (p2 names another), p3
        "COUNT(opportunities.*, -15, -5, DAYS) >= 1": [False, False, True],  # p3 names c, not b
        "contacts.title = 'later version'": [True, False, False],
    }
    for where, expected in cases.items():
        task = parse_task(_where(where))
        assert task.in_population(store, ids, T0).tolist() == expected, where
        assert brute_force(task, events, ids, T0) == expected, where
        assert task.in_population(store, ids, T0 - 3 * DAY).tolist() == brute_force(task, events, ids, T0 - 3 * DAY)


@pytest.fixture(scope="module")
def tiny_world():
    from leadpulse.simulator import simulate
    return simulate("tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_store(tiny_world):
    return _store(tiny_world.all_events())


TERMS = ["COUNT(activities.*, -30, 0, DAYS) > 0", "COUNT(activities.*, -14, -7, DAYS) >= 2",
         "COUNT(orders.*, -3650, 0, DAYS) = 0", "COUNT(orders.*, -30, 0, DAYS) != 0",
         "COUNT(companies.*, -120, 0, DAYS) > 0", "COUNT(contacts.*, -20, 0, DAYS) < 1",
         "COUNT(opportunities.*, -45, 0, DAYS) > 0", "COUNT(opportunities.*, -90, -10, DAYS) = 0",
         "contacts.seniority = 'vp'",
         "COUNT(orders.*, -3650, 0, DAYS) = 0 AND COUNT(activities.*, -30, 0, DAYS) > 0"]


@pytest.mark.parametrize("where", TERMS)
def test_membership_equals_the_brute_force_on_a_simulated_world(where, tiny_world, tiny_store):
    task = parse_task(_where(where))
    events = tiny_world.all_events()
    start = to_micros(tiny_world.start)
    answers = []
    for day in (10, 31, 45.5, 60, 89):
        t = start + int(day * DAY)
        ids = contacts_at(tiny_store, t)
        expected = brute_force(task, events, ids, t)
        assert task.in_population(tiny_store, ids, t).tolist() == expected, day
        # the same from a snapshot, and from the subgraph the stream reads for a few leads
        assert task.in_population(tiny_store, ids, t, graph=tiny_store.snapshot(t)).tolist() == expected
        few = ids[::7]
        sub = tiny_store.subgraph(few, t, hops=2)
        assert task.in_population(tiny_store, few, t, graph=sub).tolist() == expected[::7]
        answers += expected
    if where != "COUNT(orders.*, -30, 0, DAYS) != 0" and "-14, -7" not in where:  # rare in a tiny world
        assert any(answers) and not all(answers), where


def test_the_future_does_not_change_who_is_a_lead(tiny_world, tiny_store):
    """Invariant 1: events after t (an order, activities, a new opportunity) change no membership at t."""
    task = parse_task(OPEN_LEADS + " AND COUNT(opportunities.*, -90, 0, DAYS) = 0")
    t = to_micros(tiny_world.start) + 50 * DAY
    ids = contacts_at(tiny_store, t)
    before = task.in_population(tiny_store, ids, t)
    inside = [c for c, ok in zip(ids, before) if ok]
    assert inside
    company = tiny_store.node("contact", inside[0], t)["company_id"]
    burst = [Order(order_id=f"future-order-{c}", contact_id=c, amount=1e6, timestamp=from_micros(t + 1)) for c in inside]
    burst += [Activity(activity_id=f"future-{c}", contact_id=c, type="demo_request", timestamp=from_micros(t + 1))
              for c in ids]
    burst += [Opportunity(opportunity_id="future-opp", company_id=company, stage="prospecting",
                          updated_at=from_micros(t + 1))]
    after = _store(tiny_world.all_events() + burst)
    np.testing.assert_array_equal(task.in_population(after, ids, t), before)
    assert not task.in_population(after, inside, t + 1).any()  # one micro later they all converted


def test_examples_are_the_leads_of_each_cutoff(tiny_world, tiny_store):
    task = parse_task(OPEN_LEADS)
    start = to_micros(tiny_world.start)
    cutoffs = [start + d * DAY for d in (20, 30, 40)]
    for ex in build_examples(tiny_store, task, cutoffs):
        everyone = contacts_at(tiny_store, ex.as_of)
        expected = [c for c, ok in zip(everyone, brute_force(task, tiny_world.all_events(), everyone, ex.as_of)) if ok]
        assert ex.contact_ids == expected == population_at(tiny_store, task, ex.as_of)
        assert 0 < len(ex.contact_ids) < len(everyone)
        np.testing.assert_array_equal(ex.labels, task.label(tiny_store, ex.contact_ids, ex.as_of))
