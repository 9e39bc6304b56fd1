"""One node type's nodes and version rows, as columns (the layout ``state.py`` describes).

Integer columns are ``array("q")``: cheap to append to one event at a time and never traversed
by the cyclic GC. ``Table.columns()`` keeps int64 numpy copies of them for the vectorised reads
in ``extract.py``, updated in bulk from what was appended or changed since the last read. A
target node's holder rows per base edge type (``rev``) are native int64s in a ``bytes``.
"""
from __future__ import annotations

import struct
from array import array
from typing import Optional, Sequence

import numpy as np

from leadpulse.graph_store.records import KINDS, REFS, Ref
from leadpulse.schemas.types import ACTIVITY

#: base edge type code -> (holder kind, position of the reference in REFS[holder], Ref)
HOLDER_OF: dict[int, tuple[str, int, Ref]] = {
    ref.etype: (kind, j, ref) for kind, refs in REFS.items() for j, ref in enumerate(refs)}
#: node type -> base edge type codes of the references that point at it
TARGET_CODES: dict[str, tuple[int, ...]] = {
    kind: tuple(code for code, (_, _, ref) in sorted(HOLDER_OF.items()) if ref.target == kind) for kind in KINDS}
_ROW = struct.Struct("q")
pack_row, last_row = _ROW.pack, _ROW.unpack_from


def _ints() -> array:
    """An int64 column. Not a list: the cyclic GC traverses every item of a list on each full
    collection (docs/graph_store.md#measurements-behind-the-code), never an array's."""
    return array("q")


def rows_of(held: Optional[bytes]) -> Sequence[int]:
    """The rows of a ``rev`` entry as a sequence of ints."""
    return memoryview(held).cast("q") if held else ()


def held_at(held: Optional[bytes], vt: Sequence[int], ve: Sequence[int], t: int,
            span: Optional[list] = None) -> list[int]:
    """The rows of a ``rev`` entry valid at ``t``.

    ``span``, a ``[lo, hi]`` holding ``t``, is narrowed to the interval around ``t`` over which
    the answer stays the same (each row's ``vt`` and ``ve`` either side of ``t`` bounds it), so
    a search can reuse what it found at ``t`` for another time inside it.
    """
    if span is None:
        return [h for h in rows_of(held) if vt[h] <= t < ve[h]]
    lo, hi = span
    out = []
    for h in rows_of(held):
        a = vt[h]
        if a > t:
            if a < hi:
                hi = a
            continue
        b = ve[h]
        if b > t:
            out.append(h)
            if a > lo:
                lo = a
            if b < hi:
                hi = b
        elif b > lo:
            lo = b
    span[0], span[1] = lo, hi
    return out


def narrow(span: list, lo: int, hi: int) -> None:
    """Intersect a ``held_at`` span with ``[lo, hi)`` (what one more step of an answer holds for)."""
    if lo > span[0]:
        span[0] = lo
    if hi < span[1]:
        span[1] = hi


def at_only(span: list, t: int) -> None:
    """Narrow a ``held_at`` span to ``t`` alone (an answer whose validity is not tracked)."""
    narrow(span, t, t + 1)


def row_span(tab: "Table", r: int, t: int, span: list) -> None:
    """Narrow ``span`` to where node version row ``r`` (found valid at ``t``; -1: none yet) holds."""
    if r >= 0:
        narrow(span, tab.vt[r], tab.ve[r])
    else:
        at_only(span, t)


class Table:
    """One node type: its nodes (dense ints) and its version rows (columns)."""
    __slots__ = ("kind", "ids", "names", "first", "latest", "vt", "ve", "vp", "vn", "parts", "attrs",
                 "refs", "rev", "ttype", "tpage", "dirty_rows", "dirty_nodes", "mirror", "synced", "tombs",
                 "tomb_mask", "tomb_count")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.ids: dict[str, int] = {}
        self.names: list[str] = []
        self.first = _ints()
        self.latest = _ints()
        self.vt = _ints()
        self.ve = _ints()
        self.vp = _ints()
        self.vn = _ints()
        self.parts: list[int] = []   # a list: masks of partitions >= 63 outgrow an int64
        self.attrs: list[Optional[dict]] = []   # None: rebuilt from the columns (row_attrs)
        self.refs: tuple[array, ...] = tuple(_ints() for _ in REFS[kind])
        #: per base edge type naming this type: per node, the holder rows (native int64 bytes) or None
        self.rev: dict[int, list[Optional[bytes]]] = {code: [] for code in TARGET_CODES[kind]}
        #: activity rows: the timeline entry's type and page, as codes into ``GraphState.strings``
        self.ttype: Optional[array] = _ints() if kind == ACTIVITY else None
        self.tpage: Optional[array] = _ints() if kind == ACTIVITY else None
        #: rows whose ``ve``/``vp`` and nodes whose ``first``/``latest`` changed in place since ``sync``
        self.dirty_rows: list[int] = []
        self.dirty_nodes: list[int] = []
        self.mirror: dict[str, np.ndarray] = {}
        self.synced = [0, 0]   # rows, nodes copied into ``mirror``
        #: rows that are tombstones (a deleted interval of their node); empty in most stores, and
        #: every read checks it before doing any delete-related work
        self.tombs: set[int] = set()
        self.tomb_mask: Optional[np.ndarray] = None   # ``tomb_rows()`` cache
        self.tomb_count = 0

    def add(self, nid: str, first: int) -> int:
        idx = len(self.names)
        self.ids[nid] = idx
        self.names.append(nid)
        self.first.append(first)
        self.latest.append(-1)
        for lst in self.rev.values():
            lst.append(None)
        return idx

    def row_at(self, idx: int, t: int) -> int:
        """Row of node ``idx``'s version valid at ``t`` (-1: none yet)."""
        r = self.latest[idx]
        vt, vp = self.vt, self.vp
        while r >= 0 and vt[r] > t:
            r = vp[r]
        return r

    def dead(self, idx: int, t: int) -> bool:
        """Whether node ``idx`` is deleted at ``t`` (its version valid at ``t`` is a tombstone)."""
        return bool(self.tombs) and self.row_at(idx, t) in self.tombs

    def tomb_rows(self) -> np.ndarray:
        """A bool per row: is it a tombstone (rebuilt when rows or tombstones were added)."""
        m = self.tomb_mask   # rows and tombstones are only ever added: their counts key the cache
        if m is None or len(m) != len(self.vt) or self.tomb_count != len(self.tombs):
            m = np.zeros(len(self.vt), dtype=bool)
            m[list(self.tombs)] = True
            self.tomb_mask, self.tomb_count = m, len(self.tombs)
        return m

    def rows(self, idx: int) -> list[int]:
        """Rows of node ``idx``'s versions, oldest first."""
        out = []
        r = self.latest[idx]
        vp = self.vp
        while r >= 0:
            out.append(r)
            r = vp[r]
        out.reverse()
        return out

    def columns(self) -> dict[str, np.ndarray]:
        """int64 numpy copies of the integer columns (``refs`` as ``ref0``, ``ref1``, ...), brought
        up to date in bulk: rows and nodes appended since the last call, then in-place changes."""
        rows, nodes = len(self.vt), len(self.names)
        done_rows, done_nodes = self.synced
        cols = [("vt", self.vt, rows, done_rows), ("ve", self.ve, rows, done_rows),
                ("vp", self.vp, rows, done_rows), ("vn", self.vn, rows, done_rows),
                ("first", self.first, nodes, done_nodes), ("latest", self.latest, nodes, done_nodes)]
        cols += [(f"ref{j}", col, rows, done_rows) for j, col in enumerate(self.refs)]
        if self.ttype is not None:
            cols += [("ttype", self.ttype, rows, done_rows), ("tpage", self.tpage, rows, done_rows)]
        m = self.mirror
        for name, col, n, done in cols:
            arr = m.get(name)
            if arr is None or len(arr) < n:
                grown = np.empty(max(n, 2 * (0 if arr is None else len(arr)), 1024), dtype=np.int64)
                if arr is not None:
                    grown[:done] = arr[:done]
                arr = m[name] = grown
            if n > done:   # a temporary view: an array exporting its buffer cannot grow
                arr[done:n] = np.frombuffer(col, dtype=np.int64, count=n - done, offset=8 * done)
        if self.dirty_rows:
            idx = self.dirty_rows
            m["ve"][idx] = [self.ve[i] for i in idx]
            m["vp"][idx] = [self.vp[i] for i in idx]
            self.dirty_rows = []
        if self.dirty_nodes:
            idx = self.dirty_nodes
            m["first"][idx] = [self.first[i] for i in idx]
            m["latest"][idx] = [self.latest[i] for i in idx]
            self.dirty_nodes = []
        self.synced = [rows, nodes]
        return {name: m[name][:n] for name, _, n, _ in cols}
