"""The subscriber examples (examples/) against the embedded broker, run as users run them.

``crm_sync.py`` reads the scores a live worker published into SQLite: the newest score of
every lead, unchanged by a full re-delivery, never regressed by an older record, and complete
after a SIGKILL in the middle of a run. ``alert_webhook.py`` posts every jump the worker raised
to a local HTTP endpoint, retrying while the endpoint answers 503.
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

COLUMNS = "contact_id, score, tier, model_version, as_of, scored_at, synced_at"


def _example(name: str, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "examples" / name), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    return text


def _rows(db: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(db)
    try:
        return {r[0]: r for r in conn.execute(f"SELECT {COLUMNS} FROM lead_scores")}
    finally:
        conn.close()


def _as_expected(rows: dict[str, tuple], expected: dict[str, dict]) -> bool:
    return set(rows) == set(expected) and all(
        rows[c][1:6] == (v["score"], v["tier"], v["model_version"], v["as_of"], v["scored_at"])
        for c, v in expected.items())


def _records(run, default_topic: str, metric: str) -> list:
    from leadpulse.stream.consume import consume
    return consume(run.bootstrap, [run.topics[default_topic]], int(run.metric(metric)), timeout=60)


def _newest(values: list[dict]) -> dict[str, dict]:
    """contact -> its newest score by (as_of, scored_at), the rule the sync must follow."""
    def key(v):
        return tuple(datetime.fromisoformat(v[k].replace("Z", "+00:00")) for k in ("as_of", "scored_at"))
    out: dict[str, dict] = {}
    for v in values:
        if v["contact_id"] not in out or key(v) > key(out[v["contact_id"]]):
            out[v["contact_id"]] = v
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

    # A new consumer group re-delivers every record: no row is written again (synced_at holds).
    _finish(_example("crm_sync.py", *common, "--group", "crm-b"))
    assert _rows(db) == rows
    # The first group committed its offsets: a restart reads nothing again.
    out = _finish(_example("crm_sync.py", *common, "--group", "crm-a"))
    assert "0 score records applied" in out


def _score(cid: str, as_of: datetime, scored_at: datetime, score: float, version: str = "gnn-v1") -> dict:
    fmt = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    return {"contact_id": cid, "company_id": "co_1", "score": score, "tier": "B", "previous_score": None,
            "delta": 0.0, "model_version": version, "as_of": fmt(as_of), "scored_at": fmt(scored_at),
            "cause": "crm.activities:a1", "top_factors": [{"factor": "demo_request", "contribution": 0.1}]}


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
