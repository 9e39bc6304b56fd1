"""What a worker knows about the model it serves beyond the model itself: the task it was trained
for, its held-out AUROC, its family and why it serves. ``stream.worker.load_scorer`` reads them
from the registry and attaches them to the scorer as ``scorer.serving``; every reader goes
through ``serving_of``, so a bare ``model.scorer.Scorer`` (a test's, or one built by hand) serves
with the defaults.

>>> from leadpulse.model.task import parse_task
>>> s = Serving(task=parse_task("PREDICT COUNT(orders.*, 0, 30, DAYS) > 0 FOR EACH contacts.contact_id"))
>>> s.query
'PREDICT COUNT(orders.*, 0, 30, DAYS) > 0 FOR EACH contacts.contact_id'
>>> serving_of(object()) == Serving() and Serving().query is None
True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from leadpulse.model.task import Task


@dataclass(frozen=True)
class Serving:
    """The serving facts of one loaded model version.

    Attributes:
        task: the parsed task the model was trained for; it names the population the worker
            scores (docs/stream.md#the-population) and the outcome its scores are judged by.
            None for an unregistered model or one registered without a task: every contact is a
            lead, judged by the default task. Default None.
        auroc: the newest held-out AUROC recorded in the registry (shown beside the version on
            the dashboards), or None. Default None.
        family: the model's family (``gnn``, ``rules``, ...; ``/healthz`` ``model_family``), or
            None. Default None.
        reason: why this version serves: the champion pointer's reason, or that
            ``LEADPULSE_MODEL_VERSION`` pins it (``/healthz`` ``model_reason``), or None.
            Default None.
    """
    task: Optional[Task] = None
    auroc: Optional[float] = None
    family: Optional[str] = None
    reason: Optional[str] = None

    @property
    def query(self) -> Optional[str]:
        """The task's canonical text (``Task.query``), or None without a task."""
        return self.task.query() if self.task is not None else None


def serving_of(scorer: Any) -> Serving:
    """The serving facts attached to ``scorer`` (``scorer.serving``); the defaults for a scorer
    without them, or for None."""
    return getattr(scorer, "serving", None) or Serving()
