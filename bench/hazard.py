"""The simulated world's own hazard as a row of the accuracy benchmark: a yardstick, not a model.

``SimulatorHazard`` scores each test contact by the conversion hazard its person had at the
cutoff (``simulator.reference``), so it sits in the same table as the models, on the same
examples and labels. It only exists for simulated worlds (it reads ``world.json`` and
``labels.csv`` of the tables directory) and never learns anything: ``fit`` does nothing.

Two rows: ``sim_hazard`` (the hazard the orders were drawn from) and ``sim_hazard_observed``
(without the persistent per-person and per-account effects that no data shows).
"""
from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from model.base import ExampleSet, LeadModel
from simulator import SimParams
from simulator.reference import Hazard, hazard_after, last_whole_day

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
        params = dict(world["params"])
        params["start"] = datetime.fromisoformat(params["start"].replace("Z", "+00:00"))
        self.params = SimParams(**params)
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
