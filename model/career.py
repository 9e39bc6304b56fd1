"""Career features of contacts as of a time: where the person worked before, and whether they
championed a purchase there (docs/model.md, "Job changes").

Inputs per contact, all as of the graph's ``as_of`` (nothing later is ever read): its
``graph_store.career.Career`` (the former stints, each with the orders its company placed during
it, and when it joined its current employer), its timeline (the person's own activities, at every
employer: they follow the person) and its current ``company_id``. Columns:

* ``has_former_employer``: 1 when a former stint was at a company other than the current one.
* ``n_former_employers``: how many such companies.
* ``days_since_move``: days since the current stint began, for a person with a former stint
  (capped at ``temporal.RECENCY_CAP_DAYS``, which is also the value for everyone else: "not
  recently, or never").
* ``former_customer``: 1 when a former employer placed an order while the person was there.
* ``champion_before``: 1 when, for such an order, the person had an activity in the
  ``CHAMPION_WINDOW_DAYS`` (30) before it, up to the order itself: they were engaged while their
  employer bought. Orders carry no role, so the buyer counts too.
* ``champion_move_recency``: ``champion_before`` times 2^(-days_since_move / 90): a former
  champion who joined recently, fading with a 90-day half-life. The flag and the days alone need
  an AND the models must learn from the few champion movers of a training set.
* ``champion_engagement``: how engaged the person was around those orders: the highest
  engagement (intent weights decayed with the 14-day half-life of ``temporal``'s ``engagement``)
  they reached in the 30 days before such an order, up to it. A single email open 29 days before
  makes ``champion_before`` 1; a run of demos and meetings the week before the order is what
  "championed the purchase" means, and this column tells the two apart.

Every contact without a former stint gets (0, 0, cap, 0, 0, 0, 0); only the others are computed.

Example:
    >>> from leadpulse.graph_store.career import Career, Stint
    >>> DAY = 86_400_000_000
    >>> c = Career(joined=90 * DAY, former=(Stint("A", 0, 90 * DAY, (60 * DAY,)),))
    >>> X, cols = career_features([c, Career(None, ())], [[(45 * DAY, "call", None)], []],
    ...                           ["B", "A"], 100 * DAY)
    >>> row = dict(zip(cols, X[0].round(3).tolist()))
    >>> row["champion_before"], row["days_since_move"], row["champion_move_recency"]
    (1.0, 10.0, 0.926)
    >>> X[1].tolist() == [0.0, 0.0, 365.0, 0.0, 0.0, 0.0, 0.0]
    True
    >>> row["champion_engagement"]   # a call (intent 1.4) 15 days before the order, the peak
    1.4
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from leadpulse.graph_store.career import Career
from leadpulse.graph_store.timeline import Timeline
from leadpulse.model.temporal import ENGAGEMENT_HALF_LIFE_DAYS, INTENT_WEIGHTS, RECENCY_CAP_DAYS, type_index
from leadpulse.schemas.timeutil import MICROS_PER_DAY

__all__ = ["CAREER_COLUMNS", "CHAMPION_WINDOW_DAYS", "MOVE_HALF_LIFE_DAYS", "career_features"]

#: column names of ``career_features``, in order (stable: append, never reorder)
CAREER_COLUMNS: tuple[str, ...] = ("has_former_employer", "n_former_employers", "days_since_move",
                                   "former_customer", "champion_before", "champion_move_recency",
                                   "champion_engagement")
#: an activity this many days before an order, up to the order, makes its author a champion of it
CHAMPION_WINDOW_DAYS = 30
#: half-life of ``champion_move_recency``
MOVE_HALF_LIFE_DAYS = 90.0

_COL = {c: i for i, c in enumerate(CAREER_COLUMNS)}


def _activity(timeline) -> tuple[np.ndarray, np.ndarray]:
    """A timeline's times and intent weights, in time order (a store's timelines are; a list
    may not be)."""
    if isinstance(timeline, Timeline):
        b = timeline.block
        times = b.times[timeline.lo:timeline.hi]
        types = b.strings[b.types[timeline.lo:timeline.hi]].tolist()
    else:
        entries = sorted(timeline, key=lambda e: e[0])
        times = np.fromiter((e[0] for e in entries), dtype=np.int64, count=len(entries))
        types = [e[1] for e in entries]
    return times, INTENT_WEIGHTS[[type_index(x) for x in types]] if types else np.zeros(0)


def _around(times: np.ndarray, weights: np.ndarray, orders: Sequence[int]) -> tuple[bool, float]:
    """(some activity lies in [order - window, order] for some order, the highest decayed
    engagement reached in such a window: at its start or at one of its activities)."""
    if not len(times) or not orders:
        return False, 0.0
    o = np.asarray(orders, dtype=np.int64)
    start = o - CHAMPION_WINDOW_DAYS * MICROS_PER_DAY
    lo = np.searchsorted(times, start, side="left")
    hi = np.searchsorted(times, o, side="right")
    at = np.unique(np.concatenate([start] + [times[a:b] for a, b in zip(lo.tolist(), hi.tolist())]))
    age = (at[:, None] - times[None, :]) / MICROS_PER_DAY   # points x activities
    decayed = np.where(age >= 0, weights[None, :] * np.exp2(-np.maximum(age, 0) / ENGAGEMENT_HALF_LIFE_DAYS), 0.0)
    return bool((hi > lo).any()), float(decayed.sum(axis=1).max())


def career_features(careers: Sequence[Career], timelines: Sequence, companies: Sequence[Optional[str]],
                    as_of: int) -> tuple[np.ndarray, list[str]]:
    """``(X, list(CAREER_COLUMNS))`` for contacts aligned with ``careers`` (a ``Careers`` of a
    store read, or any sequence of ``Career``), ``timelines`` and ``companies`` (each contact's
    current ``company_id``)."""
    n = len(careers)
    X = np.zeros((n, len(CAREER_COLUMNS)))
    X[:, _COL["days_since_move"]] = RECENCY_CAP_DAYS
    items = careers.items() if hasattr(careers, "items") else [(i, c) for i, c in enumerate(careers) if c.former]
    for i, career in items:
        current = companies[i]
        others = {s.company for s in career.former if s.company != current}
        days = RECENCY_CAP_DAYS
        if career.joined is not None:
            days = min(max(0.0, (as_of - career.joined) / MICROS_PER_DAY), RECENCY_CAP_DAYS)
        orders = [o for s in career.former for o in s.orders]
        champion, peak = _around(*_activity(timelines[i]), orders) if orders else (False, 0.0)
        X[i] = (float(bool(others)), float(len(others)), days, float(bool(orders)), float(champion),
                float(champion) * 2.0 ** (-days / MOVE_HALF_LIFE_DAYS) if career.joined is not None else 0.0,
                peak)
    return X, list(CAREER_COLUMNS)
