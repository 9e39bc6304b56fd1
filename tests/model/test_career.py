"""Career features (model/career.py, docs/model.md "Job changes") point in time: computed from a
store holding every event, as of t, they equal the same features computed by hand from only the
events dated <= t. A hand-built world (a move, a champion, a late order) with its figures spelled
out, random job-change worlds against a brute force, the baselines' table, the ablation switch
and the explanation text."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadpulse.graph_store.memory import MemoryGraphStore
from leadpulse.graph_store.options import GraphStoreOptions
from leadpulse.model.career import CAREER_COLUMNS, CHAMPION_WINDOW_DAYS, MOVE_HALF_LIFE_DAYS
from leadpulse.model.explain import _career_text
from leadpulse.model.features import FeatureSpec, extract
from leadpulse.model.tabular import feature_table
from leadpulse.model.temporal import INTENT_WEIGHTS, RECENCY_CAP_DAYS, type_index
from leadpulse.schemas.events import Activity, Company, Contact, Order
from leadpulse.schemas.timeutil import MICROS_PER_DAY as DAY
from leadpulse.schemas.timeutil import from_micros, to_micros
from tests.graph_store.reference import Reference
from tests.graph_store.worlds import TIMES, histories

T0 = 20_000 * DAY
OPTS = GraphStoreOptions(industry_k=2, similar_k=2)


def _d(day: float):
    return from_micros(T0 + int(day * DAY))


def _world() -> tuple[list, list]:
    """p works at A from day 1 and moves to B on day 60. p's only activity is on day 10. A orders
    on day 50 (bought by b, no company_id: b works at A): p was not engaged in the 30 days
    before. A late order, dated day 35 and arriving after everything else, is inside p's stint
    and 25 days after p's activity: it makes p a champion. r works at B."""
    events = [Company(company_id="A", industry="saas", updated_at=_d(0)),
              Company(company_id="B", industry="bank", updated_at=_d(0)),
              Contact(contact_id="p", company_id="A", updated_at=_d(1)),
              Contact(contact_id="b", company_id="A", updated_at=_d(1)),
              Contact(contact_id="r", company_id="B", updated_at=_d(1)),
              Activity(activity_id="a1", contact_id="p", type="page_view", timestamp=_d(10)),
              Order(order_id="o1", contact_id="b", amount=5, timestamp=_d(50)),
              Contact(contact_id="p", company_id="B", updated_at=_d(60))]
    late = [Order(order_id="o2", contact_id="b", amount=7, timestamp=_d(35))]
    return events, late


def _career_row(store, cid: str, t: int) -> dict:
    g = store.subgraph([cid], t)
    nodes = extract(g).nodes["contact"]
    i = g.node_ids["contact"].index(cid)
    return {c: float(nodes.num[i, nodes.num_cols.index(c)]) for c in CAREER_COLUMNS}


def _neutral() -> dict:
    return {c: (RECENCY_CAP_DAYS if c == "days_since_move" else 0.0) for c in CAREER_COLUMNS}


def test_hand_built_world_move_champion_late_order():
    events, late = _world()
    store = MemoryGraphStore(OPTS)
    store.apply(events)
    t = T0 + 70 * DAY
    assert _career_row(store, "p", T0 + 59 * DAY) == _neutral()           # not moved yet
    assert _career_row(store, "r", t) == _neutral() and _career_row(store, "b", t) == _neutral()
    before = _career_row(store, "p", t)
    # the page view (intent 0.15) 20 days before the window of the day-50 order: decayed into it
    assert before == {"has_former_employer": 1.0, "n_former_employers": 1.0, "days_since_move": 10.0,
                      "former_customer": 1.0, "champion_before": 0.0, "champion_move_recency": 0.0,
                      "champion_engagement": pytest.approx(0.15 * 2 ** (-10 / 14))}
    store.apply(late)   # the late order lands inside p's former stint
    after = _career_row(store, "p", t)
    assert after == {**before, "champion_before": 1.0, "champion_engagement": pytest.approx(0.15),
                     "champion_move_recency": pytest.approx(2 ** (-10 / MOVE_HALF_LIFE_DAYS))}
    # as of day 65: 5 days after the move; the baselines' table says the same
    t65 = T0 + 65 * DAY
    row = _career_row(store, "p", t65)
    assert row["days_since_move"] == 5.0 and row["champion_before"] == 1.0
    table = feature_table(store.subgraph(["p"], t65), ["p"], ["career"])
    assert table.num_cols == list(CAREER_COLUMNS) and table.num[0].tolist() == list(row.values())
    assert _career_text(row) == "champion at a previous customer, joined 5 days ago"
    assert _career_text({**row, "champion_before": 0.0}) == "worked at a previous customer, joined 5 days ago"
    assert _career_text({**row, "champion_before": 0.0, "former_customer": 0.0}) == \
        "joined from another company 5 days ago"
    assert _career_text(_neutral()) is None


def test_the_window_is_thirty_days_before_the_order_up_to_it():
    events, _ = _world()
    t = T0 + 70 * DAY
    for day, champion in ((35 - CHAMPION_WINDOW_DAYS - 0.01, 0.0), (35 - CHAMPION_WINDOW_DAYS, 1.0), (35, 1.0),
                          (35.01, 0.0)):
        store = MemoryGraphStore(OPTS)
        store.apply(events[:5] + [Activity(activity_id="a1", contact_id="p", type="page_view", timestamp=_d(day)),
                                  Order(order_id="o2", contact_id="b", amount=7, timestamp=_d(35)), events[-1]])
        assert _career_row(store, "p", t)["champion_before"] == champion, day


def _by_hand(events: list, cid: str, t: int) -> list[float]:
    """The career columns of ``cid`` as of ``t`` from the events dated <= t only, by hand."""
    ref = Reference([e for e in events if to_micros(e.event_time) <= t], 2, 2)
    career = ref.career(cid, t)
    valid = ref.valid("contact", cid, t)
    current = valid[1].get("company_id") if valid else None
    acts = [(tm, INTENT_WEIGHTS[type_index(typ)]) for tm, typ, _ in ref.timeline(cid, t)]
    others = {s.company for s in career.former if s.company != current}
    days = min((t - career.joined) / DAY, RECENCY_CAP_DAYS) if career.joined is not None else RECENCY_CAP_DAYS
    customer = any(s.orders for s in career.former)
    champion = any(o - CHAMPION_WINDOW_DAYS * DAY <= a <= o for s in career.former for o in s.orders for a, _ in acts)
    recency = champion * 2 ** (-days / MOVE_HALF_LIFE_DAYS) if career.joined is not None else 0.0

    def engagement(x):
        return sum(w * 2 ** (-(x - a) / DAY / 14) for a, w in acts if a <= x)
    peak = max((engagement(x) for s in career.former for o in s.orders
                for x in [o - CHAMPION_WINDOW_DAYS * DAY] + [a for a, _ in acts if o - CHAMPION_WINDOW_DAYS * DAY <= a <= o]),
               default=0.0)
    return [float(bool(others)), float(len(others)), days, float(customer), float(champion), recency, peak]


@settings(max_examples=int(os.environ.get("GS_EXAMPLES", 80)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(events=histories(max_size=40, careers=True), t=st.sampled_from(TIMES[4:] + [TIMES[-1] + 1]))
def test_features_from_the_store_equal_the_hand_computation_from_past_events(events, t):
    store = MemoryGraphStore(OPTS)
    store.apply(events)   # every event, later ones included: none may leak into t
    g = store.snapshot(t)
    nodes = extract(g).nodes["contact"]
    cols = [nodes.num_cols.index(c) for c in CAREER_COLUMNS]
    for i, cid in enumerate(g.node_ids["contact"]):
        np.testing.assert_allclose(nodes.num[i, cols], _by_hand(events, cid, t), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{cid} at {t}")


def test_the_spec_drops_the_career_columns_and_old_specs_still_encode():
    events, late = _world()
    store = MemoryGraphStore(OPTS)
    store.apply(events + late)
    raw = extract(store.snapshot(T0 + 70 * DAY))
    full = FeatureSpec.fit([raw], min_count=1)
    ablated = FeatureSpec.fit([raw], min_count=1, drop=("career",))
    assert set(CAREER_COLUMNS) <= set(full.num_cols["contact"])
    assert not set(CAREER_COLUMNS) & set(ablated.num_cols["contact"])
    x_full, x_abl = full.encode_nodes("contact", raw.nodes["contact"]), ablated.encode_nodes("contact", raw.nodes["contact"])
    assert x_full.shape[1] == x_abl.shape[1] + len(CAREER_COLUMNS)
    keep = [i for i, c in enumerate(full.column_names("contact")) if c not in CAREER_COLUMNS]
    np.testing.assert_allclose(x_full[:, keep], x_abl)   # the other columns are unchanged
    # the career columns are not standardised: 0 for everyone without a former employer, order 1 for p
    names = full.column_names("contact")
    career = [names.index(c) for c in CAREER_COLUMNS]
    ids = raw.subgraph.node_ids["contact"]
    p = ids.index("p")
    assert not x_full[[i for i in range(len(ids)) if i != p]][:, career].any()
    np.testing.assert_allclose(x_full[p, career], [1, np.log1p(1), 10 / 365 - 1, 1, 1, 2 ** (-10 / 90), np.log1p(0.15)],
                               rtol=1e-6)
    # a spec saved before the career columns existed reads the columns it knows
    old = FeatureSpec.from_json(ablated.to_json())
    np.testing.assert_array_equal(old.encode_nodes("contact", raw.nodes["contact"]), x_abl)
    with pytest.raises(ValueError, match="unknown feature groups"):
        FeatureSpec.fit([raw], drop=("carreer",))


def test_baselines_ablation_switch():
    from leadpulse.model.baselines import make_model
    assert make_model("lgbm_flat").feature_sets == ("own", "activity", "career")
    assert make_model("lgbm_agg", career=False).feature_sets == ("own", "activity", "account")
    assert make_model("logreg", career=False).feature_sets == ("own",)
    assert make_model("rules", career=False).name == "rules"
