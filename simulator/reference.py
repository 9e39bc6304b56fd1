"""The world's own conversion hazard at a cutoff: a yardstick for model accuracy, not a model.

The simulator draws every first order from a daily hazard (``simulator.params``). Its value at
a cutoff is what the world "knows" about who converts next, from the state at that time: an
accuracy benchmark can score the same test examples by it and show how far the models are
from it. It is not an upper bound: the label window's orders follow the hazard of the coming
days, which new activities and buying cycles move, and a model may partly foresee those.

Re-running the population and the days with the world's seed reproduces the same hazard as the
run that wrote the tables (the simulator is deterministic and draws the rows only afterwards).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from simulator.dynamics import simulate_days
from simulator.params import SIZES, SimParams
from simulator.population import build_population

DAY_S = 86_400


@dataclass(frozen=True)
class Hazard:
    """Daily conversion hazard per person (index = person, as in the simulator) after ``day``.

    Attributes:
        day: the last whole simulated day the state includes.
        true: the hazard the orders were drawn from (includes the persistent per-contact and
            per-account effects nobody can observe).
        observed: the same without those effects: the part the CRM's data could explain.
        first_order_day: each person's first order day in the whole run (-1: never), which
            labels.csv's ``person_first_order_day`` also holds (a check of the re-run).
    """
    day: int
    true: np.ndarray
    observed: np.ndarray
    first_order_day: np.ndarray


def last_whole_day(start: datetime, as_of_micros: int) -> int:
    """The last simulated day that ended at or before ``as_of`` (-1 before the first)."""
    return int((as_of_micros - int(start.timestamp() * 1_000_000)) // (DAY_S * 1_000_000)) - 1


def hazard_after(size: str, seed: int, params: SimParams, day: int) -> Hazard:
    """Re-run the world ``size``/``seed`` and read its hazard after ``day``.

    Customers (a first order on or before ``day``) carry the repeat-order hazard; people not
    yet in the CRM carry 0.

    Example:
        >>> h = hazard_after("tiny", 0, SimParams(), 40)
        >>> bool((h.true >= 0).all()) and h.true.shape == h.observed.shape
        True
    """
    if size not in SIZES:
        raise ValueError(f"hazard_after reproduces the named sizes only ({', '.join(SIZES)}), not {size!r}")
    spec = SIZES[size]
    rng = np.random.default_rng(seed)
    pop = build_population(spec, params, rng)
    probe = _OneDay(day)
    trace = simulate_days(pop, spec, params, rng, probe=probe)
    if day not in probe:
        raise ValueError(f"day {day} is outside the simulated days 0..{spec.days - 1}")
    eta, open_, _terms, _dm = probe[day]
    # the probe is taken before the day's orders: who bought that day is a customer at the cutoff
    customer = (trace.first_order_day >= 0) & (trace.first_order_day <= day)
    still_open = open_ & ~customer
    rate = -np.log(1 - params.base_rate_30d) / 30
    repeat = -np.log(1 - params.repeat_rate_30d) / 30

    def daily(e: np.ndarray) -> np.ndarray:
        norm = np.exp(e[open_]).mean() if open_.any() else 1.0
        return np.where(still_open, rate * np.exp(e) / norm, np.where(customer, repeat, 0.0))

    return Hazard(day=day, true=daily(eta), observed=daily(eta - pop.noise),
                  first_order_day=trace.first_order_day)


class _OneDay(dict):
    """A probe that keeps one day of the simulator's per-day state (all of them would be GBs)."""

    def __init__(self, day: int) -> None:
        super().__init__()
        self.day = day

    def __setitem__(self, key: int, value) -> None:
        if key == self.day:
            super().__setitem__(key, value)
