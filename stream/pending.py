"""The account stage's pending set: batches applied to the graph whose leads are not scored yet.

``AccountProcessor`` adds every applied batch here and scores the set when ``due`` says so
(docs/stream.md, "Coalescing under backlog"): at once while the worker keeps up with its input,
after a window while it is behind, so a lead touched by many events in between is scored once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Pending:
    """Applied and not yet scored: affected leads by owner partition, what to commit with them."""
    causes: dict = field(default_factory=dict)  # owner partition -> {lead: cause}
    positions: dict = field(default_factory=dict)  # consumed positions of the batches
    book: dict = field(default_factory=dict)  # score-book writes of the batches (contact owners)
    produced_at: list = field(default_factory=list)  # input record times of the events
    events: int = 0  # events applied
    since: Optional[float] = None  # monotonic time of the first batch
    lag: Optional[float] = None  # seconds the newest record of the last batch was old when applied
    letters: list = field(default_factory=list)  # dead letters of the batches (failed merges)
    forwards: list = field(default_factory=list)  # account-topic records: activities a departure carries
    left: set = field(default_factory=set)  # leads whose newest version is another worker's account now
    moves: dict = field(default_factory=dict)  # lead -> company it left (a job_change alert when scored)
    reached: dict = field(default_factory=dict)  # lead -> earliest time of an event that changed the graph near it

    def empty(self) -> bool:
        return self.since is None

    def add_batch(self, events: int, positions: dict, produced_at: list) -> None:
        if self.since is None:
            self.since = time.monotonic()
        self.events += events
        self.positions.update(positions)
        self.produced_at += produced_at
        self.lag = time.time() - max(produced_at) if produced_at else None

    def add_lead(self, lead: str, partition: int, cause: str) -> None:
        """``lead`` is owned by ``partition`` and was last reached by ``cause``."""
        for other, leads in self.causes.items():  # a handful of partitions at most
            if other != partition:
                leads.pop(lead, None)  # the contact moved account meanwhile
        self.causes.setdefault(partition, {})[lead] = cause

    def reach(self, leads, at: int) -> None:
        """An event at time ``at`` that changed the graph reached ``leads``: each keeps the
        earliest such time."""
        reached = self.reached
        for lead in leads:
            if at < reached.get(lead, at + 1):
                reached[lead] = at

    def due(self, window: float, longest: float = 0.0) -> bool:
        """Score now? Yes unless the worker is behind its input — the newest record of the last
        batch was more than ``window`` seconds old when it was applied — and the oldest batch
        has not yet waited its hold. The hold is what the lag exceeds ``window`` by, at most
        ``window``; further behind, up to half the lag, at most ``longest`` (when that is
        longer than ``window``). Just past the threshold the hold is short, so the tail of a
        worker that keeps up on average does not pay a whole window; far behind, a longer
        window merges more of the backlog's events per lead while adding at most half the
        delay its events already have. ``window`` 0: always."""
        if self.empty():
            return False
        if window <= 0 or self.lag is None or self.lag <= window:
            return True
        hold = min(self.lag - window, max(window, min(longest, self.lag / 2)))
        return time.monotonic() - self.since >= hold
