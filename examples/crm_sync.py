"""Keep the latest leadpulse score of every lead in a CRM table (here: a SQLite file).

A subscriber of ``leads.scores`` (docs/contracts.md). Kafka delivers at least once: after a
crash or a rebalance some records arrive again, and a topic with several partitions gives no
order across leads. The sync is therefore written to be safe under both:

* **idempotent upsert**: a row is replaced only by a strictly newer score, ordered by
  ``(as_of, scored_at)`` (a model swap rescores a lead at the same ``as_of`` with a later
  ``scored_at``). A re-delivered or older record changes nothing, so a row never regresses;
* **commit after write**: offsets are committed to Kafka only after the SQLite transaction
  holding the batch has committed. A crash in between re-delivers the batch, which the upsert
  ignores.

Each row holds the lead's score, tier, factors (``top_factors`` and the signed
``positive_factors`` / ``negative_factors``, JSON lists of {factor, contribution}), percentile
and ``status``. A lead that left the model's population (it converted, or went quiet) gets one
final record with ``status`` ``left_population``: its row stays and says so (status; as_of,
the time it left; scored_at, cause, model_version of that record); score and tier are its last
published ones (the record repeats them), and the factors and percentile stay those of the last
score synced before it (the final record has none). If the lead comes back, its next score makes the row ``active`` again. A table created by
an older version of this script gets the new columns on start (rows already synced read
``active``, their signed factors and percentile NULL until their next score).

    python examples/crm_sync.py --db crm.sqlite                 # KAFKA_BOOTSTRAP from the environment
    python examples/crm_sync.py --db crm.sqlite --idle-exit 10  # stop after 10 s without records

Replace :func:`upsert` with a call to your CRM's API (keyed by contact_id, with the same
"only if newer" condition) to sync a real CRM. It connects like every leadpulse client:
``KAFKA_BOOTSTRAP`` with the TLS and SASL variables of docs/configuration.md (read by
``leadpulse.stream.config.Settings``), and stops at start, naming the cause, when the cluster
cannot be reached with them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from datetime import datetime, timezone
from itertools import groupby
from typing import Iterable, Optional, Union

from leadpulse.stream.config import Settings, SettingsError
from leadpulse.stream.connection import (
    BrokerUnavailable,
    KafkaConnection,
    as_connection,
    check_reachable,
    kafka_python_kwargs,
)

logger = logging.getLogger("crm_sync")

SCHEMA = """
CREATE TABLE IF NOT EXISTS lead_scores (
    contact_id    TEXT PRIMARY KEY,
    company_id    TEXT,
    score         REAL NOT NULL,
    tier          TEXT NOT NULL,
    model_version TEXT NOT NULL,
    as_of         TEXT NOT NULL,     -- event time the score reflects (RFC 3339, as published)
    as_of_us      INTEGER NOT NULL,  -- the same as microseconds since 1970: the ordering key
    scored_at     TEXT NOT NULL,
    scored_at_us  INTEGER NOT NULL,
    cause         TEXT,
    top_factors   TEXT,              -- JSON list of {factor, contribution}, both signs
    synced_at     TEXT NOT NULL,
    positive_factors TEXT,           -- JSON list of the factors raising the score (contribution > 0)
    negative_factors TEXT,           -- JSON list of the factors lowering it (contribution < 0)
    percentile    REAL,              -- 0..100 among the publishing worker's leads; NULL if not ranked
    status        TEXT NOT NULL DEFAULT 'active'  -- active, or left_population (the lead's final record)
)
"""

#: the columns added since the first version of the table: ``open_db`` adds those an existing
#: file lacks (declared as in ``SCHEMA``)
ADDED_COLUMNS = {"positive_factors": "TEXT", "negative_factors": "TEXT", "percentile": "REAL",
                 "status": "TEXT NOT NULL DEFAULT 'active'"}

LEFT_POPULATION = "left_population"

_INSERT = """
INSERT INTO lead_scores (contact_id, company_id, score, tier, model_version, as_of, as_of_us,
                         scored_at, scored_at_us, cause, top_factors, synced_at,
                         positive_factors, negative_factors, percentile, status)
VALUES (:contact_id, :company_id, :score, :tier, :model_version, :as_of, :as_of_us,
        :scored_at, :scored_at_us, :cause, :top_factors, :synced_at,
        :positive_factors, :negative_factors, :percentile, :status)
"""
# Row values compare lexicographically: newer as_of wins, then newer scored_at; equal = no-op.
_NEWER = "WHERE (excluded.as_of_us, excluded.scored_at_us) > (lead_scores.as_of_us, lead_scores.scored_at_us)"

UPSERT = _INSERT + """ON CONFLICT (contact_id) DO UPDATE SET
    company_id = excluded.company_id, score = excluded.score, tier = excluded.tier,
    model_version = excluded.model_version, as_of = excluded.as_of, as_of_us = excluded.as_of_us,
    scored_at = excluded.scored_at, scored_at_us = excluded.scored_at_us, cause = excluded.cause,
    top_factors = excluded.top_factors, positive_factors = excluded.positive_factors,
    negative_factors = excluded.negative_factors, percentile = excluded.percentile,
    status = excluded.status, synced_at = excluded.synced_at
""" + _NEWER

# A lead's final record (status left_population): the same ordering, but the factors and the
# percentile of the last score synced stay (the record has none).
LEAVE = _INSERT + """ON CONFLICT (contact_id) DO UPDATE SET
    company_id = excluded.company_id, score = excluded.score, tier = excluded.tier,
    model_version = excluded.model_version, as_of = excluded.as_of, as_of_us = excluded.as_of_us,
    scored_at = excluded.scored_at, scored_at_us = excluded.scored_at_us, cause = excluded.cause,
    status = excluded.status, synced_at = excluded.synced_at
""" + _NEWER


def micros(text: str) -> int:
    """RFC 3339 timestamp -> microseconds since 1970 (UTC); a zone-less time is taken as UTC."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def open_db(path: str) -> sqlite3.Connection:
    """Open (and create if needed) the SQLite file with the ``lead_scores`` table; a table of an
    older version of this script gets the columns it lacks (``ADDED_COLUMNS``)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")  # readers (your CRM, a test) never block the sync
    with conn:  # one transaction: the table is created or migrated whole
        conn.execute(SCHEMA)
        present = {row[1] for row in conn.execute("PRAGMA table_info(lead_scores)")}
        for name, declaration in ADDED_COLUMNS.items():
            if name not in present:
                logger.info("adding column %s to lead_scores", name)
                conn.execute(f"ALTER TABLE lead_scores ADD COLUMN {name} {declaration}")
    return conn


def row_of(value: bytes) -> Optional[dict]:
    """The table row of one ``leads.scores`` value, or None when it is not a usable score.

    Fields added to the contract later (signed factors, percentile, status) may be missing
    from an older producer's records: empty lists, NULL and ``active``.
    """
    try:
        v = json.loads(value)
        percentile = v.get("percentile")
        return {"contact_id": str(v["contact_id"]), "company_id": v.get("company_id"),
                "score": float(v["score"]), "tier": str(v["tier"]), "model_version": str(v["model_version"]),
                "as_of": v["as_of"], "as_of_us": micros(v["as_of"]),
                "scored_at": v["scored_at"], "scored_at_us": micros(v["scored_at"]),
                "cause": v.get("cause"), "top_factors": json.dumps(v.get("top_factors") or []),
                "positive_factors": json.dumps(v.get("positive_factors") or []),
                "negative_factors": json.dumps(v.get("negative_factors") or []),
                "percentile": None if percentile is None else float(percentile),
                "status": str(v.get("status") or "active"),
                "synced_at": datetime.now(timezone.utc).isoformat()}
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("skipping a record that is not a lead score: %s", exc)
        return None


def upsert(conn: sqlite3.Connection, values: Iterable[bytes]) -> int:
    """Apply a batch of ``leads.scores`` values in one transaction; returns the usable ones.

    Scores go through :data:`UPSERT`, a lead's final ``left_population`` record through
    :data:`LEAVE`, in the order they arrived (a lead's records are on one partition, in order).
    """
    rows = [r for r in map(row_of, values) if r is not None]
    with conn:  # one transaction: the whole batch or nothing
        for left, run in groupby(rows, key=lambda r: r["status"] == LEFT_POPULATION):
            conn.executemany(LEAVE if left else UPSERT, list(run))
    return len(rows)


def run(bootstrap: Union[str, KafkaConnection], topic: str, db: str, group: str,
        idle_exit: Optional[float] = None) -> int:
    """Consume ``topic`` into ``db`` until interrupted (or idle for ``idle_exit`` seconds).

    ``bootstrap``: the cluster, a ``KafkaConnection`` (TLS, SASL) or ``host:port`` (PLAINTEXT).

    Returns the number of records applied (duplicates and older scores included).
    """
    from kafka import KafkaConsumer
    from kafka.errors import CommitFailedError

    kafka = as_connection(bootstrap)
    conn = open_db(db)
    consumer = KafkaConsumer(topic, **kafka_python_kwargs(kafka), group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
                             bootstrap_timeout_ms=int(kafka.request_timeout_s * 1000),
                             client_id="leadpulse-crm-sync")
    applied, last_record = 0, time.monotonic()
    try:
        while True:
            batches = consumer.poll(timeout_ms=1000, max_records=1000)
            records = [r for batch in batches.values() for r in batch]
            if not records:
                if not consumer.assignment():  # still joining the group: not idle yet
                    last_record = time.monotonic()
                elif idle_exit is not None and time.monotonic() - last_record >= idle_exit:
                    break
                continue
            applied += upsert(conn, (r.value for r in records))
            try:
                consumer.commit()  # only after the SQLite commit: a crash in between re-delivers
            except CommitFailedError:  # a rebalance moved the partitions: the new owner re-reads them
                logger.warning("offsets not committed (rebalance); the batch will be re-delivered")
            last_record = time.monotonic()
            logger.info("synced %d records (%d so far)", len(records), applied)
    finally:
        consumer.close(autocommit=False)
        conn.close()
    return applied


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[list] = None) -> int:
    """Command line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", default="crm.sqlite", help="SQLite file (default crm.sqlite)")
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092"),
                   help="Kafka bootstrap (default $KAFKA_BOOTSTRAP or localhost:9092)")
    p.add_argument("--topic", default=os.environ.get("LEADPULSE_TOPIC_SCORES", "leads.scores"),
                   help="score topic (default $LEADPULSE_TOPIC_SCORES or leads.scores)")
    p.add_argument("--group", default="crm-sync", help="consumer group id (default crm-sync)")
    p.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                   help="exit after this many seconds without a record (default: run forever)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `docker stop`: leave through the finally block
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        connection = Settings.from_env().kafka_connection(args.bootstrap)
        check_reachable(connection)
    except (SettingsError, BrokerUnavailable) as exc:
        print(f"crm_sync: {exc}", file=sys.stderr)
        return 2
    try:
        applied = run(connection, args.topic, args.db, args.group, args.idle_exit)
    except KeyboardInterrupt:
        return 130
    print(f"crm_sync: {applied} score records applied to {args.db}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
