"""The accuracy benchmark's yardstick: the simulated world's own hazard at a cutoff."""
from __future__ import annotations

import csv
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pytest

from leadpulse.bench.hazard import SimulatorHazard
from leadpulse.model.evaluate import run_evaluation
from leadpulse.simulator import SimParams, simulate
from leadpulse.simulator.reference import hazard_after, last_whole_day

SEED = 3


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    simulate("small", seed=SEED, out_dir=out)
    return out


def _labels(path):
    with (path / "labels.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_rerun_reproduces_the_world_that_wrote_the_tables(small_dir):
    """The hazard is read from a second run of the days; it is only meaningful if that run is
    the same world: every person's first order day matches labels.csv."""
    rows = [r for r in _labels(small_dir) if r["is_duplicate"] == "0"]
    h = hazard_after("small", SEED, SimParams(), 100)
    want = np.array([int(r["person_first_order_day"] or -1) for r in rows])
    assert len(rows) == len(h.first_order_day)
    assert np.array_equal(h.first_order_day, want)
    assert (h.true >= 0).all() and (h.observed >= 0).all()
    # customers by day 100 carry the repeat hazard, one value for all of them
    customer = (want >= 0) & (want <= 100)
    assert customer.any() and np.unique(h.true[customer]).size == 1


def test_cutoff_reads_only_whole_days_before_it():
    start = SimParams().start
    micros = lambda dt: int(dt.timestamp() * 1_000_000)  # noqa: E731
    assert last_whole_day(start, micros(start + timedelta(days=10))) == 9
    assert last_whole_day(start, micros(start + timedelta(days=10, hours=15))) == 9
    assert last_whole_day(start, micros(start + timedelta(days=11)) - 1) == 9


def test_yardstick_row_ranks_the_test_window_and_maps_duplicates_to_their_person(small_dir):
    refs = [SimulatorHazard(small_dir), SimulatorHazard(small_dir, observed=True)]
    report = run_evaluation(small_dir, models=refs)
    for row in report.rows:
        assert row["status"] == "ok", row
        # the hazard the orders were drawn from ranks the next 30 days' buyers far above chance
        assert row["auroc"] > 0.75, row
    ref = refs[0]
    dup = next(r for r in _labels(small_dir) if r["is_duplicate"] == "1")
    as_of = int((SimParams().start + timedelta(days=150)).timestamp() * 1_000_000)
    graph = SimpleNamespace(as_of=as_of)   # the yardstick reads nothing but the cutoff
    a, b = ref.predict_proba(graph, [dup["contact_id"], dup["person_id"]])
    assert a == b
    assert ref.predict_proba(graph, ["ct_unknown"])[0] == 0.0


def test_decomposition_shows_the_account_terms_and_the_future():
    """The figures docs/model.md quotes (there on the large world): leaving out the champion term
    costs the hazard much more than leaving out velocity, and knowing the window's hazard (the
    future) ranks better than the hazard at the cutoff. The small world's ~100 first orders
    are too few to rank the weaker terms reliably."""
    from datetime import datetime, timezone

    from leadpulse.bench.hazard import decompose
    d = decompose("small", SEED, datetime(2026, 5, 31, tzinfo=timezone.utc))
    assert d["first_orders"] > 50
    assert d["window_mean_future"] > d["hazard"] >= d["observed"] - 0.01
    assert d["observed_without_champion"] < d["observed_without_velocity"] - 0.02, d
