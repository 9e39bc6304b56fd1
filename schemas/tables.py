"""The CSV table format for bringing a CRM export (docs/tables.md).

One file per entity in a directory: ``companies.csv``, ``contacts.csv``, ``activities.csv``,
``opportunities.csv``, ``orders.csv``. Column names are the topic fields; an empty cell is a
missing value; list fields (``tech_stack``) are ``;``-separated; extra columns are kept as
attributes. Missing files are empty tables.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from leadpulse.schemas.events import InputEvent
from leadpulse.schemas.parse import ParseError, parse_record
from leadpulse.schemas.topics import INPUT_TOPICS, TopicSpec, input_spec_for_topic

LIST_SEP = ";"


@dataclass(frozen=True)
class RowError:
    table: str
    row: int  # 1-based data row (the header is row 0)
    error: ParseError

    def __str__(self) -> str:
        return f"{self.table}.csv row {self.row}: {self.error}"


def _list_fields(spec: TopicSpec) -> set[str]:
    out = set()
    for name, field in spec.model.model_fields.items():
        if "list" in str(field.annotation):
            out.add(name)
    return out


def columns(spec: TopicSpec) -> list[str]:
    """The documented columns of a table, in contract order."""
    return [n for n in spec.model.model_fields]


def read_table(directory: Path | str, spec: TopicSpec) -> tuple[list[InputEvent], list[RowError]]:
    """Parse ``<directory>/<spec.table>.csv``; bad rows come back as errors, never raised."""
    path = Path(directory) / f"{spec.table}.csv"
    if not path.exists():
        return [], []
    lists = _list_fields(spec)
    events: list[InputEvent] = []
    errors: list[RowError] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=1):
            record: dict[str, object] = {}
            for key, value in row.items():
                if key is None or value is None or value == "":
                    continue
                record[key] = [v for v in value.split(LIST_SEP) if v] if key in lists else value
            parsed = parse_record(spec.name, record)
            if isinstance(parsed, ParseError):
                errors.append(RowError(spec.table or spec.name, i, parsed))
            else:
                events.append(parsed)
    return events, errors


def read_tables(directory: Path | str) -> tuple[list[InputEvent], list[RowError]]:
    """Every table in ``directory``, as events sorted by event time (stable by table order)."""
    events: list[InputEvent] = []
    errors: list[RowError] = []
    for spec in INPUT_TOPICS:
        ev, err = read_table(directory, spec)
        events.extend(ev)
        errors.extend(err)
    events.sort(key=lambda e: e.event_time)
    return events, errors


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, (list, tuple)):
        return LIST_SEP.join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def write_table(directory: Path | str, spec: TopicSpec, events: Iterable[InputEvent]) -> Path:
    """Write events as ``<spec.table>.csv`` (contract columns first, then any extras)."""
    path = Path(directory) / f"{spec.table}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(events)
    cols = columns(spec)
    extras = sorted({k for e in rows for k in (e.model_extra or {})} - set(cols))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols + extras)
        for e in rows:
            data = {**e.__dict__, **(e.model_extra or {})}
            writer.writerow([_cell(data.get(c)) for c in cols + extras])
    return path


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, the form every output uses."""
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def event_json(event: InputEvent) -> bytes:
    """The wire form of an input event: UTF-8 JSON, missing optionals left out."""
    return event.model_dump_json(exclude_none=True).encode()  # compact, as json.dumps(separators)


def event_key(event: InputEvent) -> bytes:
    """The message key of an input event (its topic's key field)."""
    spec = input_spec_for_topic(event.kind)
    return str(getattr(event, spec.key_field)).encode()
