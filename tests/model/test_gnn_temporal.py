"""model.temporal against a brute-force reference, point in time, empty inputs."""
from __future__ import annotations

import numpy as np
import pytest

from leadpulse.model import temporal
from leadpulse.model.temporal import ACTIVITY_TYPES, CONTACT_COLUMNS, company_order_features, contact_features

DAY = 86_400_000_000
T = 1_000 * DAY


def _random_timelines(rng, n):
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 15))
        tl = [(int(T - rng.integers(-5 * DAY, 200 * DAY)),  # some events are in the future
               str(rng.choice(ACTIVITY_TYPES + ("weird",))),
               rng.choice(["pricing", "blog", "docs", None])) for _ in range(k)]
        out.append(tl)
    return out


def _reference(tl, t):
    """Straightforward per-contact loop for a handful of columns."""
    past = [e for e in tl if e[0] <= t]
    def age(e):
        return (t - e[0]) / DAY
    ref = {}
    for w in (7, 30, 90):
        ref[f"n_all_{w}d"] = sum(age(e) <= w for e in past)
        ref[f"n_demo_request_{w}d"] = sum(age(e) <= w and e[1] == "demo_request" for e in past)
        ref[f"n_other_{w}d"] = sum(age(e) <= w and e[1] not in ACTIVITY_TYPES for e in past)
        ref[f"n_page_pricing_{w}d"] = sum(age(e) <= w and e[2] == "pricing" for e in past)
    ref["days_since_last_activity"] = min(365.0, min((age(e) for e in past), default=365.0))
    demos = [e[0] for e in past if e[1] == "demo_request"]
    pricing = [e[0] for e in past if e[2] == "pricing"]
    ref["order_pricing_before_demo"] = 0.0 if not demos else (1.0 if pricing and min(pricing) < min(demos) else -1.0)
    ref["engagement"] = sum(temporal.INTENT_WEIGHTS[temporal.type_index(e[1])] * 2 ** (-age(e) / 14) for e in past)
    def hi(e):
        return e[1] in temporal.HIGH_INTENT_TYPES
    n14 = sum(hi(e) and age(e) <= 14 for e in past)
    n90 = sum(hi(e) and age(e) <= 90 for e in past)
    ref["velocity_high_intent"] = 90 / 14 * n14 / n90 if n90 else 0.0
    return ref


def test_matches_brute_force_reference():
    rng = np.random.default_rng(0)
    tls = _random_timelines(rng, 300)
    X, cols = contact_features(tls, T)
    assert cols == list(CONTACT_COLUMNS) and X.shape == (300, len(cols))
    for i, tl in enumerate(tls):
        for name, value in _reference(tl, T).items():
            assert X[i, cols.index(name)] == pytest.approx(value, abs=1e-9), (i, name)


def test_future_events_do_not_move_features():
    rng = np.random.default_rng(1)
    tls = _random_timelines(rng, 50)
    past_only = [[e for e in tl if e[0] <= T] for tl in tls]
    boosted = [tl + [(T + DAY, "demo_request", None)] * 20 + [(T + 1, "page_view", "pricing")] for tl in tls]
    X0, _ = contact_features(past_only, T)
    np.testing.assert_array_equal(contact_features(boosted, T)[0], X0)
    orders = [[(T - 3 * DAY, 10.0)], []]
    O0, _ = company_order_features(orders, T)
    np.testing.assert_array_equal(company_order_features([o + [(T + 1, 1e6)] for o in orders], T)[0], O0)


def test_empty_and_per_row_as_of():
    X, _ = contact_features([[], []], np.array([T, T + DAY]))
    cols = list(CONTACT_COLUMNS)
    assert X[:, cols.index("days_since_last_activity")].tolist() == [365.0, 365.0]
    assert X[:, cols.index("n_all_ever")].tolist() == [0.0, 0.0]
    assert contact_features([], T)[0].shape == (0, len(cols))
    orders, ocols = company_order_features([[], [(T - 10 * DAY, 5.0), (T - 100 * DAY, 7.0)]], T)
    row = dict(zip(ocols, orders[1]))
    assert row == {"orders_30d": 1, "orders_90d": 1, "orders_ever": 2, "order_amount_90d": 5.0,
                   "days_since_last_order": 10.0, "ever_bought": 1.0}
    assert orders[0, ocols.index("ever_bought")] == 0.0


def test_recent_order_of_key_steps():
    tl = [(T - 40 * DAY, "page_view", "pricing"), (T - 5 * DAY, "demo_request", None)]
    tl2 = [(T - 10 * DAY, "page_view", "pricing"), (T - 5 * DAY, "demo_request", None)]
    X, cols = contact_features([tl, tl2], T)
    c = cols.index("order_pricing_before_demo_recent")
    assert X[:, cols.index("order_pricing_before_demo")].tolist() == [1.0, 1.0]
    assert X[:, c].tolist() == [0.0, 1.0]  # pricing 35 days before the demo is not "recent"


def test_doctests():
    import doctest
    assert doctest.testmod(temporal).failed == 0


def test_timeline_views_give_the_features_of_the_lists_they_stand_for():
    """The store hands out ``graph_store.timeline`` views; ``contact_features`` reads their
    columns instead of their tuples and must not see the difference (any order, any subset,
    empty views and plain lists mixed in, unknown types and pages)."""
    from leadpulse.graph_store.timeline import Timeline, TimelineBlock, Timelines
    rng = np.random.default_rng(3)
    timelines = _random_timelines(rng, 60)
    strings = [None] + sorted({v for tl in timelines for e in tl for v in e[1:] if v is not None})
    code = {v: i for i, v in enumerate(strings)}
    flat = [e for tl in timelines for e in tl]
    block = TimelineBlock(np.array([e[0] for e in flat], dtype=np.int64),
                          np.array([code[e[1]] for e in flat], dtype=np.int64),
                          np.array([code[e[2]] for e in flat], dtype=np.int64),
                          np.array(strings, dtype=object))
    views = Timelines(block, np.array([len(tl) for tl in timelines]))
    assert [list(v) for v in views] == timelines and views == timelines
    order = rng.permutation(len(views)).tolist()
    mixed = [views[i] for i in order[:40]] + [[], Timeline.empty(block)]
    for as_of in (T, T - 50 * DAY):
        for sample in (views, list(views), mixed):
            X_views, cols = contact_features(sample, as_of)
            X_lists, _ = contact_features([list(tl) for tl in sample], as_of)
            np.testing.assert_array_equal(X_views, X_lists)


def test_order_columns_give_the_features_of_the_lists_they_stand_for():
    """The store hands out company orders as ``graph_store.timeline.Orders`` columns;
    ``company_order_features`` must give what it gives for the lists they stand for."""
    from leadpulse.graph_store.timeline import Orders
    rng = np.random.default_rng(4)
    lists = [sorted((int(T - rng.integers(-5 * DAY, 200 * DAY)), float(rng.integers(1, 10_000)) / 7)
                    for _ in range(int(rng.integers(0, 5)))) for _ in range(80)]
    flat = [o for ol in lists for o in ol]
    cols = Orders(np.array([o[0] for o in flat], dtype=np.int64), np.array([o[1] for o in flat]),
                  np.array([len(ol) for ol in lists]))
    assert cols == lists and cols.tolist() == lists and cols[-1] == lists[-1]
    for as_of in (T, T - 50 * DAY, np.full(len(lists), T - 10 * DAY)):
        X_cols, names = company_order_features(cols, as_of)
        X_lists, _ = company_order_features(lists, as_of)
        np.testing.assert_array_equal(X_cols, X_lists)
