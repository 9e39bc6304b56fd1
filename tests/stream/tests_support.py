"""Helpers shared by the worker tests."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")



def last_scores(records) -> dict[str, dict]:
    """contact_id -> the last leads.scores value published for it (what a compacted topic
    keeps: a tombstone, the score withdrawn, removes the lead)."""
    out: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.value is None:
            out.pop(r.key.decode(), None)
            continue
        value = json.loads(r.value)
        out[value["contact_id"]] = value
    return out



def graph_signature(store, as_of: int) -> tuple:
    """Everything a snapshot says, in a comparable form (ids, attributes, edges with times)."""
    g = store.snapshot(as_of)
    nodes = tuple(sorted((t, tuple(ids)) for t, ids in g.node_ids.items()))
    attrs = tuple(sorted((t, repr(sorted(zip(g.node_ids[t], map(repr, a))))) for t, a in g.attrs.items()))
    edges = []
    for et, idx in g.edges.items():
        src, _, dst = et
        pairs = sorted(zip((g.node_ids[src][i] for i in idx[0]), (g.node_ids[dst][j] for j in idx[1]),
                           g.edge_time[et].tolist()))
        edges.append((et, tuple(pairs)))
    return nodes, attrs, tuple(sorted(edges))


def publish(run, tables: Path, rate=None) -> int:
    from leadpulse.stream.publish import publish
    report = publish(tables, run.bootstrap, rate=rate, progress=False, topics=run.topics, partitions=2)
    return sum(report.counts.values())



def consume(run, default_topic: str, expected: int, timeout: float = 60):
    from leadpulse.stream.consume import consume
    return consume(run.bootstrap, [run.topics[default_topic]], expected, timeout=timeout)



def settle(run, consumed: int, timeout: float = 240) -> None:
    """Wait until ``consumed`` input events were consumed, no score moved for 6 s and no applied
    event waits for its scores (a coalescing window held: up to ``LEADPULSE_COALESCE_MAX_MS``
    while the worker replays old records)."""
    wait_for(lambda: run.metric("leadpulse_events_consumed_total") >= consumed, timeout,
             f"{consumed} events consumed\n{run.log()}")
    last, since = None, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = run.metric("leadpulse_scores_published_total")
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 6 and run.metric("leadpulse_unpublished_events") == 0:
            return
        time.sleep(1)
    raise AssertionError("scores never settled\n" + run.log())



def open_state(run):
    from leadpulse.graph_store.rocks import RocksDBGraphStore
    from leadpulse.stream.state import KVState
    return RocksDBGraphStore(run.data_dir / "worker" / "graph"), KVState(run.data_dir / "worker" / "scores")



def full_recompute(store, model, leads: dict[str, int]) -> dict[str, float]:
    """contact -> score on the full snapshot as of the given time (the reference)."""
    by_time: dict[int, list[str]] = {}
    for cid, t in leads.items():
        by_time.setdefault(t, []).append(cid)
    out = {}
    for t, ids in by_time.items():
        proba = model.predict_proba(store.snapshot(t), ids)
        out.update(dict(zip(ids, proba.tolist())))
    return out



def assert_published_equal_full(store, model, published: dict[str, dict]) -> None:
    """Every published score (contact -> its last ``leads.scores`` record) equals the full
    recompute on ``store`` as of the record's ``as_of``, within 1e-5 (invariant 2)."""
    from datetime import datetime

    from leadpulse.schemas.timeutil import to_micros
    times = {cid: to_micros(datetime.fromisoformat(v["as_of"].replace("Z", "+00:00")))
             for cid, v in published.items()}
    reference = full_recompute(store, model, times)
    diffs = np.array([abs(reference[c] - published[c]["score"]) for c in published])
    assert diffs.max() <= 1e-5, f"max |incremental - full| = {diffs.max():.2e}"


def caught_up(run, n_events: int) -> bool:
    applied = run.metric("leadpulse_events_applied_total") + run.metric("leadpulse_events_duplicate_total")
    return applied >= n_events


def account_partition(company_id: str, partitions: int = 2) -> int:
    """The account-topic partition of a company: the producers' default partitioner (murmur2)."""
    from kafka.partitioner.default import murmur2
    return (murmur2(company_id.encode()) & 0x7FFFFFFF) % partitions


def book_matches_reference(run, reference, model, owned: Optional[list[int]] = None) -> dict[str, dict]:
    """Check every lead of the account partitions ``owned`` (default: all) against the full
    recompute on ``reference`` as of its partition's watermark; return their book entries.

    The book may also hold leads of partitions the worker owned before a rebalance: those
    are frozen at the handover, the new owner carries them on.
    """
    store, book = open_state(run)
    try:
        marks = {int(k[0]): v for k, v in book.scan("w")}
        entries = {k[0]: v for k, v in book.scan("s") if owned is None or v["partition"] in owned}
        assert entries, "the worker scored no lead"
        # after the decay sweep every lead was checked as of its partition watermark
        assert all(e["checked_as_of"] == marks[e["partition"]] for e in entries.values())
        want = full_recompute(reference, model, {c: marks[e["partition"]] for c, e in entries.items()})
        diffs = np.array([abs(want[c] - e["score"]) for c, e in entries.items()])
        assert diffs.max() <= 1e-5, f"max |incremental - reference| = {diffs.max():.2e}"
        return entries
    finally:
        store.close()
        book.close()


async def read_all(bootstrap: str, topic: str, partitions: int = 2) -> list:
    """Every record of ``topic`` up to its end offsets now."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        ends, out = await c.end_offsets(tps), []
        seen = {tp: 0 for tp in tps}
        while any(seen[tp] < end for tp, end in ends.items()):
            for tp, ms in (await c.getmany(timeout_ms=200)).items():
                out += ms
                seen[tp] = ms[-1].offset + 1
        return out
    finally:
        await c.stop()
