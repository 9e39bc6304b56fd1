"""Job changes: who moves to which account on which day, drawn before the days are run.

Every draw comes from a generator of its own, derived from the world's seed
(``moves_rng``), never from the main one: the days and the rows draw exactly what they drew
before job changes existed, so ``job_change_rate=0`` gives the same tables as before, and the
re-run of ``simulator.reference`` plans the same moves.

What happens on a move day (``dynamics.simulate_days``): the person's account becomes
``dest``, seniority rises by ``step`` (capped at c_level), committee membership is re-drawn
at the new account (``join_u`` < affinity, if it is in a buying cycle), and from then on the
person's activities, orders and committee count for the new account. Their intent (the
engagement of the person) carries on and decays as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadpulse.simulator import catalog as cat
from leadpulse.simulator.params import SimParams, SizeSpec
from leadpulse.simulator.population import Population

#: spawn-key tag of the job-change generator (issue 25)
MOVES_STREAM = 25
#: job-change rows are written in the night before the day's activity (which starts at 06:00)
MOVE_ROW_BEFORE_S = 6 * 3600


@dataclass(frozen=True)
class Moves:
    """One planned job change per person at most (index = person).

    Attributes:
        day: day of the move (-1: the person does not move in the run).
        dest: the new account (-1 if no move).
        step: seniority steps up on the move (0 or 1; capped at c_level when applied).
        variant: title variant after the move (half of the movers reword their title).
        join_u: uniform draw; joins the new account's committee if below their affinity.
        sec: second of the move day of the contacts.csv row, for the person's id and for
            their duplicate id (shape (n, 2)), before 06:00.
    """
    day: np.ndarray
    dest: np.ndarray
    step: np.ndarray
    variant: np.ndarray
    join_u: np.ndarray
    sec: np.ndarray

    @property
    def n_moves(self) -> int:
        return int((self.day >= 0).sum())


def moves_rng(rng: np.random.Generator) -> np.random.Generator:
    """A generator derived from the seed of ``rng`` (its SeedSequence), not from its state:
    the same for the simulation and its re-run, and drawing from it leaves ``rng`` untouched."""
    ss = rng.bit_generator.seed_seq
    return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, MOVES_STREAM)))


def plan_moves(pop: Population, size: SizeSpec, p: SimParams, g: np.random.Generator) -> Moves:
    """Draw the job changes of a run.

    A person in the CRM moves with daily hazard ``-log(1 - job_change_rate) / 365`` from the
    day after their record is created (or the start), at most once in the run. The new account
    is another account, in the same industry with probability ``job_change_same_industry``
    (else any), picked in proportion to its number of contacts (bigger accounts hire more);
    when the industry has no other account, any other account.
    """
    if not 0.0 <= p.job_change_rate < 1.0:
        raise ValueError(f"job_change_rate must be in [0, 1), not {p.job_change_rate}")
    n, n_co = pop.n_contacts, pop.n_companies
    if p.job_change_rate == 0 or n_co < 2:
        return no_moves(pop)
    first = np.maximum(pop.created_day + 1, 0)
    q = -np.expm1(np.log1p(-p.job_change_rate) / 365)   # daily probability
    day = first + g.geometric(q, n) - 1
    day = np.where(day < size.days, day, -1)

    own = pop.co
    ind = pop.industry[own]
    same = g.random(n) < p.job_change_same_industry
    by_ind = np.argsort(ind, kind="stable")
    lo = np.searchsorted(ind[by_ind], np.arange(len(cat.INDUSTRIES)))
    hi = np.searchsorted(ind[by_ind], np.arange(len(cat.INDUSTRIES)), side="right")
    dest = np.full(n, -1)
    todo = day >= 0
    for attempt in range(20):   # redraw who landed on their own account
        if attempt == 10:
            same[:] = False        # an industry with no other account: any industry
        u = g.random(n)
        pick_same = pop.co[by_ind[np.minimum(lo[ind] + (u * (hi[ind] - lo[ind])).astype(np.int64), n - 1)]]
        pick_any = pop.co[np.minimum((u * n).astype(np.int64), n - 1)]
        pick = np.where(same, pick_same, pick_any)
        ok = todo & (pick != own)
        dest[ok] = pick[ok]
        todo &= ~ok
    # still unplaced (vanishingly rare): a uniformly drawn other account
    dest[todo] = (own[todo] + 1 + g.integers(0, max(n_co - 1, 1), int(todo.sum()))) % n_co
    step = (g.random(n) < p.job_change_step_up).astype(np.int64)
    variant = np.where(g.random(n) < 0.5, g.integers(0, 12, n), pop.title_variant)
    join_u = g.random(n)
    sec = g.integers(0, MOVE_ROW_BEFORE_S, (n, 2))
    dest = np.where(day >= 0, dest, -1)
    return Moves(day=day, dest=dest, step=step, variant=variant, join_u=join_u, sec=sec)


def no_moves(pop: Population) -> Moves:
    n = pop.n_contacts
    none = np.full(n, -1)
    return Moves(day=none, dest=none, step=np.zeros(n, dtype=np.int64), variant=pop.title_variant.copy(),
                 join_u=np.ones(n), sec=np.zeros((n, 2), dtype=np.int64))
