"""Contact timelines and company orders of one read, kept as columns.

An extraction returns the timelines of every contact it reaches (thousands of entries for 100
seeds). As lists of ``(time, type, page)`` tuples they were the largest share of the read
(docs/graph_store.md#exact-k-hop-extraction): one tuple per entry to build, then to scan in the
cyclic GC's next young collection, then to free. Here they are three columns per read (``TimelineBlock``) cut into
one run of rows per contact (``Timelines``, the ``Subgraph.timelines`` of a store read). Indexing
it gives a ``Timeline`` view, which behaves as the list it stands for (iteration, indexing,
``==`` with a list, ``+``, ``repr``, pickling as a plain list), so code that reads timelines as
lists keeps working. ``model.temporal`` reads the columns directly. Company orders are kept
the same way (``Orders``: time and amount columns, an item is a list of ``(time, amount)``).

Example:
    >>> import numpy as np
    >>> block = TimelineBlock(np.array([5, 7, 9]), np.array([1, 2, 1]), np.array([0, 3, 0]),
    ...                       np.array([None, "page_view", "call", "pricing"], dtype=object))
    >>> tls = Timelines(block, np.array([2, 0, 1]))
    >>> a, empty, b = tls
    >>> a, len(empty), len(b), bool(Timeline.empty(block))
    ([(5, 'page_view', None), (7, 'call', 'pricing')], 0, 1, False)
    >>> a == [(5, "page_view", None), (7, "call", "pricing")], b[0], b + [(10, "call", None)]
    (True, (9, 'page_view', None), [(9, 'page_view', None), (10, 'call', None)])
    >>> tls == [a, [], b], tls[-1] == b
    (True, True)
    >>> Orders(np.array([3, 8]), np.array([10.0, 2.5]), np.array([0, 2]))
    [[], [(3, 10.0), (8, 2.5)]]
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np


class TimelineBlock:
    """Timeline rows of one read, contact after contact, each contact's rows in timeline order.

    ``times`` are micros; ``types`` and ``pages`` are codes into ``strings`` (an object array
    with ``None`` at code 0). The arrays are private copies: the store never changes them.
    """
    __slots__ = ("times", "types", "pages", "strings")

    def __init__(self, times: np.ndarray, types: np.ndarray, pages: np.ndarray, strings: np.ndarray) -> None:
        self.times, self.types, self.pages, self.strings = times, types, pages, strings

    def entries(self, lo: int, hi: int) -> list[tuple]:
        s = self.strings
        return list(zip(self.times[lo:hi].tolist(), s[self.types[lo:hi]].tolist(), s[self.pages[lo:hi]].tolist()))


class Runs(Sequence):
    """One item per node, node ``i`` owning entries ``bounds[i]:bounds[i + 1]`` of its read's
    columns. One object per read; an item is made on access (``_item``)."""
    __slots__ = ("bounds",)

    def __init__(self, lens: np.ndarray) -> None:
        self.bounds = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=self.bounds[1:])

    def _item(self, lo: int, hi: int) -> Sequence:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("node index out of range")
        return self._item(int(self.bounds[i]), int(self.bounds[i + 1]))

    def __iter__(self):
        b = self.bounds.tolist()
        return (self._item(lo, hi) for lo, hi in zip(b, b[1:]))

    def lengths(self) -> np.ndarray:
        return np.diff(self.bounds)

    def tolist(self) -> list[list[tuple]]:
        return [list(x) for x in self]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Runs, list, tuple)):
            return len(self) == len(other) and all(list(a) == list(b) for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a list stand-in: unhashable like a list

    def __repr__(self) -> str:
        return repr(self.tolist())

    def __reduce__(self):
        return (list, (self.tolist(),))


class Timelines(Runs):
    """The timelines of a read's contacts: ``Timeline`` views of one ``TimelineBlock``."""
    __slots__ = ("block",)

    def __init__(self, block: TimelineBlock, lens: np.ndarray) -> None:
        super().__init__(lens)
        self.block = block

    def _item(self, lo: int, hi: int) -> "Timeline":
        return Timeline(self.block, lo, hi)


class Orders(Runs):
    """The orders of a read's companies: company ``i``'s ``(time, amount)`` tuples are entries
    ``bounds[i]:bounds[i + 1]`` of ``times`` (int64 micros) and ``amounts`` (float64)."""
    __slots__ = ("times", "amounts")

    def __init__(self, times: np.ndarray, amounts: np.ndarray, lens: np.ndarray) -> None:
        super().__init__(lens)
        self.times, self.amounts = times, amounts

    def _item(self, lo: int, hi: int) -> list[tuple[int, float]]:
        return list(zip(self.times[lo:hi].tolist(), self.amounts[lo:hi].tolist()))


class Timeline(Sequence):
    """``[(time, type, page), ...]`` of one contact: rows ``lo:hi`` of a ``TimelineBlock``."""
    __slots__ = ("block", "lo", "hi")

    def __init__(self, block: TimelineBlock, lo: int, hi: int) -> None:
        self.block, self.lo, self.hi = block, lo, hi

    @staticmethod
    def empty(block: TimelineBlock) -> "Timeline":
        return Timeline(block, 0, 0)

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.tolist()[i]
        n = self.hi - self.lo
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("timeline index out of range")
        return self.block.entries(self.lo + i, self.lo + i + 1)[0]

    def __iter__(self):
        return iter(self.tolist())

    def tolist(self) -> list[tuple]:
        return self.block.entries(self.lo, self.hi)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Timeline, list)):
            return self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a list stand-in: unhashable like a list

    def __add__(self, other):
        return self.tolist() + list(other)

    def __radd__(self, other):
        return list(other) + self.tolist()

    def __repr__(self) -> str:
        return repr(self.tolist())

    def __reduce__(self):
        return (list, (self.tolist(),))


def shared_block(timelines: Sequence) -> Optional[TimelineBlock]:
    """The block every non-empty timeline in ``timelines`` is a view of, else None (no such
    block: a plain list among them, views of two reads, or nothing but empty timelines)."""
    block = None
    for tl in timelines:
        if tl.__class__ is Timeline:
            if tl.hi == tl.lo:
                continue
            if block is None:
                block = tl.block
            elif tl.block is not block:
                return None
        elif tl:
            return None
    return block
