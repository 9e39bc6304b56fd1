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

from leadpulse.schemas.timeutil import MICROS_PER_DAY, to_micros
from leadpulse.simulator.dynamics import TERMS, conversion_hazard, simulate_days
from leadpulse.simulator.params import SIZES, SimParams
from leadpulse.simulator.population import build_population

__all__ = ["TERMS", "Hazard", "hazard_after", "hazards", "last_whole_day"]


@dataclass(frozen=True)
class Hazard:
    """The simulator's state on ``day``, taken before that day's orders (index = person).

    Attributes:
        day: the simulated day.
        eta: the log-hazard the day's orders were drawn from.
        noise: its part nobody can observe (persistent per-person and per-account effects).
        terms: the mechanism terms of ``eta`` (``TERMS``), before their weights.
        open: people in the CRM with no order before the day.
        first_order_day: each person's first order day in the whole run (-1: never), which
            labels.csv's ``person_first_order_day`` also holds (a check of the re-run).
        params: the world's parameters.
    """
    day: int
    eta: np.ndarray
    noise: np.ndarray
    terms: dict
    open: np.ndarray
    first_order_day: np.ndarray
    params: SimParams

    @property
    def true(self) -> np.ndarray:
        """Daily hazard at the end of the day: the one the orders were drawn from."""
        return self.daily(self.eta)

    @property
    def observed(self) -> np.ndarray:
        """The same without ``noise``: the part the CRM's data could explain."""
        return self.daily(self.eta - self.noise)

    def without(self, term: str) -> np.ndarray:
        """``observed`` with one mechanism term left out."""
        return self.daily(self.eta - self.noise - getattr(self.params, f"w_{term}") * self.terms[term])

    def daily(self, eta: np.ndarray, after_orders: bool = True) -> np.ndarray:
        """Daily hazard per person for log-hazard ``eta``. After the day's orders (a cutoff at
        its end), who bought that day is a customer; before them (``after_orders=False``), it
        is the hazard that day's orders were drawn from. Customers carry the repeat-order
        hazard, people not yet in the CRM 0."""
        fod = self.first_order_day
        customer = (fod >= 0) & ((fod <= self.day) if after_orders else (fod < self.day))
        # normalised over the day's open set, as the simulator drew that day's orders
        return conversion_hazard(eta, self.open & ~customer, customer, self.params, norm_over=self.open)


def last_whole_day(start: datetime, as_of_micros: int) -> int:
    """The last simulated day that ended at or before ``as_of`` (-1 before the first)."""
    return (as_of_micros - to_micros(start)) // MICROS_PER_DAY - 1


def hazard_after(size: str, seed: int, params: SimParams, day: int) -> Hazard:
    """Re-run the world ``size``/``seed`` and read its state on ``day``.

    Example:
        >>> h = hazard_after("tiny", 0, SimParams(), 40)
        >>> bool((h.true >= 0).all()) and h.true.shape == h.observed.shape
        True
    """
    return hazards(size, seed, params, [day])[day]


def hazards(size: str, seed: int, params: SimParams, days) -> dict[int, Hazard]:
    """Re-run the world ``size``/``seed`` once and read its state on each of ``days``."""
    if size not in SIZES:
        raise ValueError(f"the re-run reproduces the named sizes only ({', '.join(SIZES)}), not {size!r}")
    spec = SIZES[size]
    wanted = set(days)
    outside = sorted(d for d in wanted if not 0 <= d < spec.days)
    if outside:
        raise ValueError(f"days {outside} are outside the simulated days 0..{spec.days - 1}")
    rng = np.random.default_rng(seed)
    pop = build_population(spec, params, rng)
    probe = _Days(wanted)
    trace = simulate_days(pop, spec, params, rng, probe=probe)
    return {d: Hazard(day=d, eta=eta, noise=pop.noise, terms=terms, open=open_,
                      first_order_day=trace.first_order_day, params=params)
            for d, (eta, open_, terms, _dm) in probe.items()}


class _Days(dict):
    """A probe that keeps the wanted days of the simulator's per-day state (every day would be GBs)."""

    def __init__(self, days: set) -> None:
        super().__init__()
        self.days = days

    def __setitem__(self, key: int, value) -> None:
        if key in self.days:
            super().__setitem__(key, value)
