"""Training examples and the temporal split (docs/evaluation.md).

Cutoffs lie on a grid anchored at the **test cutoff** T, the latest time whose label window is
fully observed (``T + end ≤ end of data``, T on a whole day), going back every ``step_days``
down to ``start + min_history_days``. At each cutoff t the examples are the contacts that exist
in the CRM at t (a contact record with time ≤ t; stubs made by early activities are skipped)
and are in the task's population at t (its ``WHERE`` terms, ``model.population``: read as of t
only), with features from the graph as of t and labels from ``(t + start, t + end]``.

Gap rule (``gap="strict"``): every example's label window ends at or before the first cutoff of
the next split, so nothing a model is fitted or tuned on happens after the features of the split
it is judged on:

* test = ``[T]``;
* valid = the latest ``valid_cutoffs`` grid cutoffs with ``t + end ≤ T``;
* train = grid cutoffs with ``t + end ≤ min(valid)``.

A short history cannot always afford two gaps. With ``gap="auto"`` (the default), when the
strict rule leaves no training cutoff, the train/valid gap is relaxed (the test gap never is):
valid = the latest cutoff with ``t + end ≤ T``, train = earlier ones with ``t + end ≤ T``.
Train label windows may then overlap the validation window (validation, used only for early
stopping, is optimistic), never the test. The split records which rule it used, and then also
holds the training cutoffs with their labels **censored** at the first validation cutoff
(``TemporalSplit.train_censored``: what was known of them then; a cutoff whose window opens
after it is left out): fits on those judge the candidates on validation honestly
(docs/model.md#the-hybrid-and-the-champion-family).

Example:
    >>> from leadpulse.schemas.timeutil import MICROS_PER_DAY as D
    >>> from leadpulse.model.task import parse_task
    >>> split = plan_split(0, 181 * D, parse_task("PREDICT COUNT(orders.*, 0, 30, DAYS) > 0 "
    ...                                          "FOR EACH contacts.contact_id"))
    >>> [t // D for t in split.test], [t // D for t in split.valid], [t // D for t in split.train][:3]
    ([151], [109, 116], [18, 25, 32])
    >>> split.gap
    'strict'
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Callable, Iterable, Literal, Optional, Sequence

import numpy as np

from leadpulse.graph_store.base import GraphStore, Subgraph
from leadpulse.model.base import CutoffExamples
from leadpulse.model.task import Task
from leadpulse.schemas.events import InputEvent
from leadpulse.schemas.tables import format_time
from leadpulse.schemas.timeutil import MICROS_PER_DAY, from_micros, to_micros

logger = logging.getLogger(__name__)

__all__ = ["SplitOptions", "SplitPlan", "TemporalSplit", "SplitError", "data_span", "plan_split",
           "contacts_at", "population_at", "sample_examples", "build_examples", "build_split", "censor",
           "SAMPLE_HOPS"]


class SplitError(ValueError):
    """The data is too short (or empty) for the requested task and split."""


@dataclass(frozen=True)
class SplitOptions:
    """How cutoffs are placed and split.

    Args:
        step_days: days between consecutive cutoffs. Default 7.
        min_history_days: no cutoff before ``start + min_history_days`` (features need some
            history). Default 14.
        valid_cutoffs: number of validation cutoffs under the strict rule. Default 2.
        gap: ``"strict"`` (raise when the strict rule leaves no training cutoff) or ``"auto"``
            (relax the train/valid gap then; the test gap is always strict). Default ``"auto"``.
        max_train_cutoffs: keep only the latest this many training cutoffs (None = all).
        max_train_examples: per *training* cutoff, keep every positive and a seeded uniform
            sample of the negatives so that at most this many examples remain (None = all).
            Kept negatives carry the weight 1/p (p = their sampling rate). A sampled cutoff's
            graph is the exact 2-hop subgraph of its examples, not the whole snapshot.
            Validation and test cutoffs are never sampled. Default 20_000 (a no-op on
            exports with fewer contacts; it bounds time and memory on large ones).
        sample_seed: seed of that sampling (one generator per cutoff, so a cutoff's sample
            does not depend on which other cutoffs are built). Default 0.
    """
    step_days: int = 7
    min_history_days: int = 14
    valid_cutoffs: int = 2
    gap: Literal["strict", "auto"] = "auto"
    max_train_cutoffs: Optional[int] = None
    max_train_examples: Optional[int] = 20_000
    sample_seed: int = 0


@dataclass(frozen=True)
class SplitPlan:
    """Cutoff times (micros, ascending) of each split, and the gap rule that produced them."""
    train: tuple[int, ...]
    valid: tuple[int, ...]
    test: tuple[int, ...]
    gap: str
    start: int
    end: int

    def describe(self) -> dict:
        """The plan as JSON-ready RFC 3339 strings."""
        def fmt(ts: Sequence[int]) -> list[str]:
            return [format_time(from_micros(t)) for t in ts]
        return {"train": fmt(self.train), "valid": fmt(self.valid), "test": fmt(self.test),
                "gap": self.gap, "data_start": fmt([self.start])[0], "data_end": fmt([self.end])[0]}


@dataclass
class TemporalSplit:
    """Examples of each split, plus the plan they came from."""
    plan: SplitPlan
    train: list[CutoffExamples] = field(default_factory=list)
    valid: list[CutoffExamples] = field(default_factory=list)
    test: list[CutoffExamples] = field(default_factory=list)
    #: a relaxed split's training cutoffs with labels cut at the first validation cutoff (empty
    #: on a strict split, whose training labels all end by then anyway)
    train_censored: list[CutoffExamples] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for name in ("train", "valid", "test"):
            ex = getattr(self, name)
            labels = np.concatenate([e.labels for e in ex]) if ex else np.zeros(0)
            out[name] = {"cutoffs": len(ex), "examples": int(labels.size),
                         "positives": int(np.nansum(labels))}
        return out


def data_span(events: Iterable[InputEvent]) -> tuple[int, int]:
    """``(start, end)`` of the data in micros.

    ``end`` is the latest event time. ``start`` is the first *behavioural* event (activity,
    opportunity or order): CRM records of companies and contacts often carry creation times
    years before tracking began, which would put cutoffs where nothing was recorded. Without
    behavioural events it is the first event of any kind.

    Raises:
        SplitError: there are no events.
    """
    times, behaviour = [], []
    for e in events:
        t = to_micros(e.event_time)
        times.append(t)
        if e.kind in ("activity", "opportunity", "order"):
            behaviour.append(t)
    if not times:
        raise SplitError("no events: nothing to evaluate")
    return min(behaviour or times), max(times)


def _floor_day(t: int) -> int:
    return (t // MICROS_PER_DAY) * MICROS_PER_DAY


def plan_split(start: int, end: int, task: Task, options: SplitOptions = SplitOptions()) -> SplitPlan:
    """Place cutoffs for data spanning ``[start, end]`` (micros); see the module doc."""
    step = options.step_days * MICROS_PER_DAY
    if step <= 0:
        raise SplitError("step_days must be positive")
    first = start + options.min_history_days * MICROS_PER_DAY
    test = _floor_day(end - task.horizon)
    if test < first:
        days = (end - start) / MICROS_PER_DAY
        raise SplitError(
            f"the data spans {days:.1f} days; the task needs {options.min_history_days} days of "
            f"history plus a {task.end_days}-day label window before the test cutoff")
    grid = [t for t in range(test - step, first - 1, -step)][::-1]
    eligible = [t for t in grid if t + task.horizon <= test]
    valid = eligible[-options.valid_cutoffs:] if options.valid_cutoffs > 0 else []
    train = [t for t in grid if valid and t + task.horizon <= valid[0]]
    gap = "strict"
    if not train:
        if options.gap == "strict":
            raise SplitError("the strict gap rule leaves no training cutoff; use gap='auto', a "
                             "shorter window, or more history")
        gap = "relaxed"
        valid = eligible[-1:]
        train = eligible[:-1]
        if not train:  # a single eligible cutoff: train on it, no validation
            train, valid = eligible, []
        if not train:
            raise SplitError(
                f"no training cutoff: the data needs at least {options.min_history_days} + "
                f"2 x {task.end_days} days (it spans {(end - start) / MICROS_PER_DAY:.1f})")
        logger.warning("temporal split: relaxed train/valid gap (history too short for a strict gap)")
    if options.max_train_cutoffs:
        train = train[-options.max_train_cutoffs:]
    return SplitPlan(tuple(train), tuple(valid), (test,), gap, start, end)


def contacts_at(store: GraphStore, as_of: int) -> list[str]:
    """Contacts with a CRM record at ``as_of`` (sorted); stub nodes (no attributes) are skipped."""
    return [c for c in store.node_ids("contact", as_of) if store.node("contact", c, as_of)]


def population_at(store: GraphStore, task: Task, as_of: int) -> list[str]:
    """The contacts that are leads at ``as_of``: ``contacts_at`` kept by the task's population
    (every one of them when the task has none)."""
    ids = contacts_at(store, as_of)
    if not task.population or not ids:
        return ids
    inside = task.in_population(store, ids, as_of)
    logger.info("cutoff %s: %d of %d contacts in the population", format_time(from_micros(as_of)),
                int(inside.sum()), len(ids))
    return [cid for cid, keep in zip(ids, inside.tolist()) if keep]


#: hops of the subgraph that replaces a sampled cutoff's snapshot: the receptive field of every
#: model here (2 GNN layers; the baselines' colleague and peer-company aggregates are 2 hops)
SAMPLE_HOPS = 2


def sample_examples(labels: np.ndarray, max_examples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices to keep (sorted) and their weights: every positive (and unlabelled example) plus
    a uniform sample of negatives, at most ``max_examples`` in all (never fewer negatives than
    positives while there are negatives to draw). Negatives weigh ``n_negatives / n_kept``.

    Example:
        >>> keep, w = sample_examples(np.array([1., 0, 0, 0, 0, 0]), 3, np.random.default_rng(0))
        >>> len(keep), sorted(w.tolist())
        (3, [1.0, 2.5, 2.5])
    """
    neg = np.flatnonzero(labels == 0)
    other = np.flatnonzero(labels != 0)  # positives (and NaN: never dropped)
    k = min(len(neg), max(max_examples - len(other), len(other)))
    picked = rng.choice(neg, size=k, replace=False) if k < len(neg) else neg
    keep = np.sort(np.concatenate([other, picked]))
    weights = np.ones(len(keep))
    if k:
        weights[labels[keep] == 0] = len(neg) / k
    return keep, weights


def build_examples(store: GraphStore, task: Task, cutoffs: Sequence[int], *,
                   cache_graphs: bool = False,
                   labels_from: Optional[Sequence[InputEvent]] = None,
                   max_examples: Optional[int] = None, sample_seed: int = 0) -> list[CutoffExamples]:
    """One ``CutoffExamples`` per cutoff: contacts existing at t and in the task's population
    at t (``Task.in_population``), labels from the task.

    Args:
        store: the graph store holding every event (labels read it as of t + end).
        task: the prediction task.
        cutoffs: cutoff times in micros.
        cache_graphs: keep each graph after its first build (faster when several models
            read the same cutoffs; costs memory). Default False.
        labels_from: compute labels from these raw events instead of the store (reference).
        max_examples: subsample negatives of cutoffs with more examples (``sample_examples``);
            such a cutoff's graph is the exact ``SAMPLE_HOPS``-hop subgraph of its examples.
            Only for training cutoffs. Default None (every contact, the whole snapshot).
        sample_seed: seed of the sampling. Default 0.
    """
    out = []
    for t in cutoffs:
        ids = population_at(store, task, t)
        labels = task.label(labels_from if labels_from is not None else store, ids, t)
        weights = None
        if max_examples is not None and len(ids) > max_examples:
            rng = np.random.default_rng([sample_seed, t // MICROS_PER_DAY])
            keep, weights = sample_examples(labels, max_examples, rng)
            ids, labels = [ids[i] for i in keep], labels[keep]
            logger.info("cutoff %s: %d examples sampled (all %d positives)", format_time(from_micros(t)),
                        len(ids), int(np.nansum(labels)))
        out.append(CutoffExamples(as_of=t, contact_ids=ids, labels=labels,
                                  build_graph=_graph_builder(store, t, cache_graphs,
                                                             ids if weights is not None else None),
                                  weights=weights))
    return out


def _graph_builder(store: GraphStore, t: int, cache: bool,
                   seeds: Optional[list[str]] = None) -> Callable[[], Subgraph]:
    def build() -> Subgraph:
        return store.snapshot(t) if seeds is None else store.subgraph(seeds, t, hops=SAMPLE_HOPS)
    return lru_cache(maxsize=1)(build) if cache else build


def build_split(store: GraphStore, task: Task, start: int, end: int,
                options: SplitOptions = SplitOptions(), *, cache_graphs: bool = False,
                cache_train: Optional[bool] = None) -> TemporalSplit:
    """Plan the split for data in ``[start, end]`` and build the examples of every split.

    ``cache_graphs`` keeps every cutoff's graph once built; ``cache_train`` (default: the same)
    does so for the training cutoffs only, e.g. when they are bounded 2-hop subgraphs while
    the validation and test snapshots are too big to keep.
    """
    plan = plan_split(start, end, task, options)
    train = build_examples(store, task, plan.train,
                           cache_graphs=cache_graphs if cache_train is None else cache_train,
                           max_examples=options.max_train_examples, sample_seed=options.sample_seed)
    return TemporalSplit(
        plan=plan, train=train,
        valid=build_examples(store, task, plan.valid, cache_graphs=cache_graphs),
        test=build_examples(store, task, plan.test, cache_graphs=cache_graphs),
        train_censored=censor(store, task, train, plan.valid[0]) if plan.gap == "relaxed" and plan.valid else [],
    )


def censor(store: GraphStore, task: Task, examples: Sequence[CutoffExamples], until: int) -> list[CutoffExamples]:
    """``examples`` relabelled with their label windows cut at ``until`` (the same leads, graphs
    and weights); a cutoff whose window opens at or after ``until`` has nothing known and is
    left out."""
    return [replace(ex, labels=task.label(store, ex.contact_ids, ex.as_of, until=until))
            for ex in examples if ex.as_of + task.window_micros[0] < until]
