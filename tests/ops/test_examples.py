"""The subscriber examples (examples/) against the embedded broker, run as users run them.

``crm_sync.py`` reads the scores a live worker published into SQLite: the newest score of
every lead, unchanged by a full re-delivery, never regressed by an older record, and complete
after a SIGKILL in the middle of a run; it migrates a table of its first version and marks a
lead whose final record says it left the population. ``alert_webhook.py`` posts every jump the
worker raised (each carrying its score's signed factors) to a local HTTP endpoint, retrying
while the endpoint answers 503.
"""
from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.ops.ops_support import ROOT, wait_for

pytestmark = pytest.mark.slow

#: what the sync keeps of a record (factor lists as JSON, the rest as published)
SYNCED = ("score", "tier", "model_version", "as_of", "scored_at", "percentile", "status")
FACTORS = ("top_factors", "positive_factors", "negative_factors")
#: what a final ``left_population`` record leaves as the score before it had them
KEPT_ON_LEAVING = ("percentile",) + FACTORS


def _example(name: str, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "examples" / name), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    return text


def _rows(db: Path) -> dict[str, dict]:
    """contact -> its row (factor lists decoded; NULL ones stay None)."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return {r["contact_id"]: {k: (json.loads(r[k]) if k in FACTORS and r[k] is not None else r[k])
                                  for k in r.keys()}
                for r in conn.execute("SELECT * FROM lead_scores")}
    finally:
        conn.close()


def _as_expected(rows: dict[str, dict], expected: dict[str, dict]) -> bool:
    return set(rows) == set(expected) and all(
        {k: rows[c][k] for k in v} == v for c, v in expected.items())


def _records(run, default_topic: str, metric: str) -> list:
    from leadpulse.stream.consume import consume
    return consume(run.bootstrap, [run.topics[default_topic]], int(run.metric(metric)), timeout=60)


def _newest(values: list[dict]) -> dict[str, dict]:
    """contact -> the row the sync must hold: its newest record by (as_of, scored_at); a final
    ``left_population`` record keeps the factors and the percentile of the score before it
    (a lead's records are applied in their order, which is theirs by (as_of, scored_at)).
    Fields an older producer leaves out read as empty lists, null and ``active``."""
    def key(v):
        return tuple(datetime.fromisoformat(v[k].replace("Z", "+00:00")) for k in ("as_of", "scored_at"))
    out: dict[str, dict] = {}
    for v in sorted(values, key=key):
        row = {**{k: v.get(k) for k in SYNCED}, **{k: v.get(k) or [] for k in FACTORS}}
        row["status"] = v.get("status") or "active"
        before = out.get(v["contact_id"])
        if row["status"] == "left_population" and before is not None:
            row.update({k: before[k] for k in KEPT_ON_LEAVING})
        out[v["contact_id"]] = row
    return out


def test_crm_sync_keeps_the_newest_score_of_every_lead_and_ignores_redelivery(live_worker, tmp_path):
    scores = [json.loads(r.value) for r in _records(live_worker, "leads.scores", "leadpulse_scores_published_total")]
    expected = _newest(scores)
    db = tmp_path / "crm.sqlite"
    topic = live_worker.topics["leads.scores"]
    common = ["--db", str(db), "--bootstrap", live_worker.bootstrap, "--topic", topic, "--idle-exit", "3"]

    out = _finish(_example("crm_sync.py", *common, "--group", "crm-a"))
    assert f"{len(scores)} score records applied" in out
    rows = _rows(db)
    assert _as_expected(rows, expected)
    # the worker ranks and explains: its percentiles and signed factors reach the table
    assert all(r["percentile"] is not None for r in rows.values())
    assert any(r["positive_factors"] or r["negative_factors"] for r in rows.values())

    # A new consumer group re-delivers every record: no row is written again (synced_at holds).
    _finish(_example("crm_sync.py", *common, "--group", "crm-b"))
    assert _rows(db) == rows
    # The first group committed its offsets: a restart reads nothing again.
    out = _finish(_example("crm_sync.py", *common, "--group", "crm-a"))
    assert "0 score records applied" in out


def _score(cid: str, as_of: datetime, scored_at: datetime, score: float, version: str = "gnn-v1",
           **fields) -> dict:
    """A ``leads.scores`` value as an older producer wrote it (no signed factors, percentile or
    status), with ``fields`` added or replaced."""
    fmt = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    return {"contact_id": cid, "company_id": "co_1", "score": score, "tier": "B", "previous_score": None,
            "delta": 0.0, "model_version": version, "as_of": fmt(as_of), "scored_at": fmt(scored_at),
            "cause": "crm.activities:a1", "top_factors": [{"factor": "demo_request", "contribution": 0.1}],
            **fields}


def _explained(cid: str, as_of: datetime, score: float, up: str, down: str) -> dict:
    """A score as the worker publishes it now: signed factors, a percentile, status active."""
    pos, neg = {"factor": up, "contribution": 0.2}, {"factor": down, "contribution": -0.05}
    return _score(cid, as_of, as_of + timedelta(seconds=5), score, top_factors=[pos, neg],
                  positive_factors=[pos], negative_factors=[neg], percentile=round(100 * score, 2),
                  status="active")


def _left(cid: str, as_of: datetime, last: dict) -> dict:
    """The final record of a lead that left the population after its score ``last``."""
    return _score(cid, as_of, as_of + timedelta(seconds=5), last["score"], tier=last["tier"],
                  previous_score=last["score"], top_factors=[], positive_factors=[], negative_factors=[],
                  percentile=None, status="left_population", cause="crm.orders:o1")


def _send(broker: str, topic: str, values: list[dict], bad: bytes = b"{not json") -> None:
    """``values`` in order, keyed by contact (a lead's records on one partition), after one
    record that is not JSON."""
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=broker, linger_ms=20)
    producer.send(topic, key=b"ct_bad", value=bad)
    for v in values:
        producer.send(topic, key=v["contact_id"].encode(), value=json.dumps(v).encode())
    producer.flush()
    producer.close()


#: the table as the first version of crm_sync created it (before the signed factors, the
#: percentile and the status)
_OLD_TABLE = """CREATE TABLE lead_scores (contact_id TEXT PRIMARY KEY, company_id TEXT, score REAL NOT NULL,
    tier TEXT NOT NULL, model_version TEXT NOT NULL, as_of TEXT NOT NULL, as_of_us INTEGER NOT NULL,
    scored_at TEXT NOT NULL, scored_at_us INTEGER NOT NULL, cause TEXT, top_factors TEXT, synced_at TEXT NOT NULL)"""


def test_crm_sync_migrates_an_old_table_and_keeps_the_leads_that_left_the_population(broker, tmp_path):
    """An existing table of the first version gains the new columns (its rows read ``active``);
    the signed factors, the percentile and the status are synced; a lead's final
    ``left_population`` record marks its row without erasing its last score's explanation; a
    lead that comes back is active again; re-delivery changes nothing."""
    from leadpulse.stream.topics_admin import ensure_topics

    db = tmp_path / "crm.sqlite"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(_OLD_TABLE)
        conn.execute("INSERT INTO lead_scores VALUES ('ct_kept', 'co_1', 0.4, 'C', 'gnn-v0', '2026-02-01T00:00:00Z', "
                     "1769904000000000, '2026-02-01T00:00:05Z', 1769904005000000, 'decay', '[]', 'then')")
    conn.close()

    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    hour = timedelta(hours=1)
    values = []
    # converts after two scores: its row stays, marked, with the last score and its factors
    a1 = _explained("ct_left", t0, 0.3, "1 demo request in the last 14 days", "no colleague activity")
    a2 = _explained("ct_left", t0 + hour, 0.6, "2 meetings in the last 14 days", "small account")
    values += [a1, a2, _left("ct_left", t0 + 2 * hour, a2)]
    # leaves, then comes back: active again, with its new score
    b1 = _explained("ct_back", t0, 0.5, "pricing page viewed", "no reply for 20 days")
    values += [b1, _left("ct_back", t0 + hour, b1),
               _explained("ct_back", t0 + 2 * hour, 0.2, "webinar attended", "no activity for 40 days")]
    # only its final record was ever synced (a consumer that started late): the row is that record
    values += [_left("ct_late", t0, {"score": 0.7, "tier": "A"})]
    # an old producer's score: no signed factors, percentile or status
    values += [_score("ct_plain", t0, t0 + hour, 0.1)]
    topic = f"ops{uuid.uuid4().hex[:8]}.leads.scores"
    ensure_topics(broker, [topic], partitions=2)
    _send(broker, topic, values)

    args = ["--db", str(db), "--bootstrap", broker, "--topic", topic, "--idle-exit", "3"]
    out = _finish(_example("crm_sync.py", *args, "--group", "crm-a"))
    assert f"{len(values)} score records applied" in out
    rows = _rows(db)
    assert _as_expected({c: r for c, r in rows.items() if c != "ct_kept"}, _newest(values))
    left, back, late, plain, kept = (rows[c] for c in ("ct_left", "ct_back", "ct_late", "ct_plain", "ct_kept"))
    assert (left["status"], left["score"], left["tier"], left["as_of"]) == \
        ("left_population", 0.6, "B", _left("ct_left", t0 + 2 * hour, a2)["as_of"])
    assert left["cause"] == "crm.orders:o1"
    assert (left["positive_factors"], left["negative_factors"], left["percentile"]) == \
        (a2["positive_factors"], a2["negative_factors"], 60.0)
    assert all(f["contribution"] > 0 for f in left["positive_factors"])
    assert all(f["contribution"] < 0 for f in left["negative_factors"])
    assert (back["status"], back["score"], back["positive_factors"][0]["factor"]) == ("active", 0.2, "webinar attended")
    assert (late["status"], late["score"], late["top_factors"], late["percentile"]) == ("left_population", 0.7, [], None)
    assert (plain["status"], plain["positive_factors"], plain["negative_factors"], plain["percentile"]) == \
        ("active", [], [], None)
    # the row of the old table: untouched, read as active, its new columns NULL
    assert (kept["score"], kept["synced_at"], kept["status"]) == (0.4, "then", "active")
    assert (kept["positive_factors"], kept["negative_factors"], kept["percentile"]) == (None, None, None)

    # A new group re-delivers everything (the final records after the scores they follow):
    # nothing is written again.
    _finish(_example("crm_sync.py", *args, "--group", "crm-b"))
    assert _rows(db) == rows


def test_crm_sync_never_regresses_and_completes_after_a_kill(broker, tmp_path):
    """Shuffled, duplicated, out-of-order scores (and one bad record) in a fresh topic; the sync
    is SIGKILLed mid-run and restarted in the same group: the table ends at the newest scores."""
    from kafka import KafkaProducer

    from leadpulse.stream.topics_admin import ensure_topics

    rng = random.Random(7)
    topic = f"ops{uuid.uuid4().hex[:8]}.leads.scores"
    ensure_topics(broker, [topic], partitions=2)
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    values = []
    for i in range(200):
        cid = f"ct_{i:06d}"
        for step in range(rng.randint(1, 60)):
            as_of = t0 + timedelta(hours=step)
            values.append(_score(cid, as_of, as_of + timedelta(seconds=5), rng.random()))
        # a model swap rescored the newest as_of later: that one must win the tie on as_of
        values.append(_score(cid, as_of, as_of + timedelta(hours=1), 0.5, "gnn-v2"))
    expected = _newest(values)
    # every record twice, the second copy after everything else; older scores after newer ones
    records = values + rng.sample(values, len(values))
    rng.shuffle(records)
    producer = KafkaProducer(bootstrap_servers=broker, linger_ms=20)
    producer.send(topic, key=b"ct_bad", value=b"{not json")
    for v in records:
        producer.send(topic, key=v["contact_id"].encode(), value=json.dumps(v).encode())
    producer.flush()
    producer.close()

    db = tmp_path / "crm.sqlite"
    args = ["--db", str(db), "--bootstrap", broker, "--topic", topic, "--group", "crm-kill", "--idle-exit", "4"]
    first = _example("crm_sync.py", *args)

    def some_rows() -> bool:
        try:
            return bool(_rows(db))
        except sqlite3.Error:  # the table does not exist yet
            return False

    try:
        wait_for(some_rows, 60, "the first synced rows", every=0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert not _as_expected(_rows(db), expected), "the kill landed mid-run"

    _finish(_example("crm_sync.py", *args))
    assert _as_expected(_rows(db), expected)


class _Hook(BaseHTTPRequestHandler):
    """Records every POST; answers 503 to the first ``failures`` of them, then 200."""
    received: list = []
    failures = 2

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        fail = _Hook.failures > 0
        _Hook.failures -= fail
        _Hook.received.append((503 if fail else 200, self.headers["Idempotency-Key"], body))
        self.send_response(503 if fail else 200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_alert_webhook_posts_every_jump_once_and_retries_a_failing_endpoint(live_worker):
    alerts = [json.loads(r.value) for r in _records(live_worker, "leads.alerts", "leadpulse_alerts_total")]
    jumps = [a for a in alerts if a["kind"] == "jump"]
    assert jumps, "the live worker raised jump alerts (its threshold is low on purpose)"
    # each carries the signed factors and the percentile of the score that raised it
    assert all(a["percentile"] is not None for a in alerts)
    assert all(f["contribution"] > 0 for a in alerts for f in a["positive_factors"])
    assert all(f["contribution"] < 0 for a in alerts for f in a["negative_factors"])
    assert any(a["positive_factors"] or a["negative_factors"] for a in alerts)
    _Hook.received, _Hook.failures = [], 2
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        out = _finish(_example("alert_webhook.py", "--url", url, "--bootstrap", live_worker.bootstrap,
                               "--topic", live_worker.topics["leads.alerts"], "--group", "hook-a",
                               "--kinds", "jump", "--idle-exit", "3"))
    finally:
        server.shutdown()
        server.server_close()
    assert f"{len(jumps)} alerts delivered" in out
    accepted = [(key, body) for status, key, body in _Hook.received if status == 200]
    assert [s for s, _, _ in _Hook.received].count(503) == 2  # ... and both were retried
    key = lambda a: "|".join(str(a[k]) for k in ("contact_id", "kind", "as_of", "model_version"))  # noqa: E731
    assert sorted(k for k, _ in accepted) == sorted(key(a) for a in jumps)
    for _k, body in accepted:
        assert body["alert"]["kind"] == "jump" and body["alert"]["contact_id"] in body["text"]
