"""The result of a simulation and its on-disk form (CSV tables, labels.csv, world.json)."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from leadpulse.schemas.events import Activity, Company, Contact, InputEvent, Opportunity, Order
from leadpulse.schemas.tables import format_time, write_table
from leadpulse.schemas.topics import input_spec_for_topic
from leadpulse.simulator.params import SimParams

LABEL_COLUMNS = (
    "contact_id", "company_id", "person_id", "is_duplicate", "seniority", "decision_maker",
    "first_order_at", "n_orders", "person_first_order_day", "committee_member",
    "moved_day", "former_company_id", "champion_mover",
    "fit", "velocity", "engagement", "order", "committee", "champion", "peer", "champion_move", "eta",
)


@dataclass
class World:
    """A simulated CRM.

    Each event list is in arrival order (late rows after later-timed ones); sort by
    ``event_time`` for a point-in-time replay. ``labels`` holds one dict per contact id
    (columns: ``LABEL_COLUMNS``, docs/simulator.md).
    """
    size: str
    seed: int
    params: SimParams
    start: datetime
    end: datetime
    companies: list[Company]
    contacts: list[Contact]
    activities: list[Activity]
    opportunities: list[Opportunity]
    orders: list[Order]
    labels: list[dict]
    stats: dict = field(default_factory=dict)

    @property
    def events(self) -> dict[str, list[InputEvent]]:
        """Events per table stem: companies, contacts, activities, opportunities, orders."""
        return {"companies": self.companies, "contacts": self.contacts,
                "activities": self.activities, "opportunities": self.opportunities,
                "orders": self.orders}

    def all_events(self) -> list[InputEvent]:
        """Every input event, sorted by event time (stable by table order)."""
        out = [e for rows in self.events.values() for e in rows]
        out.sort(key=lambda e: e.event_time)
        return out

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.events.items()} | {"labels": len(self.labels)}

    def write(self, out_dir: Path | str) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for stem, rows in self.events.items():
            write_table(out, input_spec_for_topic(stem), rows)
        with (out / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(LABEL_COLUMNS)
            for row in self.labels:
                w.writerow([_cell(row.get(c)) for c in LABEL_COLUMNS])
        meta = {
            "size": self.size, "seed": self.seed, "params": self.params.to_dict(),
            "start": format_time(self.start), "end": format_time(self.end),
            "counts": self.counts(), "stats": self.stats,
        }
        (out / "world.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return out


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)
