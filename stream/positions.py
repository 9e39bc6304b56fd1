"""Which consumed records to process, given the positions stored with our own state.

Faust resumes a partition at the consumer group's committed offset; our state stores the
offset it has really consumed (in the same RocksDB write as the state). The two differ after a
crash or a deleted data directory, so every record is checked against the stored position:

* offset <  expected: already reflected in the state -> skip (a replay);
* offset == expected: process, and expect the next one;
* offset >  expected: a gap (the group committed past what the state holds, e.g. the group
  commit of our stored positions failed during a rebalance) -> ask the caller to seek back to
  ``expected``, and again for every later record that still arrives before it. Faust drops
  any record below the highest offset it has delivered (its "read offset"), so records that
  were already fetched past the gap would otherwise raise it again and the partition would
  stall; each seek resets it to ``expected``.

>>> g = PositionGuard({("t", 0): 5})
>>> [g.check("t", 0, o) for o in (3, 5, 7)]
['skip', 'process', 'seek']
>>> g.seek_target("t", 0), g.check("t", 0, 8), g.check("t", 0, 6), g.check("t", 0, 8)
(6, 'seek', 'process', 'seek')
"""
from __future__ import annotations

from typing import Literal, Mapping

Verdict = Literal["process", "skip", "seek"]


class PositionGuard:
    """Tracks the next expected offset of every partition a stage consumes.

    Args:
        positions: (topic, partition) -> next offset stored with the state (missing = 0).
    """

    def __init__(self, positions: Mapping[tuple[str, int], int] = {}):
        self._expected: dict[tuple[str, int], int] = dict(positions)

    def reset(self, positions: Mapping[tuple[str, int], int]) -> None:
        """New stored positions (on assignment, or after a failed batch)."""
        self._expected = dict(positions)

    def check(self, topic: str, partition: int, offset: int) -> Verdict:
        tp = (topic, partition)
        expected = self._expected.get(tp, 0)
        if offset < expected:
            return "skip"
        if offset == expected:
            self._expected[tp] = offset + 1
            return "process"
        return "seek"

    def seek_target(self, topic: str, partition: int) -> int:
        return self._expected.get((topic, partition), 0)
