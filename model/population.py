"""The population of a predictive query: which contacts are leads at a time t.

A task's ``FOR EACH contacts.contact_id WHERE <term> [AND <term> ...]`` (``model.task``) keeps,
at each time t, the contacts for which every term holds (docs/model.md#the-task-and-its-population). Terms:

* ``COUNT(<table>.*, <start>, <end>, DAYS) <op> <n>`` with ``start < end <= 0``: the number of
  the contact's rows of ``<table>`` dated in the past window ``(t + start, t + end]`` compared
  with ``n`` (op one of ``= != < <= > >=``). The window is open at its start and closed at its
  end, as a label window is, so with ``end = 0`` an event at exactly t counts (a score at t sees
  it) and one at exactly ``t + start`` does not. Which rows are the contact's, and their dates:

  - ``activities``: its activities (as of t), dated by ``timestamp``;
  - ``orders``: the orders it placed (as of t), dated by ``timestamp``;
  - ``contacts``: the contact itself, dated when it first appears in the CRM (its first record,
    or an earlier activity or order naming it);
  - ``companies``: the company it works at as of t, dated when that company first appears
    (its first record or the first record naming it);
  - ``opportunities``: its account's opportunities as of t (owned by its company) that name it
    or name no contact, each dated when it first appears. A company, contact or opportunity
    counts once: "created in the window" (a target table without a filter counts the same way).

* ``contacts.<field> = '<value>'``: the contact's record valid at t has that field (any column,
  extras included) equal to the value, compared as text.

Everything is read as of t: nothing after t is looked at, so a population at t is known at t
(invariant 1). ``members`` reads a ``Subgraph`` as of t holding the contacts (a snapshot, or
their ``hops``-hop union: what the stream scores anyway) and, for the tables dated by first
appearance, asks the store whether an entity existed at ``t + start`` and ``t + end``.

Example:
    >>> term = CountTerm("orders", -3650, 0, "=", 0)
    >>> term.text(), term.holds(0), term.holds(2)
    ('COUNT(orders.*, -3650, 0, DAYS) = 0', True, False)
    >>> FieldTerm("seniority", "vp").text()
    "contacts.seniority = 'vp'"
"""
from __future__ import annotations

import logging
import operator
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Optional, Sequence, Union

import numpy as np

from leadpulse.graph_store.base import GraphStore, Subgraph
from leadpulse.graph_store.timeline import Timelines
from leadpulse.schemas.timeutil import MICROS_PER_DAY
from leadpulse.schemas.types import COMPANY, CONTACT, OPPORTUNITY, OWNS, PLACED

logger = logging.getLogger(__name__)

__all__ = ["COUNT_TABLES", "OPS", "CountTerm", "FieldTerm", "Term", "as_text", "hops_needed", "members"]

#: tables a population COUNT term may count -> hops of the subgraph it needs around a contact
COUNT_TABLES: dict[str, int] = {"companies": 1, "contacts": 0, "activities": 0,
                                "opportunities": 2, "orders": 1}
#: comparison operators of a COUNT term
OPS: dict[str, Callable[[object, object], object]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class CountTerm:
    """``COUNT(<table>.*, <start_days>, <end_days>, DAYS) <op> <n>`` over a past window.

    Args:
        table: one of ``COUNT_TABLES``.
        start_days: window start in days relative to t (exclusive), ``< end_days``.
        end_days: window end in days relative to t (inclusive), ``<= 0``.
        op: one of ``OPS``.
        n: the non-negative count compared with.
    """
    table: str
    start_days: int
    end_days: int
    op: str
    n: int

    def text(self) -> str:
        return f"COUNT({self.table}.*, {self.start_days}, {self.end_days}, DAYS) {self.op} {self.n}"

    def holds(self, count: Union[int, np.ndarray]):
        """Whether ``count`` (an int or an array of them) satisfies the term."""
        return OPS[self.op](count, self.n)

    def window(self, as_of: int) -> tuple[int, int]:
        """``(lo, hi)`` in micros: the term counts rows dated in ``(lo, hi]``."""
        return as_of + self.start_days * MICROS_PER_DAY, as_of + self.end_days * MICROS_PER_DAY


@dataclass(frozen=True)
class FieldTerm:
    """``contacts.<field> = '<value>'`` on the contact's record valid at t."""
    field: str
    value: str

    def text(self) -> str:
        value = self.value.replace("'", "''")
        return f"contacts.{self.field} = '{value}'"


Term = Union[CountTerm, FieldTerm]


def hops_needed(terms: Sequence[Term]) -> int:
    """Hops of the subgraph ``members`` needs around each contact for ``terms``."""
    return max([COUNT_TABLES[t.table] for t in terms if isinstance(t, CountTerm)], default=0)


def as_text(value: object) -> str:
    """How an attribute compares with a quoted value (``12.0`` is ``'12'``, times RFC 3339)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def members(terms: Sequence[Term], store: GraphStore, contact_ids: Sequence[str], as_of: int,
            graph: Optional[Subgraph] = None) -> np.ndarray:
    """Boolean array: which of ``contact_ids`` are in the population at ``as_of`` (micros).

    Args:
        terms: the population's terms (all must hold); none keeps every contact.
        store: the graph store (existence reads for tables dated by first appearance).
        contact_ids: the contacts to test.
        as_of: the time t.
        graph: a ``Subgraph`` as of ``as_of`` holding ``contact_ids`` with at least
            ``hops_needed(terms)`` hops around them (a snapshot will do). Default None: read
            ``store.subgraph(contact_ids, as_of, hops_needed(terms))``.

    A contact the graph does not hold (it does not exist at ``as_of``) is not a member.
    """
    ids = list(contact_ids)
    keep = np.ones(len(ids), dtype=bool)
    if not terms or not ids:
        return keep
    if graph is None:
        graph = store.subgraph(ids, as_of, hops=hops_needed(terms))
    view = _View(graph, store, ids)
    keep &= view.present
    for term in terms:
        if not keep.any():
            break
        if isinstance(term, FieldTerm):
            keep &= view.field_equals(term.field, term.value)
        else:
            keep &= np.asarray(term.holds(view.count(term, as_of)), dtype=bool)
    return keep


class _View:
    """The contacts' rows in one graph, counted per term."""

    def __init__(self, graph: Subgraph, store: GraphStore, ids: list[str]):
        self.graph, self.store = graph, store
        local = {cid: i for i, cid in enumerate(graph.node_ids.get(CONTACT, ()))}
        self.index = np.array([local.get(cid, -1) for cid in ids], dtype=np.int64)
        self.present = self.index >= 0
        self.ids = ids
        self._exists: dict[tuple[str, str, int], bool] = {}

    # ------------------------------------------------------------------ contact fields
    def field_equals(self, name: str, value: str) -> np.ndarray:
        attrs = self.graph.attrs.get(CONTACT, [])
        out = np.zeros(len(self.ids), dtype=bool)
        for k, i in enumerate(self.index.tolist()):
            got = attrs[i].get(name) if i >= 0 else None
            out[k] = got is not None and as_text(got) == value
        return out

    # ------------------------------------------------------------------ counts
    def count(self, term: CountTerm, as_of: int) -> np.ndarray:
        lo, hi = term.window(as_of)
        if term.table == "activities":
            return self._activities(lo, hi)
        if term.table == "orders":
            return self._edge_counts(PLACED, lo, hi)
        if term.table == "contacts":
            return np.array([int(i >= 0 and self._created(CONTACT, cid, lo, hi))
                             for cid, i in zip(self.ids, self.index.tolist())], dtype=np.int64)
        companies = self._company_of()
        if term.table == "companies":
            return np.array([int(co is not None and self._created(COMPANY, co, lo, hi)) for co in companies],
                            dtype=np.int64)
        return self._opportunities(companies, lo, hi)

    def _activities(self, lo: int, hi: int) -> np.ndarray:
        tls = self.graph.timelines
        out = np.zeros(len(self.ids), dtype=np.int64)
        if isinstance(tls, Timelines):  # one block of columns: count with numpy
            times = tls.block.times
            inside = np.zeros(len(times) + 1, dtype=np.int64)
            np.cumsum((times > lo) & (times <= hi), out=inside[1:])
            ok = self.present & (self.index < len(tls))
            at = self.index[ok]
            out[ok] = inside[tls.bounds[at + 1]] - inside[tls.bounds[at]]
            return out
        for k, i in enumerate(self.index.tolist()):
            if 0 <= i < len(tls):
                out[k] = sum(1 for e in tls[i] if lo < e[0] <= hi)
        return out

    def _edge_counts(self, etype, lo: int, hi: int) -> np.ndarray:
        """Per contact, its ``etype`` edges whose time is in ``(lo, hi]``."""
        edges = self.graph.edges.get(etype)
        out = np.zeros(len(self.ids), dtype=np.int64)
        if edges is None or edges.shape[1] == 0:
            return out
        when = self.graph.edge_time[etype]
        src = edges[0][(when > lo) & (when <= hi)]
        per = np.bincount(src, minlength=len(self.graph.node_ids.get(CONTACT, ())))
        out[self.present] = per[self.index[self.present]]
        return out

    def _company_of(self) -> list[Optional[str]]:
        employers = self.graph.employers()
        return [employers.get(cid) for cid in self.ids]

    def _opportunities(self, companies: list[Optional[str]], lo: int, hi: int) -> np.ndarray:
        edges = self.graph.edges.get(OWNS)
        owned: dict[str, list[int]] = {}
        if edges is not None and edges.shape[1]:
            names = self.graph.node_ids.get(COMPANY, [])
            for co, opp in zip(edges[0].tolist(), edges[1].tolist()):
                owned.setdefault(names[co], []).append(opp)
        opp_ids = self.graph.node_ids.get(OPPORTUNITY, [])
        opp_attrs = self.graph.attrs.get(OPPORTUNITY, [])
        out = np.zeros(len(self.ids), dtype=np.int64)
        for k, (cid, co) in enumerate(zip(self.ids, companies)):
            for j in owned.get(co, ()) if co is not None else ():
                named = opp_attrs[j].get("contact_id")
                if (named is None or named == cid) and self._created(OPPORTUNITY, opp_ids[j], lo, hi):
                    out[k] += 1
        return out

    def _created(self, kind: str, node_id: str, lo: int, hi: int) -> bool:
        """The entity exists at ``hi`` and did not at ``lo``: it first appeared in ``(lo, hi]``."""
        return self._exists_at(kind, node_id, hi) and not self._exists_at(kind, node_id, lo)

    def _exists_at(self, kind: str, node_id: str, t: int) -> bool:
        key = (kind, node_id, t)
        if key not in self._exists:
            self._exists[key] = self.store.node(kind, node_id, t) is not None
        return self._exists[key]
