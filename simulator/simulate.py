"""``simulate``: one call from a size and a seed to a CRM world (and its files)."""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Optional

import numpy as np

from leadpulse.simulator.dynamics import simulate_days
from leadpulse.simulator.emit import emit
from leadpulse.simulator.params import SIZES, SimParams, SizeSpec
from leadpulse.simulator.population import build_population
from leadpulse.simulator.world import World

logger = logging.getLogger(__name__)


def simulate(size: str | SizeSpec = "small", seed: int = 0, out_dir: Optional[Path | str] = None,
             params: Optional[SimParams] = None) -> World:
    """Simulate a CRM world; deterministic for a given size, seed and params.

    Args:
        size: ``"tiny"``, ``"small"``, ``"large"`` (``SIZES``) or a ``SizeSpec``. Default small.
        seed: seed of the numpy Generator. Default 0.
        out_dir: if given, write the five CSV tables, ``labels.csv`` and ``world.json`` there.
            Default None.
        params: mechanism strengths and mess. Default ``SimParams()``.

    Example:
        >>> w = simulate("tiny", seed=1)
        >>> sorted(w.counts())[:2]
        ['activities', 'companies']
    """
    spec = SIZES[size] if isinstance(size, str) else size
    params = params or SimParams()
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    pop = build_population(spec, params, rng)
    trace = simulate_days(pop, spec, params, rng)
    t1 = time.perf_counter()
    out = emit(pop, trace, spec, params, rng)
    t2 = time.perf_counter()
    world = World(
        size=size if isinstance(size, str) else "custom", seed=seed, params=params,
        start=params.start, end=params.start + timedelta(days=spec.days),
        companies=out.companies, contacts=out.contacts, activities=out.activities,
        opportunities=out.opportunities, orders=out.orders, labels=out.labels,
        stats={"persons": pop.n_contacts, "duplicate_ids": out.n_duplicates,
               "buying_cycles": trace.cycles, "days": spec.days,
               "job_changes": trace.moves.n_moves,
               "champion_movers": int(trace.champion_mover.sum())},
    )
    if out_dir is not None:
        world.write(out_dir)
    logger.info("simulated %s seed=%d: %s (dynamics %.1fs, rows %.1fs, write %.1fs)", world.size,
                seed, world.counts(), t1 - t0, t2 - t1, time.perf_counter() - t2)
    return world
