"""Live outcome monitoring: published scores joined with what happened in their label window.

A lead's first published score opens an *observation*: its score, tier, ``as_of`` = t, and
the task of the model that scored it. When the lead's account partition's watermark passes the
end of the label window (t + the task's horizon, event time), the observation closes: its label
is the task's own label of the lead at t (``Task.label`` on the graph store, so the target table,
its filter and the threshold are the model's; late, duplicate and deleted events count as they
do in training), and it joins the rolling window of the last ``window`` labelled leads. The
lead's next published score opens its next observation. Over that window the monitor exports
(docs/operating.md#live-outcomes):

* ``leadpulse_outcome_auroc``, ``leadpulse_outcome_average_precision`` (NaN until both classes
  are present), ``leadpulse_outcome_labelled_leads``, ``leadpulse_outcome_positives``;
* ``leadpulse_outcome_conversion_observed{tier}`` (share of the tier's labelled leads that
  converted) and ``leadpulse_outcome_conversion_expected{tier}`` (their mean published score);
* ``leadpulse_outcome_open_leads``: observations waiting for their window to end.

State, in the score book, written in the same commit as the scores whose publication it records
(``stage`` adds to the ``Outputs`` before ``AccountProcessor.commit_published`` commits them):
    ``oo\\x00<contact_id>`` -> the open observation {score, tier, as_of, partition, task, close}
    ``ol\\x00<slot>``       -> a labelled lead {n, score, tier, label}, slot = n mod ``window``
                            (a ring: the oldest is overwritten; no contact id)
    ``oq``                 -> the next n

A deleted or erased lead's open observation is dropped with its score; a lead whose score leaves
this worker (its account moved) takes its observation along (dropped here; its new owner opens
one at its next publication).
"""
from __future__ import annotations

import heapq
import logging
import math
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional, Protocol

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from leadpulse.graph_store.base import GraphStore
from leadpulse.model.calibration import TIERS
from leadpulse.model.task import DEFAULT_TASK, Task, parse_task
from leadpulse.schemas.timeutil import to_micros
from leadpulse.stream.metrics import Metrics
from leadpulse.stream.serving import serving_of
from leadpulse.stream.state import KVState

logger = logging.getLogger(__name__)

__all__ = ["OutcomeMonitor", "OutcomeSummary", "summarise"]

OPEN, LABELLED, NEXT = "oo", "ol", "oq"


class _Stage(Protocol):
    """What the monitor reads of the account stage (``stream.accounts.AccountProcessor``, which
    imports this module)."""
    scorer: Any

    def watermark(self, partition: int) -> Optional[int]: ...

    def owns(self, partition: int) -> bool: ...


@lru_cache(maxsize=16)
def _task(query: str) -> Task:
    return parse_task(query)


@dataclass(frozen=True)
class OutcomeSummary:
    """What the gauges show for a set of labelled leads (``summarise``)."""
    labelled: int
    positives: int
    auroc: float
    average_precision: float
    observed: dict[str, float]
    expected: dict[str, float]


def summarise(scores: np.ndarray, labels: np.ndarray, tiers: list[str]) -> OutcomeSummary:
    """AUROC, average precision and per tier observed / expected conversion (NaN where undefined).

    >>> s = summarise(np.array([.9, .2, .6, .1]), np.array([1., 0., 0., 0.]), ["A", "C", "B", "D"])
    >>> s.auroc, s.average_precision, s.observed["A"], s.expected["B"]
    (1.0, 1.0, 1.0, 0.6)
    """
    both = 0 < labels.sum() < labels.size
    tiers_arr = np.asarray(tiers)
    observed, expected = {}, {}
    for tier in TIERS:
        mask = tiers_arr == tier
        if mask.any():
            observed[tier] = float(labels[mask].mean())
            expected[tier] = float(scores[mask].mean())
    return OutcomeSummary(
        labelled=int(labels.size), positives=int(labels.sum()),
        auroc=float(roc_auc_score(labels, scores)) if both else math.nan,
        average_precision=float(average_precision_score(labels, scores)) if labels.sum() else math.nan,
        observed=observed, expected=expected)


class OutcomeMonitor:
    """Joins published scores with their outcomes and keeps the rolling gauges.

    Args:
        book: the score book (the monitor's keys live beside the scores).
        store: the graph store labels are read from.
        metrics: the worker's metrics (the ``leadpulse_outcome_*`` gauges).
        window: labelled leads the gauges cover (> 0).
        default_task: the task of a model that names none. Default: the default task.
    """

    def __init__(self, book: KVState, store: GraphStore, metrics: Metrics, window: int,
                 default_task: str = DEFAULT_TASK):
        if window <= 0:
            raise ValueError("window must be positive")
        self.book, self.store, self.window, self.default_task = book, store, window, default_task
        self.auroc, self.ap = metrics.outcome_auroc, metrics.outcome_ap
        self.labelled, self.positives = metrics.outcome_labelled, metrics.outcome_positives
        self.observed, self.expected = metrics.outcome_observed, metrics.outcome_expected
        self.open_leads = metrics.outcome_open
        self._load()

    # ------------------------------------------------------------------ state
    def _load(self) -> None:
        #: contact -> (partition, close) of its open observation
        self._open: dict[str, tuple[int, int]] = {}
        #: partition -> heap of (close, contact)
        self._due: dict[int, list[tuple[int, str]]] = {}
        for (cid,), obs in self.book.scan(OPEN):
            self._open[cid] = (obs["partition"], obs["close"])
            self._due.setdefault(obs["partition"], []).append((obs["close"], cid))
        for heap in self._due.values():
            heapq.heapify(heap)
        entries = sorted((e for _, e in self.book.scan(LABELLED)), key=lambda e: e["n"])
        self._ring: deque = deque(((e["score"], e["tier"], e["label"]) for e in entries), maxlen=self.window)
        self._next = self.book.get(NEXT) or 0
        self._staged: Optional[tuple] = None
        self._publish_gauges()

    def stage(self, out: Any, processor: _Stage) -> None:
        """Add to ``out`` (``stream.accounts.Outputs``, before its commit) the observations its scores open, the withdrawn
        ones it drops, and those whose window ended by their partition's watermark, labelled."""
        if self._staged is not None:  # the previous outputs were never committed: back to the book
            self._load()
        opened: dict[str, tuple[int, int]] = {}
        gone = {cid for cid in out.tombstones} | {k[1] for k in out.dropped if k[0] == "s"}
        for cid in gone:
            if cid in self._open:
                out.dropped.append((OPEN, cid))
        default = serving_of(processor.scorer).query or self.default_task
        for s in out.scores:
            cid = s.contact_id
            if cid in self._open or cid in opened or cid in gone:
                continue
            entry = out.book.get(("s", cid)) or {}
            as_of, part = to_micros(s.as_of), int(entry.get("partition", 0))
            close = as_of + _task(default).horizon
            out.book[(OPEN, cid)] = {"score": s.score, "tier": s.tier, "as_of": as_of, "partition": part,
                                     "task": default, "close": close}
            opened[cid] = (part, close)
        closed, labelled = [], []
        for part, heap in self._due.items():
            mark = processor.watermark(part)
            if not processor.owns(part) or mark is None:
                continue
            while heap and heap[0][0] <= mark:
                close, cid = heapq.heappop(heap)
                if self._open.get(cid) != (part, close) or cid in gone:
                    continue  # replaced or withdrawn since it was pushed
                obs = self.book.get(OPEN, cid)
                task = _task(obs.get("task") or self.default_task)
                label = float(task.label(self.store, [cid], obs["as_of"])[0])
                n = self._next + len(labelled)
                out.book[(LABELLED, str(n % self.window))] = {"n": n, "score": obs["score"], "tier": obs["tier"],
                                                             "label": label}
                out.dropped.append((OPEN, cid))
                closed.append(cid)
                labelled.append((obs["score"], obs["tier"], label))
        if labelled:
            out.book[(NEXT,)] = self._next + len(labelled)
        self._staged = (opened, gone, closed, labelled)

    def committed(self) -> None:
        """After the commit of the staged outputs: the in-memory index and the gauges follow."""
        if self._staged is None:
            return
        opened, gone, closed, labelled = self._staged
        self._staged = None
        for cid in closed:
            self._open.pop(cid, None)
        for cid in gone:
            self._open.pop(cid, None)
        for cid, (part, close) in opened.items():
            self._open[cid] = (part, close)
            heapq.heappush(self._due.setdefault(part, []), (close, cid))
        self._ring.extend(labelled)
        self._next += len(labelled)
        self._publish_gauges(changed=bool(labelled))

    def summary(self) -> OutcomeSummary:
        """The gauges' figures over the current window."""
        scores = np.array([r[0] for r in self._ring], dtype=np.float64)
        labels = np.array([r[2] for r in self._ring], dtype=np.float64)
        return summarise(scores, labels, [r[1] for r in self._ring])

    def _publish_gauges(self, changed: bool = True) -> None:
        self.open_leads.set(len(self._open))
        if not changed:
            return
        s = self.summary()
        self.labelled.set(s.labelled)
        self.positives.set(s.positives)
        self.auroc.set(s.auroc)
        self.ap.set(s.average_precision)
        self.observed.clear()
        self.expected.clear()
        for tier, rate in s.observed.items():
            self.observed.labels(tier=tier).set(rate)
            self.expected.labels(tier=tier).set(s.expected[tier])
