"""The simulated world's own hazard as a row of the accuracy benchmark: a yardstick, not a model.

``SimulatorHazard`` scores each test contact by the conversion hazard its person had at the
cutoff (``simulator.reference``), so it sits in the same table as the models, on the same
examples and labels. It only exists for simulated worlds (it reads ``world.json`` and
``labels.csv`` of the tables directory) and never learns anything: ``fit`` does nothing.

Two rows: ``sim_hazard`` (the hazard the orders were drawn from) and ``sim_hazard_observed``
(without the persistent per-person and per-account effects that no data shows).

Run as a script it asks the world alone, at person level (the people with no order yet at the
cutoff; label: a first order in the 30 days after it), how much each mechanism term carries and
how much the hazard of the days after the cutoff adds (a look into the future, so never a
model's figure)::

    python bench/hazard.py --size large --seeds 0,1,2 --cutoff 2026-08-31
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from leadpulse.model.base import ExampleSet, LeadModel
from leadpulse.model.metrics import score_metrics
from leadpulse.schemas.timeutil import to_micros
from leadpulse.simulator import SimParams
from leadpulse.simulator.reference import TERMS, Hazard, hazard_after, hazards, last_whole_day

NAMES = {"sim_hazard": False, "sim_hazard_observed": True}


class SimulatorHazard(LeadModel):
    """P(an order within ``window_days``) = 1 - exp(-window_days * hazard at the cutoff)."""

    def __init__(self, tables_dir: Path | str, observed: bool = False, window_days: int = 30) -> None:
        self.tables_dir = Path(tables_dir)
        self.observed = observed
        self.window_days = window_days
        self.name = "sim_hazard_observed" if observed else "sim_hazard"
        world = json.loads((self.tables_dir / "world.json").read_text())
        self.size, self.seed = world["size"], int(world["seed"])
        self.params = SimParams.from_dict(world["params"])
        self._person = _person_index(self.tables_dir / "labels.csv")
        self._days: dict[int, Hazard] = {}

    def fit(self, train: ExampleSet, valid: Optional[ExampleSet] = None, seed: int = 0) -> "SimulatorHazard":
        return self

    def predict_proba(self, graph, contact_ids: Sequence[str]) -> np.ndarray:
        day = last_whole_day(self.params.start, graph.as_of)
        if day not in self._days:
            self._days[day] = hazard_after(self.size, self.seed, self.params, day)
        h = self._days[day]
        daily = h.observed if self.observed else h.true
        # an id the world never simulated (not in labels.csv) has no hazard: 0
        idx = np.array([self._person.get(c, -1) for c in contact_ids], dtype=np.int64)
        rate = np.where(idx >= 0, daily[np.maximum(idx, 0)], 0.0)
        return -np.expm1(-self.window_days * rate)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "hazard.json").write_text(json.dumps(
            {"tables_dir": str(self.tables_dir), "observed": self.observed, "window_days": self.window_days}))

    @classmethod
    def load(cls, path: Path) -> "SimulatorHazard":
        return cls(**json.loads((Path(path) / "hazard.json").read_text()))


def _person_index(labels_csv: Path) -> dict[str, int]:
    """contact id -> index of its person in the simulator. labels.csv lists the people first,
    row i being person i (``simulator.emit``); a duplicate id names its person's id."""
    with labels_csv.open(newline="", encoding="utf-8") as fh:
        rows = [(r["contact_id"], r["person_id"]) for r in csv.DictReader(fh)]
    first = {cid: i for i, (cid, _p) in enumerate(rows)}
    return {cid: first[person] for cid, person in rows}


def references(tables_dir: Path, names: Sequence[str], window_days: int = 30) -> list[SimulatorHazard]:
    """The reference rows among ``names``."""
    return [SimulatorHazard(tables_dir, observed=NAMES[n], window_days=window_days) for n in names if n in NAMES]


def decompose(size: str, seed: int, cutoff: datetime, window_days: int = 30,
              params: SimParams = SimParams()) -> dict[str, float]:
    """AUROC of the world's hazard at ``cutoff`` for the people with no order yet, labelled by a
    first order in the next ``window_days``: full, observable, observable without each term,
    and the mean hazard over the window up to each one's order (uses the future)."""
    day = last_whole_day(params.start, to_micros(cutoff))
    window = list(range(day + 1, day + 1 + window_days))
    states = hazards(size, seed, params, [day, *window])
    h = states[day]
    fod = h.first_order_day
    people = h.open & ~((fod >= 0) & (fod <= day))
    label = ((fod > day) & (fod <= window[-1])).astype(float)[people]

    def auroc(score: np.ndarray) -> float:
        return float(score_metrics(label, score[people]).auroc)

    out = {"people": int(people.sum()), "first_orders": int(label.sum()),
           "hazard": auroc(h.true), "observed": auroc(h.observed)}
    out.update({f"observed_without_{t}": auroc(h.without(t)) for t in TERMS})
    drawn = np.array([states[d].daily(states[d].eta, after_orders=False) for d in window])
    until = np.array(window)[:, None] <= np.where(fod > day, fod, window[-1])[None, :]
    out["window_mean_future"] = auroc((drawn * until).sum(0) / np.maximum(until.sum(0), 1))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="What the simulated world's own hazard says at a cutoff")
    ap.add_argument("--size", default="large")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cutoff", default="2026-08-31", help="date (UTC midnight) of the cutoff")
    args = ap.parse_args(argv)
    cutoff = datetime.fromisoformat(args.cutoff).replace(tzinfo=timezone.utc)
    rows = {int(s): decompose(args.size, int(s), cutoff) for s in args.seeds.split(",") if s.strip()}
    keys = list(next(iter(rows.values())))
    print(f"{args.size} world, cutoff {args.cutoff}: AUROC of the hazard for the people with no order yet")
    print(f"{'seed':32s}" + "".join(f"{seed:>10}" for seed in rows))
    for k in keys:
        print(f"{k:32s}" + "".join(f"{r[k]:>10,}" if isinstance(r[k], int) else f"{r[k]:>10.3f}"
                                   for r in rows.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
