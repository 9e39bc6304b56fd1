"""Derived company→company edges: ``industry_peer`` and ``similar_to`` as ring peers.

Companies are put in buckets (industry; MinHash of the tech stack, so two companies share a
``similar_to`` bucket with probability equal to the Jaccard similarity of their stacks). Within
a bucket as of t the members are ordered by a stable hash of their id; each company's peers are
its K/2 predecessors and K/2 successors on that ring (everyone else when the bucket has at most
K + 1 members). The relation is symmetric, the degree is at most K, and it depends only on the
set of members at t, never on arrival order. A company joining or leaving a bucket changes the
peer sets of O(K) ring neighbours only.

The edge time of a derived edge is the larger of the two companies' valid version times.
Derived edges are not persisted: they are a pure function of the replicated company versions.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Optional

import numpy as np

from leadpulse.graph_store.records import stable_hash

INF = (1 << 63) - 1
_NONE = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


class Rings:
    """Bucket membership over time plus cached rings, for the two derived edge kinds (r = 0, 1)."""

    def __init__(self, companies: dict, ks: tuple[int, int], max_breakpoints: int = 32,
                 index: Optional[dict] = None) -> None:
        self.companies = companies          # company id -> Node (shared with the state)
        self.index = index if index is not None else {}   # company id -> node int (``peer_arrays``)
        self.ks = ks
        self.max_breakpoints = max_breakpoints
        self.members: tuple[dict, dict] = ({}, {})   # bucket -> ids that ever had it
        self.changes: tuple[dict, dict] = ({}, {})   # bucket -> sorted version times of its members
        self.latest: tuple[dict, dict] = ({}, {})    # bucket -> sorted [(hash, id)] as of +inf
        self.cache: tuple[dict, dict] = ({}, {})     # bucket -> {interval index: ring}
        self.pcache: tuple[dict, dict] = ({}, {})    # bucket -> {company: peers} as of +inf
        self.lcache: tuple[dict, dict] = ({}, {})    # bucket -> _latest(r, bucket) (as of +inf)
        self.hashes: dict[str, int] = {}
        #: bucket -> sorted [(hash, id, start, end)]: one per version of a member that has the bucket
        self.stints: tuple[dict, dict] = ({}, {})

    # ------------------------------------------------------------------ reads
    def key(self, cid: str) -> tuple[int, str]:
        h = self.hashes.get(cid)
        if h is None:
            h = self.hashes[cid] = stable_hash(cid)
        return (h, cid)

    def bucket_at(self, cid: str, r: int, t: int) -> Optional[str]:
        node = self.companies.get(cid)
        if node is None:
            return None
        i = node.valid(t)
        return node.bk[i][r] if i >= 0 else None

    def ring(self, r: int, bucket: str, t: int) -> list[tuple[int, str]]:
        """Members of ``bucket`` as of ``t``, ordered by (hash, id)."""
        changes = self.changes[r].get(bucket)
        if not changes:
            return []
        idx = bisect_right(changes, t)
        if idx == len(changes):
            return self.latest[r].get(bucket, [])
        per_bucket = self.cache[r].setdefault(bucket, {})
        ring = per_bucket.get(idx)
        if ring is None:   # stints are sorted by (hash, id): the filtered list is the ring
            ring = [(h, c) for h, c, s, e in self.stints[r].get(bucket, ()) if s <= t < e]
            per_bucket[idx] = ring
        return ring

    def ring_peers(self, ring: list, cid: str, k: int) -> list[str]:
        n = len(ring)
        if n <= k + 1:
            return [c for _, c in ring if c != cid]
        pos = bisect_left(ring, self.key(cid))
        half = k // 2
        out = []
        for j in range(1, half + 1):
            out.append(ring[(pos + j) % n][1])
            out.append(ring[(pos - j) % n][1])
        return out

    def peer_arrays(self, r: int, cid: str, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``peers`` as (peer company node ints, edge times) arrays (do not mutate). At the
        bucket's latest times they are rows of matrices computed for the whole ring at once."""
        node = self.companies.get(cid)
        i = node.valid(t) if node is not None else -1
        bucket = node.bk[i][r] if i >= 0 else None
        if bucket is None:
            return _NONE
        if t >= self.changes[r][bucket][-1]:
            pos, _, _, idx, times = self._latest(r, bucket)
            p = pos[cid]
            return idx[p], times[p]
        pairs = self.peers(r, cid, t)
        index = self.index
        return (np.array([index[p] for p, _ in pairs], dtype=np.int64),
                np.array([et for _, et in pairs], dtype=np.int64))

    def peers(self, r: int, cid: str, t: int) -> list[tuple[str, int]]:
        """``(peer id, edge time)`` of ``cid`` along derived kind ``r`` as of ``t`` (do not mutate)."""
        node = self.companies.get(cid)
        if node is None:
            return []
        i = node.valid(t)
        if i < 0 or node.bk[i][r] is None:
            return []
        bucket = node.bk[i][r]
        latest = t >= self.changes[r][bucket][-1]
        if latest:
            per = self.pcache[r].get(bucket)
            if per is None:
                per = self.pcache[r][bucket] = {}
            got = per.get(cid)
            if got is not None:
                return got
        mine = node.times[i]
        if latest:   # every member's newest version is valid (changes[r][b] holds all their times)
            pos, ids, times, _, _ = self._latest(r, bucket)
            n, k, p = len(ids), self.ks[r], pos[cid]
            out = [(ids[q], mine if mine >= times[q] else times[q]) for q in _positions(n, k, p)]
            per[cid] = out
            return out
        out = []
        companies = self.companies
        for p in self.ring_peers(self.ring(r, bucket, t), cid, self.ks[r]):
            times = companies[p].times
            pt = times[companies[p].valid(t)]
            out.append((p, mine if mine >= pt else pt))
        return out

    def _latest(self, r: int, bucket: str) -> tuple:
        """The bucket's latest ring: (id -> position, ids, newest version times, and per position
        the peers' node ints and edge times as matrices), cached until the bucket changes."""
        got = self.lcache[r].get(bucket)
        if got is not None:
            return got
        ids = [c for _, c in self.latest[r].get(bucket, [])]
        times = [self.companies[c].times[-1] for c in ids]
        n, k = len(ids), self.ks[r]
        base = np.arange(n)
        if n <= k + 1:   # everyone else, in ring order
            others = np.arange(max(n - 1, 0))
            q = others[None, :] + (others[None, :] >= base[:, None])
        else:            # successor 1, predecessor 1, successor 2, ...
            offsets = np.array([s * j for j in range(1, k // 2 + 1) for s in (1, -1)])
            q = (base[:, None] + offsets[None, :]) % n
        idx = np.array([self.index[c] for c in ids], dtype=np.int64)
        tarr = np.array(times, dtype=np.int64)
        got = self.lcache[r][bucket] = ({c: p for p, c in enumerate(ids)}, ids, times,
                                        idx[q], np.maximum(tarr[q], tarr[:, None]))
        return got

    # ----------------------------------------------------------------- writes
    def on_version(self, cid: str, node, i: int) -> set[str]:
        """Register version ``i`` of company ``cid`` (already inserted into ``node``).

        Returns the companies whose derived peer set changes for some as-of time (the endpoints
        of derived edges added or removed), excluding changes already implied by ``cid``'s own
        feature change.
        """
        te = node.times[i]
        tn = node.times[i + 1] if i + 1 < len(node.times) else INF
        after = node.bk[i]
        before = node.bk[i - 1] if i > 0 else (None, None)
        touched: set[str] = set()
        plans = []
        for r in (0, 1):
            b, a = before[r], after[r]
            if b == a:
                continue
            points = {te}
            for bucket in (b, a):
                if bucket is not None:
                    ch = self.changes[r].get(bucket, ())
                    lo = bisect_right(ch, te)
                    hi = bisect_left(ch, tn)
                    points.update(ch[lo:hi])
            plans.append((r, b, a, sorted(points)))
        self._register(cid, node, i)
        for r, b, a, points in plans:
            if len(points) > self.max_breakpoints:
                for bucket in (b, a):
                    if bucket is not None:
                        touched |= self.members[r][bucket]
                continue
            for t in points:   # cid left b (its ring lacks cid now), joined a (holds it)
                for bucket in (b, a):
                    if bucket is not None:
                        touched |= self._peer_change(r, self.ring(r, bucket, t), cid)
        touched.discard(cid)
        return touched

    def _peer_change(self, r: int, ring: list, cid: str) -> set[str]:
        """``_diff`` of ``ring`` with and without ``cid`` (``ring`` may hold cid or not)."""
        near = self.window_peers(r, ring, cid)
        if near is not None:
            return near
        key = self.key(cid)
        if key in ring:
            return self._diff(r, ring, [x for x in ring if x != key], cid)
        return self._diff(r, self._with(ring, cid), ring, cid)

    def window_peers(self, r: int, ring: list, cid: str) -> Optional[set[str]]:
        """``_diff`` of ``ring`` with and without ``cid`` when that is only cid's window (the
        ring with cid has more than k + 2 members), read in place; None otherwise. ``ring`` may
        or may not hold cid. Copying the ring twice per breakpoint was a visible share of
        applying a large world (docs/graph_store.md#measurements-behind-the-code)."""
        k, m = self.ks[r], len(ring)
        key = self.key(cid)
        pos = bisect_left(ring, key)
        present = pos < m and ring[pos] == key
        if m + (not present) <= k + 2:
            return None
        after = pos + present
        half = k // 2
        return {ring[(after + j) % m][1] for j in range(half)} | {ring[(pos - 1 - j) % m][1] for j in range(half)}

    def _with(self, ring: list, cid: str) -> list:
        out = list(ring)
        k = self.key(cid)
        if k not in out:
            insort(out, k)
        return out

    def _diff(self, r: int, with_x: list, without_x: list, cid: str) -> set[str]:
        """Companies whose peer set differs between ``with_x`` and ``without_x`` (plus x's peers).

        When both rings are in the windowed regime (``len(with_x) > k + 2``) that is exactly x's
        peers in ``with_x``: a company's window changes iff x is in it, i.e. iff it is within k/2
        of x, and the member it pushes out (or takes back) is at distance <= k/2 from x on the
        other side, another of x's peers (checked exhaustively against the explicit comparison
        below in tests/graph_store/test_index.py).
        """
        k = self.ks[r]
        n = len(with_x)
        out: set[str] = set(self.ring_peers(with_x, cid, k)) if n else set()
        if n > k + 2:
            return out
        for _, c in with_x:
            if c == cid:
                continue
            p1 = set(self.ring_peers(with_x, c, k))
            p2 = set(self.ring_peers(without_x, c, k))
            p1.discard(cid)
            if p1 != p2:
                out.add(c)
                out |= p1 ^ p2
        return out

    def register(self, cid: str, node, i: int) -> None:
        """Register version ``i`` without computing which peer sets changed (bulk load)."""
        self._register(cid, node, i)

    def _register(self, cid: str, node, i: int) -> None:
        # Invariant: changes[r][b] holds every version time of every company that ever had b
        # (any of them can move a member in or out of b, or change an edge time).
        te = node.times[i]
        self._stints(cid, node)
        for r in (0, 1):
            older = {bk[r] for k, bk in enumerate(node.bk) if k != i and bk[r] is not None}
            for bucket in older | ({node.bk[i][r]} - {None}):
                ch = self.changes[r].setdefault(bucket, [])
                if bucket in older:
                    insort(ch, te)
                else:   # first time cid is in this bucket: all its versions matter to it
                    for tv in node.times:
                        insort(ch, tv)
                self.cache[r].pop(bucket, None)
                self.pcache[r].pop(bucket, None)
                self.lcache[r].pop(bucket, None)
            new = node.bk[i][r]
            if new is not None:
                self.members[r].setdefault(new, set()).add(cid)
        if i == len(node.times) - 1:   # newest version: move cid between latest rings
            old = node.bk[i - 1] if i > 0 else (None, None)
            for r in (0, 1):
                if old[r] == node.bk[i][r]:
                    continue
                key = self.key(cid)
                if old[r] is not None:
                    ring = self.latest[r][old[r]]
                    del ring[bisect_left(ring, key)]
                if node.bk[i][r] is not None:
                    insort(self.latest[r].setdefault(node.bk[i][r], []), key)

    def _stints(self, cid: str, node) -> None:
        """Rewrite ``cid``'s stints in every bucket it ever had (its versions just changed)."""
        h, _ = self.key(cid)
        times, n = node.times, len(node.times)
        for r in (0, 1):
            mine: dict[str, list] = {}
            for k, bk in enumerate(node.bk):
                if bk[r] is not None:
                    mine.setdefault(bk[r], []).append((h, cid, times[k], times[k + 1] if k + 1 < n else INF))
            for bucket, new in mine.items():
                lst = self.stints[r].setdefault(bucket, [])
                lo = bisect_left(lst, (h, cid))
                hi = bisect_left(lst, (h, cid, INF + 1))
                lst[lo:hi] = new


def _positions(n: int, k: int, p: int) -> list[int]:
    """Ring positions of the peers of position ``p`` (the order of ``Rings.ring_peers``)."""
    if n <= k + 1:
        return [q for q in range(n) if q != p]
    return [(p + s * j) % n for j in range(1, k // 2 + 1) for s in (1, -1)]
