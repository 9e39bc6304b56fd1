"""Feature values kept across reads: what depends on a node's attributes alone is computed once.

A lead's 2-hop union holds its colleagues and its company's ring peers (industry and
similar-tech companies), and the same staff and peers come back union after union: every
event of an account rescores its staff. Their token lists, static numbers and one-hot columns
do not depend on the scoring time, so ``model.features`` keeps them here:

- ``by_value``: per categorical field, a string (or missing) value -> its token list;
- ``by_node``: per node type, an attribute dict -> what ``compute`` made of it, found again by
  the dict's identity (a store hands out its stored dicts and never changes them:
  ``Subgraph.attrs``); per vocabulary, a token list -> its one-hot columns, the same way.

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

from operator import is_, itemgetter
from typing import Any, Callable, Hashable, Optional

__all__ = ["ENTRIES", "ByValue", "ByNode", "by_value", "by_node"]

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
    """Per object (an attribute dict, a token list), ``compute([objects]) -> [values]``
    (batched), kept by the object's identity. Each entry holds its object, and a hit is checked
    to be that object. Objects made afresh per read (activities rebuilt from the store's
    columns) would only fill it: key those by value instead."""

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


def by_value(name: Hashable, compute: Callable[[Any], Any]) -> ByValue:
    """The memo called ``name`` (made with ``compute`` on first use)."""
    memo = _BY_VALUE.get(name)
    if memo is None:
        memo = _BY_VALUE[name] = ByValue(compute)
    return memo


def by_node(name: Hashable, compute: Callable[[list], list]) -> ByNode:
    """The memo called ``name`` (made with ``compute`` on first use). Names include a model's
    vocabularies, which change with each retrain: past 64 names every memo starts over."""
    memo = _BY_NODE.get(name)
    if memo is None:
        if len(_BY_NODE) >= 64:
            _BY_NODE.clear()
        memo = _BY_NODE[name] = ByNode(compute)
    return memo
