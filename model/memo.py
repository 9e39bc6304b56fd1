"""Feature values kept across reads: what depends on a node's attributes alone is computed once.

A lead's 2-hop union holds its colleagues and its company's ring peers (industry and
similar-tech companies), and the same staff and peers come back union after union: every
event of an account rescores its staff. Their token lists, static numbers and one-hot columns
do not depend on the scoring time, so ``model.features`` keeps them here:

- ``by_value``: per categorical field, a string (or missing) value -> its token list;
- ``by_node``: per node type, an attribute dict -> what ``compute`` made of it, found again by
  the dict's identity (a store hands out its stored dicts and never changes them:
  ``Subgraph.attrs``);
- ``columns``: per vocabulary, a token list -> its one-hot columns, by the list's identity.

An identity key is safe because each entry holds the object it was computed from: while the
entry exists no other object can have that id. Every memo starts over past ``ENTRIES``
entries, so a CRM's unbounded free text (titles) cannot grow it without bound.

Example:
    >>> kept = by_node(("doc",), lambda attrs: [len(a) for a in attrs])
    >>> a = {"x": 1}
    >>> kept([a, a, {}])
    [1, 1, 0]
"""
from __future__ import annotations

from functools import lru_cache
from operator import is_, itemgetter
from typing import Any, Callable, Hashable, Optional

__all__ = ["ENTRIES", "ByValue", "ByNode", "by_value", "by_node", "columns", "index"]

#: entries a memo keeps before it starts over: a CRM's free-text titles are unbounded, the
#: simulator's fields have at most a few thousand distinct values
ENTRIES = 200_000


class ByValue(dict):
    """Values by key (a string or None), computed by ``compute(key)`` on first use."""

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, key: Optional[str]) -> Any:
        if len(self) >= ENTRIES:
            self.clear()
        hit = self[key] = self.compute(key)
        return hit


class ByNode:
    """Per attribute dict, ``compute([dicts]) -> [values]`` (batched), kept by the dict's
    identity. Each entry holds its dict, and a hit is checked to be that dict. Fresh dicts
    (activities rebuilt from the store's columns per read) would only fill it: key those by
    value instead."""

    def __init__(self, compute: Callable[[list[dict]], list]) -> None:
        self.compute = compute
        self.entries: dict[int, tuple[dict, Any]] = {}

    def __call__(self, attrs: list[dict]) -> list:
        ids = list(map(id, attrs))
        entries = list(map(self.entries.get, ids))
        if None not in entries and all(map(is_, map(_FIRST, entries), attrs)):
            return list(map(_SECOND, entries))
        miss = [k for k, (e, a) in enumerate(zip(entries, attrs)) if e is None or e[0] is not a]
        got = self.compute([attrs[k] for k in miss])
        if len(self.entries) + len(miss) > ENTRIES:
            self.entries.clear()
        for k, v in zip(miss, got):
            entries[k] = self.entries[ids[k]] = (attrs[k], v)
        return list(map(_SECOND, entries))


_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_BY_VALUE: dict[Hashable, ByValue] = {}
_BY_NODE: dict[Hashable, ByNode] = {}
#: per vocabulary (a spec's field): id of a token list -> (the list, its columns)
_COLUMNS: dict[tuple[str, ...], dict[int, tuple[list, list[int]]]] = {}


def by_value(name: Hashable, compute: Callable[[Any], Any]) -> ByValue:
    """The memo called ``name`` (made with ``compute`` on first use)."""
    memo = _BY_VALUE.get(name)
    if memo is None:
        memo = _BY_VALUE[name] = ByValue(compute)
    return memo


def by_node(name: Hashable, compute: Callable[[list[dict]], list]) -> ByNode:
    """The memo called ``name`` (made with ``compute`` on first use)."""
    memo = _BY_NODE.get(name)
    if memo is None:
        memo = _BY_NODE[name] = ByNode(compute)
    return memo


def columns(values: tuple[str, ...]) -> dict[int, tuple[list, list[int]]]:
    """The one-hot columns kept for the vocabulary ``values``: id of a token list -> (the
    list, its columns). The caller fills it, and clears it past ``ENTRIES``."""
    known = _COLUMNS.get(values)
    if known is None:
        if len(_COLUMNS) >= 64:  # a few models' vocabularies at once; more: start over
            _COLUMNS.clear()
        known = _COLUMNS[values] = {}
    return known


@lru_cache(maxsize=64)
def index(values: tuple[str, ...]) -> dict[str, int]:
    """Column of each value of a vocabulary."""
    return {v: i for i, v in enumerate(values)}
