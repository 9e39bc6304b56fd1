"""A contact's career as of a time: the employers it has left, and their orders while it was there.

A contact's versions say where the person works (``company_id``): the row valid at time s names
the company of s (docs/graph_store.md, "Careers"). As of t, the rows with time <= t, read from
the oldest, form *stints*: maximal runs of consecutive rows naming the same company, each from
its first row's time to the time of the first row after it (a row naming no company, or a
tombstone, ends a stint and starts none; a row that is never valid, a version at a delete's
time, is skipped). The last stint, when the row valid at t names a company, is the *current*
one; every other is *former* (it ended by t).

``Career`` keeps the former stints, each with the times of the orders counted for its company as
of t (``GraphState.corders``, the same list ``Subgraph.orders`` reads) that are dated inside the
stint, and ``joined``, the start of the current stint. A contact without a former stint has the
``EMPTY`` career: most contacts, so a read computes careers only for the contacts whose version
rows ever name two companies (``GraphState.movers``) and hands out ``EMPTY`` for the rest.

Company deletes do not change careers: a stint names the company its rows name, and a deleted
company's orders stay counted for it (docs/graph_store.md, "Deletes").

Example:
    >>> c = Career(joined=50, former=(Stint("co1", 10, 50, (30,)),))
    >>> careers = Careers(3, {1: c})
    >>> careers[0] == EMPTY, careers[1].former[0].orders, len(careers)
    (True, (30,), 3)
    >>> careers == [EMPTY, c, EMPTY]
    True
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np

from leadpulse.graph_store.records import WORKS_AT_J
from leadpulse.graph_store.rings import INF
from leadpulse.schemas.types import CONTACT

if TYPE_CHECKING:
    from leadpulse.graph_store.state import GraphState


class Stint(NamedTuple):
    """Employment at ``company`` during ``[start, end)`` (micros); ``orders``: the times of the
    company's orders (as of the read's time) dated in that interval, oldest first."""
    company: str
    start: int
    end: int
    orders: tuple[int, ...]


class Career(NamedTuple):
    """The former stints of a contact as of t, oldest first, and ``joined``: the start of its
    current stint (None when the row valid at t names no company)."""
    joined: Optional[int]
    former: tuple[Stint, ...]


#: the career of a contact with no former stint
EMPTY = Career(None, ())


class Careers(Sequence):
    """One ``Career`` per contact of a read (``Subgraph.careers``): the few with a former stint
    are stored by local index, every other contact's is ``EMPTY``. Behaves as the list it stands
    for (``==`` with a list, pickling as a list)."""
    __slots__ = ("n", "known")

    def __init__(self, n: int, known: dict[int, Career]) -> None:
        self.n, self.known = n, known

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError("contact index out of range")
        return self.known.get(i, EMPTY)

    def __iter__(self):
        known = self.known
        return (known.get(i, EMPTY) for i in range(self.n))

    def items(self) -> list[tuple[int, Career]]:
        """``(local index, career)`` of the contacts with a former stint, by index."""
        return sorted(self.known.items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Careers, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a list stand-in: unhashable like a list

    def __repr__(self) -> str:
        return repr(list(self))

    def __reduce__(self):
        return (list, (list(self),))


def career_of(state: "GraphState", idx: int, t: int) -> Career:
    """The career of contact node ``idx`` as of ``t`` (``EMPTY`` without a former stint)."""
    return _Reader(state, t)(idx)


class _Reader:
    """``career_of`` for many contacts of one read: the columns looked up once."""
    __slots__ = ("tab", "vt", "ve", "vp", "ref", "names", "corders", "t")

    def __init__(self, state: "GraphState", t: int) -> None:
        tab = self.tab = state.tables[CONTACT]
        self.vt, self.ve, self.vp, self.ref = tab.vt, tab.ve, tab.vp, tab.refs[WORKS_AT_J]
        self.names, self.corders, self.t = state.tables["company"].names, state.corders, t

    def __call__(self, idx: int) -> Career:
        vt, ve, vp, ref, t = self.vt, self.ve, self.vp, self.ref, self.t
        r = self.tab.latest[idx]
        while r >= 0 and vt[r] > t:
            r = vp[r]
        runs: list[tuple[int, int, int]] = []   # (company node or -1, start, end), newest first
        company = start = end = None
        while r >= 0:
            if vt[r] < ve[r]:   # a row never valid (a version at its delete's time) names nothing
                c = ref[r]
                if c == company:
                    start = vt[r]
                else:
                    if company is not None:
                        runs.append((company, start, end))
                    company, end, start = c, (INF if company is None else start), vt[r]
            r = vp[r]
        if company is not None:
            runs.append((company, start, end))
        if len(runs) < 2:
            return EMPTY
        names, corders = self.names, self.corders
        stints = []
        for c, s, e in reversed(runs[1:]):
            if c >= 0:
                entries = corders.get(c)
                orders = tuple(tv for tv, _, until, _ in entries if s <= tv < e and tv <= t < until) if entries else ()
                stints.append(Stint(names[c], s, e, orders))
        if not stints:
            return EMPTY
        current = runs[0]
        return Career(current[1] if current[0] >= 0 else None, tuple(stints))


def careers(state: "GraphState", contacts: np.ndarray, t: int) -> Careers:
    """The careers of a read's contacts (node ints, in local order) as of ``t``: only the movers
    among them are walked."""
    n = len(contacts)
    movers = state.mover_array()
    if not n or not len(movers):
        return Careers(n, {})
    read = _Reader(state, t)
    hit = np.flatnonzero(np.isin(contacts, movers))
    known = {}
    for i, idx in zip(hit.tolist(), contacts[hit].tolist()):
        c = read(idx)
        if c.former:
            known[i] = c
    return Careers(n, known)
