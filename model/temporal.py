"""Temporal aggregates of a contact's timeline and a company's orders, relative to a time.

Numpy only (no torch). Every feature is computed *as of* a scoring time ``t``: events with
time > t are ignored (point in time), and every window, recency and decay is measured back
from ``t``, so the same event means less as it ages.

Times are integer microseconds (``schemas.timeutil``). A contact timeline is the
``Subgraph`` attribute ``"timeline"``: ``[(time, activity_type, page), ...]``; a company's
order list is the attribute ``"orders"``: ``[(time, amount), ...]``. Neither needs to be
sorted.

The two batch functions return raw, un-normalised values (counts, days, ratios) and their
column names; ``model.features`` normalises them with constants fit on training data.

Example:
    >>> DAY = 86_400_000_000
    >>> t = 100 * DAY
    >>> tl = [(t - 20 * DAY, "page_view", "pricing"), (t - 2 * DAY, "demo_request", None)]
    >>> X, cols = contact_features([tl, []], t)
    >>> X.shape == (2, len(CONTACT_COLUMNS)) and cols == list(CONTACT_COLUMNS)
    True
    >>> float(X[0, cols.index("order_pricing_before_demo")]), float(X[1, cols.index("has_activity")])
    (1.0, 0.0)
    >>> float(X[0, cols.index("days_since_last_activity")])
    2.0
"""
from __future__ import annotations

from itertools import repeat
from typing import Sequence, Union

import numpy as np

from leadpulse.graph_store.timeline import Orders, TimelineBlock, Timelines, shared_block
from leadpulse.schemas.timeutil import MICROS_PER_DAY

__all__ = [
    "ACTIVITY_TYPES", "HIGH_INTENT_TYPES", "KEY_PAGES", "WINDOWS_DAYS", "RECENCY_CAP_DAYS",
    "ENGAGEMENT_HALF_LIFE_DAYS", "INTENT_WEIGHTS", "CONTACT_COLUMNS", "ORDER_COLUMNS",
    "contact_features", "company_order_features", "type_index",
]

#: the activity types the contract names; anything else counts as "other"
ACTIVITY_TYPES: tuple[str, ...] = (
    "page_view", "email_open", "email_click", "form_fill", "content_download", "webinar_attended",
    "demo_request", "meeting", "call", "trial_signup", "product_usage", "invite_teammate",
)
_TYPES_WITH_OTHER = ACTIVITY_TYPES + ("other",)
_TYPE_INDEX = {name: i for i, name in enumerate(ACTIVITY_TYPES)}
_OTHER = len(ACTIVITY_TYPES)

#: steps a sales team reads as buying intent ("meetings + calls + demo" plus trials)
HIGH_INTENT_TYPES: tuple[str, ...] = ("demo_request", "meeting", "call", "trial_signup")
_HIGH = np.zeros(len(_TYPES_WITH_OTHER), dtype=bool)
_HIGH[[_TYPE_INDEX[t] for t in HIGH_INTENT_TYPES]] = True

#: pages counted separately (page views of these pages, per window)
KEY_PAGES: tuple[str, ...] = ("pricing", "security", "docs", "case_studies")

_PAGE_INDEX = {p: i for i, p in enumerate(KEY_PAGES)}
_NO_TIME = np.iinfo(np.int64).max

#: counting windows, in days back from t (an event at age a is in window w when a <= w)
WINDOWS_DAYS: tuple[int, ...] = (7, 30, 90)
#: recency when there is no such event (and the cap of every "days since")
RECENCY_CAP_DAYS: float = 365.0
#: velocity compares the last VELOCITY_SHORT days with the last VELOCITY_LONG days
VELOCITY_SHORT_DAYS, VELOCITY_LONG_DAYS = 14, 90
#: engagement = sum of intent weights decayed with this half-life
ENGAGEMENT_HALF_LIFE_DAYS: float = 14.0
#: intent weight per activity type (index aligned with ACTIVITY_TYPES + ("other",))
INTENT_WEIGHTS = np.array([0.15, 0.05, 0.25, 0.6, 0.5, 0.7, 2.0, 2.2, 1.4, 1.8, 0.6, 1.2, 0.1])
#: "recent" order of key steps: the demo in the last ORDER_RECENT_DAYS, pricing at most that
#: many days before it
ORDER_RECENT_DAYS = 30


def _contact_columns() -> tuple[str, ...]:
    cols: list[str] = []
    for w in WINDOWS_DAYS:
        cols += [f"n_{name}_{w}d" for name in _TYPES_WITH_OTHER]
        cols += [f"n_page_{p}_{w}d" for p in KEY_PAGES]
        cols += [f"n_all_{w}d", f"n_high_intent_{w}d"]
    cols += [
        "n_all_ever", "n_high_intent_ever", "n_high_intent_14d",
        "has_activity", "has_high_intent",
        "days_since_last_activity", "days_since_last_high_intent", "days_since_first_activity",
        "velocity_high_intent", "velocity_all",
        "order_pricing_before_demo", "order_pricing_before_demo_recent", "funnel_steps",
        "engagement", "distinct_types_30d",
    ]
    return tuple(cols)


#: column names of ``contact_features``, in order (stable: append, never reorder)
CONTACT_COLUMNS: tuple[str, ...] = _contact_columns()
#: column names of ``company_order_features``, in order
ORDER_COLUMNS: tuple[str, ...] = (
    "orders_30d", "orders_90d", "orders_ever", "order_amount_90d", "days_since_last_order",
    "ever_bought",
)

AsOf = Union[int, np.integer, np.ndarray]


def type_index(activity_type: str | None) -> int:
    """Index of an activity type in ``ACTIVITY_TYPES + ("other",)``."""
    return _TYPE_INDEX.get(activity_type or "", _OTHER)


def _per_row_as_of(as_of: AsOf, n: int) -> np.ndarray:
    arr = np.asarray(as_of, dtype=np.int64)
    if arr.ndim == 0:
        return np.full(n, int(arr), dtype=np.int64)
    if arr.shape != (n,):
        raise ValueError(f"as_of must be a scalar or shape ({n},), got {arr.shape}")
    return arr


def _flatten(timelines: Sequence[Sequence[tuple]]):
    n = len(timelines)
    if isinstance(timelines, Timelines):   # a store read's: the block holds them, in contact order
        lens = timelines.lengths()
        return _from_block(timelines.block, np.repeat(np.arange(n, dtype=np.int64), lens), slice(None))
    lens = np.fromiter((len(tl) for tl in timelines), dtype=np.int64, count=n)
    total = int(lens.sum())
    owner = np.repeat(np.arange(n, dtype=np.int64), lens)
    block = shared_block(timelines)
    if block is not None:   # views of one extraction (graph_store.timeline): gather its columns
        los = np.fromiter((tl.lo if tl else 0 for tl in timelines), dtype=np.int64, count=n)
        rows = np.arange(total, dtype=np.int64) + np.repeat(los - (np.cumsum(lens) - lens), lens)
        return _from_block(block, owner, rows)
    flat = [e for tl in timelines for e in tl]
    if flat and min(map(len, flat)) >= 3:
        # the usual (time, type, page) triples: transpose once, map columns at C speed
        cols = list(zip(*flat))
        times = np.fromiter(cols[0], dtype=np.int64, count=total)
        types = np.fromiter(map(_TYPE_INDEX.get, cols[1], repeat(_OTHER)), dtype=np.int64, count=total)
        pages = np.fromiter(map(_PAGE_INDEX.get, cols[2], repeat(-1)), dtype=np.int64, count=total)
        return owner, times, types, pages
    times = np.fromiter((e[0] for e in flat), dtype=np.int64, count=total)
    types = np.fromiter((_TYPE_INDEX.get(e[1], _OTHER) for e in flat), dtype=np.int64, count=total)
    pages = np.fromiter((_PAGE_INDEX.get(e[2], -1) if len(e) > 2 else -1 for e in flat),
                        dtype=np.int64, count=total)
    return owner, times, types, pages


def _from_block(block: TimelineBlock, owner: np.ndarray, rows) -> tuple:
    """``_flatten``'s columns from rows of a ``TimelineBlock``: codes mapped once per distinct string."""
    types, pages = block.types[rows], block.pages[rows]
    total = len(types)
    codes, inverse = np.unique(np.concatenate([types, pages]), return_inverse=True)
    names = block.strings[codes].tolist()
    lut = np.fromiter(map(_TYPE_INDEX.get, names, repeat(_OTHER)), dtype=np.int64, count=len(names))
    plut = np.fromiter(map(_PAGE_INDEX.get, names, repeat(-1)), dtype=np.int64, count=len(names))
    return owner, block.times[rows], lut[inverse[:total]], plut[inverse[total:]]


def _days_since(last: np.ndarray, t: np.ndarray, present: np.ndarray) -> np.ndarray:
    out = np.full(len(t), RECENCY_CAP_DAYS)
    out[present] = np.minimum((t[present] - last[present]) / MICROS_PER_DAY, RECENCY_CAP_DAYS)
    return out


def contact_features(timelines: Sequence[Sequence[tuple]], as_of: AsOf) -> tuple[np.ndarray, list[str]]:
    """Temporal aggregates of many contacts at once.

    Args:
        timelines: one timeline per contact, each a sequence of ``(time, activity_type, page)``
            (``page`` may be None or missing). Events with time > as_of are ignored.
        as_of: the scoring time in micros, one for all contacts or an array of one per contact.

    Returns:
        ``(X, columns)``: float64 matrix of shape ``(len(timelines), len(CONTACT_COLUMNS))``
        and ``list(CONTACT_COLUMNS)``. Columns:

        * ``n_<type>_<w>d``, ``n_page_<page>_<w>d``, ``n_all_<w>d``, ``n_high_intent_<w>d``:
          counts in the last w days (w in 7, 30, 90; unknown types count as ``other``).
        * ``days_since_last_activity`` / ``_last_high_intent`` / ``_first_activity``: capped at
          365 (also the value when there is none; ``has_activity``/``has_high_intent`` flag it).
        * ``velocity_high_intent``: rate of high-intent steps in the last 14 days over their rate
          in the last 90 (1 = steady, > 1 = accelerating, 0 when none in 90 days);
          ``velocity_all`` the same for all activities.
        * ``order_pricing_before_demo``: +1 when the pricing page was viewed before the first
          demo_request, -1 when a demo_request came with no earlier pricing view, 0 without a
          demo_request. ``..._recent``: 1 when a demo_request in the last 30 days followed a
          pricing view at most 30 days before it.
        * ``funnel_steps``: how many of pricing view, demo_request, meeting, trial_signup ever
          happened (0..4).
        * ``engagement``: sum of intent weights decayed with a 14-day half-life.
    """
    n = len(timelines)
    t_row = _per_row_as_of(as_of, n)
    X = np.zeros((n, len(CONTACT_COLUMNS)), dtype=np.float64)
    col = {name: i for i, name in enumerate(CONTACT_COLUMNS)}
    if n == 0:
        return X, list(CONTACT_COLUMNS)
    owner, times, types, pages = _flatten(timelines)
    t_ev = t_row[owner]
    keep = times <= t_ev
    owner, times, types, pages, t_ev = owner[keep], times[keep], types[keep], pages[keep], t_ev[keep]
    age = (t_ev - times) / MICROS_PER_DAY
    high = _HIGH[types]
    k = len(_TYPES_WITH_OTHER)
    n_pages = len(KEY_PAGES)
    is_page = pages >= 0

    for w in WINDOWS_DAYS:
        inw = age <= w
        counts = np.bincount(owner[inw] * k + types[inw], minlength=n * k).reshape(n, k)
        start = col[f"n_{_TYPES_WITH_OTHER[0]}_{w}d"]
        X[:, start:start + k] = counts
        pw = inw & is_page
        pcounts = np.bincount(owner[pw] * n_pages + pages[pw], minlength=n * n_pages).reshape(n, n_pages)
        start = col[f"n_page_{KEY_PAGES[0]}_{w}d"]
        X[:, start:start + n_pages] = pcounts
        X[:, col[f"n_all_{w}d"]] = counts.sum(axis=1)
        X[:, col[f"n_high_intent_{w}d"]] = counts[:, _HIGH].sum(axis=1)

    n_all = np.bincount(owner, minlength=n).astype(np.float64)
    n_high = np.bincount(owner[high], minlength=n).astype(np.float64)
    n_high_short = np.bincount(owner[high & (age <= VELOCITY_SHORT_DAYS)], minlength=n).astype(np.float64)
    n_all_short = np.bincount(owner[age <= VELOCITY_SHORT_DAYS], minlength=n).astype(np.float64)
    n_high_long = np.bincount(owner[high & (age <= VELOCITY_LONG_DAYS)], minlength=n).astype(np.float64)
    n_all_long = np.bincount(owner[age <= VELOCITY_LONG_DAYS], minlength=n).astype(np.float64)
    X[:, col["n_all_ever"]] = n_all
    X[:, col["n_high_intent_ever"]] = n_high
    X[:, col["n_high_intent_14d"]] = n_high_short
    X[:, col["has_activity"]] = n_all > 0
    X[:, col["has_high_intent"]] = n_high > 0

    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, owner, times)
    first = np.full(n, _NO_TIME, dtype=np.int64)
    np.minimum.at(first, owner, times)
    last_high = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_high, owner[high], times[high])
    X[:, col["days_since_last_activity"]] = _days_since(last, t_row, n_all > 0)
    X[:, col["days_since_last_high_intent"]] = _days_since(last_high, t_row, n_high > 0)
    X[:, col["days_since_first_activity"]] = _days_since(first, t_row, n_all > 0)

    ratio = VELOCITY_LONG_DAYS / VELOCITY_SHORT_DAYS
    with np.errstate(divide="ignore", invalid="ignore"):
        X[:, col["velocity_high_intent"]] = np.where(n_high_long > 0, ratio * n_high_short / n_high_long, 0.0)
        X[:, col["velocity_all"]] = np.where(n_all_long > 0, ratio * n_all_short / n_all_long, 0.0)

    # order of key steps
    pricing = pages == _PAGE_INDEX["pricing"]
    demo = types == _TYPE_INDEX["demo_request"]
    first_pricing = np.full(n, _NO_TIME, dtype=np.int64)
    np.minimum.at(first_pricing, owner[pricing], times[pricing])
    first_demo = np.full(n, _NO_TIME, dtype=np.int64)
    np.minimum.at(first_demo, owner[demo], times[demo])
    has_demo = first_demo != _NO_TIME
    X[:, col["order_pricing_before_demo"]] = np.where(
        has_demo, np.where(first_pricing < first_demo, 1.0, -1.0), 0.0)
    X[:, col["order_pricing_before_demo_recent"]] = _recent_order(
        owner, times, pricing, demo & (age <= ORDER_RECENT_DAYS), n)
    steps = (first_pricing != _NO_TIME).astype(np.float64) + has_demo
    for name in ("meeting", "trial_signup"):
        steps += np.bincount(owner[types == _TYPE_INDEX[name]], minlength=n) > 0
    X[:, col["funnel_steps"]] = steps

    decay = np.exp2(-age / ENGAGEMENT_HALF_LIFE_DAYS) * INTENT_WEIGHTS[types]
    X[:, col["engagement"]] = np.bincount(owner, weights=decay, minlength=n)
    in30 = age <= 30
    seen = np.zeros((n, k), dtype=bool)
    seen[owner[in30], types[in30]] = True
    X[:, col["distinct_types_30d"]] = seen.sum(axis=1)
    return X, list(CONTACT_COLUMNS)


def _recent_order(owner, times, pricing, recent_demo, n) -> np.ndarray:
    """1 where some recent demo_request has a pricing view in the ORDER_RECENT_DAYS before it."""
    out = np.zeros(n)
    if not recent_demo.any() or not pricing.any():
        return out
    p_owner, p_time = owner[pricing], times[pricing]
    order = np.lexsort((p_time, p_owner))
    p_owner, p_time = p_owner[order], p_time[order]
    d_owner, d_time = owner[recent_demo], times[recent_demo]
    # latest pricing view strictly before each demo, same owner: search in (owner, time) order
    pos = np.searchsorted(p_owner, d_owner, side="left")
    end = np.searchsorted(p_owner, d_owner, side="right")
    window = ORDER_RECENT_DAYS * MICROS_PER_DAY
    for i in range(len(d_owner)):  # demos are rare: a short loop
        lo, hi = pos[i], end[i]
        j = lo + np.searchsorted(p_time[lo:hi], d_time[i], side="left") - 1
        if j >= lo and d_time[i] - p_time[j] <= window:
            out[d_owner[i]] = 1.0
    return out


def company_order_features(orders: Sequence[Sequence[tuple]], as_of: AsOf) -> tuple[np.ndarray, list[str]]:
    """Order aggregates of many companies (the ``"orders"`` attribute: ``(time, amount)``).

    Args:
        orders: one list per company of ``(time, amount)``; orders with time > as_of are ignored.
        as_of: the scoring time in micros, scalar or one per company.

    Returns:
        ``(X, list(ORDER_COLUMNS))``: orders in the last 30/90 days, ever, amount summed over the
        last 90 days, days since the last order (365 cap, also when none), ever bought (0/1).
    """
    n = len(orders)
    t_row = _per_row_as_of(as_of, n)
    X = np.zeros((n, len(ORDER_COLUMNS)), dtype=np.float64)
    if n == 0:
        return X, list(ORDER_COLUMNS)
    if isinstance(orders, Orders):   # a store read's: its columns, in company order
        owner = np.repeat(np.arange(n, dtype=np.int64), orders.lengths())
        times, amounts = orders.times, orders.amounts
    else:
        lens = np.fromiter((len(o) for o in orders), dtype=np.int64, count=n)
        total = int(lens.sum())
        owner = np.repeat(np.arange(n, dtype=np.int64), lens)
        times = np.fromiter((o[0] for ol in orders for o in ol), dtype=np.int64, count=total)
        amounts = np.fromiter((float(o[1] or 0.0) if len(o) > 1 else 0.0 for ol in orders for o in ol),
                              dtype=np.float64, count=total)
    keep = times <= t_row[owner]
    owner, times, amounts = owner[keep], times[keep], amounts[keep]
    age = (t_row[owner] - times) / MICROS_PER_DAY
    ever = np.bincount(owner, minlength=n).astype(np.float64)
    X[:, 0] = np.bincount(owner[age <= 30], minlength=n)
    X[:, 1] = np.bincount(owner[age <= 90], minlength=n)
    X[:, 2] = ever
    X[:, 3] = np.bincount(owner[age <= 90], weights=amounts[age <= 90], minlength=n)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, owner, times)
    X[:, 4] = _days_since(last, t_row, ever > 0)
    X[:, 5] = ever > 0
    return X, list(ORDER_COLUMNS)
