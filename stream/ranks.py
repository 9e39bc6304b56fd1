"""Where a lead's score stands among the leads a worker currently scores: its percentile.

A Fenwick (binary indexed) tree of counts over the score axis cut into ``BINS`` equal bins
(scores are probabilities, 0..1; a bin is 1e-6 wide, far below the epsilon a score must move by
to be published, so scores equal to six decimals are ties). Setting a lead's score, dropping it
and asking how many scores are below a value each cost O(log BINS), about 20 steps, whatever
the number of leads; a rebuild from the score book costs one pass over it. A map from lead to
the score the tree holds for it makes every update remove exactly what it added.

``percentile(score)`` is ``100 * (leads scoring lower) / (leads scored)``: the top lead of 100
is at 99, the lowest at 0, ties share a value (docs/contracts.md#leadsscores).

Example:
    >>> r = ScoreRanks()
    >>> for i, s in enumerate([0.1, 0.2, 0.3, 0.4]):
    ...     r.set(f"c{i}", s)
    >>> r.percentile(0.3), r.percentile(0.1), len(r)
    (50.0, 0.0, 4)
    >>> r.set("c0", 0.5); r.discard("c1"); r.percentile(0.5)
    66.67
"""
from __future__ import annotations

import logging
from typing import Iterable, Optional

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["ScoreRanks", "BINS"]

#: bins of the score axis: 0, 1e-6, ..., 1
BINS = 1_000_001


def _bin(score: float) -> int:
    return min(BINS - 1, max(0, int(round(float(score) * (BINS - 1)))))


class ScoreRanks:
    """Counts of current scores by bin, with O(log n) updates and rank queries."""

    def __init__(self) -> None:
        self._tree = [0] * (BINS + 1)  # 1-based Fenwick tree
        self._held: dict[str, int] = {}  # lead -> the bin counted for it

    def __len__(self) -> int:
        return len(self._held)

    def _add(self, b: int, delta: int) -> None:
        i, tree, n = b + 1, self._tree, BINS
        while i <= n:
            tree[i] += delta
            i += i & -i

    def _prefix(self, b: int) -> int:
        """Scores in bins [0, b)."""
        i, tree, total = b, self._tree, 0
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def set(self, lead: str, score: float) -> None:
        """Count ``lead`` at ``score`` (replacing its previous score)."""
        b = _bin(score)
        old = self._held.get(lead)
        if old == b:
            return
        if old is not None:
            self._add(old, -1)
        self._add(b, 1)
        self._held[lead] = b

    def discard(self, lead: str) -> None:
        """Stop counting ``lead`` (no effect when it is not counted)."""
        old = self._held.pop(lead, None)
        if old is not None:
            self._add(old, -1)

    def below(self, score: float) -> int:
        """How many counted leads score lower than ``score`` (to six decimals)."""
        return self._prefix(_bin(score))

    def percentile(self, score: float) -> Optional[float]:
        """``100 * below(score) / len(self)``, two decimals; None when nothing is counted."""
        n = len(self._held)
        return round(100.0 * self.below(score) / n, 2) if n else None

    @classmethod
    def build(cls, items: Iterable[tuple[str, float]]) -> "ScoreRanks":
        """A tree of ``(lead, score)`` pairs in one pass (O(n + BINS), no per-lead updates)."""
        ranks = cls()
        held = {lead: _bin(score) for lead, score in items}
        counts = np.zeros(BINS + 1, dtype=np.int64)
        if held:
            np.add.at(counts, np.fromiter(held.values(), dtype=np.int64, count=len(held)) + 1, 1)
        ranks._tree = _linear_fenwick(counts).tolist()
        ranks._held = held
        return ranks


def _linear_fenwick(counts: np.ndarray) -> np.ndarray:
    """Fenwick tree of 1-based ``counts`` (index 0 unused): node i holds the sum of
    counts (i - lowbit(i), i], from prefix sums."""
    prefix = np.cumsum(counts)
    idx = np.arange(len(counts))
    low = idx & -idx
    tree = prefix - prefix[idx - low]
    tree[0] = 0
    return tree
