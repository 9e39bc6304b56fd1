"""Small random CRM worlds for property tests: few ids and times, so collisions happen."""
from __future__ import annotations

from hypothesis import strategies as st

from leadpulse.schemas.events import Activity, Company, Contact, Delete, Opportunity, Order
from leadpulse.schemas.timeutil import MICROS_PER_DAY, from_micros

T0 = 20_000 * MICROS_PER_DAY      # mid 2024
TIMES = [T0 + d * MICROS_PER_DAY for d in range(12)]
INDUSTRIES = ["saas", "retail", "bank"]
TECH = ["aws", "gcp", "react", "vue", "java"]

_time = st.sampled_from(TIMES).map(from_micros)
_company_id = st.sampled_from([f"co{i}" for i in range(7)])
_contact_id = st.sampled_from([f"ct{i}" for i in range(6)])
_opp_id = st.sampled_from([f"op{i}" for i in range(3)])
_activity_id = st.sampled_from([f"ac{i}" for i in range(10)])

companies = st.builds(Company, company_id=_company_id, updated_at=_time,
                      industry=st.none() | st.sampled_from(INDUSTRIES),
                      tech_stack=st.none() | st.lists(st.sampled_from(TECH), max_size=3, unique=True),
                      employees=st.none() | st.integers(1, 5000))
contacts = st.builds(Contact, contact_id=_contact_id, company_id=_company_id, updated_at=_time,
                     title=st.none() | st.sampled_from(["cto", "vp", "dev"]),
                     seniority=st.none() | st.sampled_from(["ic", "vp"]))
activities = st.builds(Activity, activity_id=_activity_id,
                       contact_id=_contact_id, timestamp=_time,
                       type=st.sampled_from(["page_view", "demo_request", "email_open"]),
                       page=st.none() | st.sampled_from(["/pricing", "/docs"]),
                       opportunity_id=st.none() | _opp_id)
opportunities = st.builds(Opportunity, opportunity_id=_opp_id, company_id=_company_id, updated_at=_time,
                          stage=st.sampled_from(["prospecting", "proposal", "closed_won"]),
                          amount=st.none() | st.floats(0, 1e5, allow_nan=False))
orders = st.builds(Order, order_id=st.sampled_from([f"or{i}" for i in range(5)]), contact_id=_contact_id,
                   amount=st.floats(0, 1e4, allow_nan=False), timestamp=_time,
                   company_id=st.none() | _company_id)

event = st.one_of(companies, companies, contacts, contacts, activities, activities, opportunities, orders)

deletes = st.one_of(*(st.builds(Delete, entity=st.just(kind), entity_id=ids, deleted_at=_time) for kind, ids in
                      (("company", _company_id), ("contact", _contact_id), ("activity", _activity_id),
                       ("opportunity", _opp_id))))
#: an event or, one time in four, a delete
event_or_delete = st.one_of(event, event, event, deletes)


# Job changes: few people and few companies, so people hold versions at several companies
# (they move, and move back), their activities fall around orders, and orders name a company or
# are counted for the buyer's company at the order's time; arrival order is drawn, so an order
# dated inside a former stint often arrives after the move (late).
_mover_id = st.sampled_from(["ct0", "ct1", "ct2"])
_employer_id = st.sampled_from(["co0", "co1", "co2"])
moves = st.builds(Contact, contact_id=_mover_id, company_id=_employer_id, updated_at=_time,
                  title=st.none() | st.sampled_from(["cto", "vp"]))
mover_activities = st.builds(Activity, activity_id=_activity_id, contact_id=_mover_id, timestamp=_time,
                             type=st.sampled_from(["page_view", "demo_request"]))
employer_orders = st.builds(Order, order_id=st.sampled_from([f"or{i}" for i in range(5)]), contact_id=_mover_id,
                            amount=st.floats(0, 1e4, allow_nan=False), timestamp=_time,
                            company_id=st.one_of(st.none(), st.none(), _employer_id))
career_event = st.one_of(moves, moves, moves, mover_activities, mover_activities, employer_orders, employer_orders,
                         employer_orders, event)
#: a career event or, one time in six, a delete
career_event_or_delete = st.one_of(career_event, career_event, career_event, career_event, career_event, deletes)


@st.composite
def histories(draw, min_size: int = 1, max_size: int = 40, with_deletes: bool = False, careers: bool = False):
    """A list of events in arrival order, with duplicates re-delivered at random later points
    (``with_deletes``: a quarter of them are deletes; off, the worlds are those drawn before
    deletes existed; ``careers``: mostly job changes, their activities and their employers'
    orders, ``career_event``)."""
    if careers:
        kind = career_event_or_delete if with_deletes else career_event
        min_size = max(min_size, 12)   # enough versions to move, and orders while there
    else:
        kind = event_or_delete if with_deletes else event
    events = draw(st.lists(kind, min_size=min_size, max_size=max_size))
    dups = draw(st.lists(st.integers(0, max(len(events) - 1, 0)), max_size=len(events) // 3 + 1))
    out = list(events)
    for i in dups:
        if events:
            pos = draw(st.integers(i, len(out)))
            out.insert(pos, events[i])
    return out


query_time = st.sampled_from([TIMES[0] - 1] + TIMES + [TIMES[-1] + 1]).flatmap(
    lambda t: st.sampled_from([t, t - 1]))
#: the second half of the days mostly (people have moved by then), sometimes any time
late_query_time = st.one_of(st.sampled_from(TIMES[6:] + [TIMES[-1] + 1]), query_time)
#: a batch of the job-change worlds: mostly employer orders (often dated before a move already applied)
career_batch_event = st.one_of(employer_orders, employer_orders, moves, mover_activities, event)


def random_events(n: int, seed: int, contacts: int = 300, companies: int = 40, deletes: float = 0.0) -> list:
    """``n`` plain-random events (deterministic by ``seed``), for crash and reopen tests; with
    ``deletes`` > 0, a delete of a random contact, company, recent activity or opportunity
    follows an event with that probability (``deletes`` 0 draws the same events as before)."""
    import random
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = from_micros(T0 + rng.randrange(60) * MICROS_PER_DAY + rng.randrange(1000))
        r = rng.random()
        ct, co = f"ct{rng.randrange(contacts)}", f"co{rng.randrange(companies)}"
        if r < 0.05:
            out.append(Company(company_id=co, updated_at=t, industry=rng.choice(INDUSTRIES),
                               tech_stack=rng.sample(TECH, rng.randint(0, 3))))
        elif r < 0.15:
            out.append(Contact(contact_id=ct, company_id=co, updated_at=t, title=rng.choice(["a", "b"])))
        elif r < 0.9:
            out.append(Activity(activity_id=f"ac{i}", contact_id=ct, type="page_view", timestamp=t,
                                opportunity_id=f"op{rng.randrange(50)}" if rng.random() < 0.1 else None))
        elif r < 0.95:
            out.append(Opportunity(opportunity_id=f"op{rng.randrange(50)}", company_id=co, stage="proposal",
                                   updated_at=t, amount=rng.randrange(1000)))
        else:
            out.append(Order(order_id=f"or{i}", contact_id=ct, amount=rng.randrange(1, 500), timestamp=t))
        if deletes and rng.random() < deletes:
            entity, nid = rng.choice([("contact", ct), ("company", co), ("activity", f"ac{rng.randrange(max(i, 1))}"),
                                      ("opportunity", f"op{rng.randrange(50)}")])
            when = from_micros(T0 + rng.randrange(60) * MICROS_PER_DAY + rng.randrange(1000))
            out.append(Delete(entity=entity, entity_id=nid, deleted_at=when))
    return out
