"""``leadpulse erase --contact ID``: ask every worker to erase a person (right to erasure).

The request goes to the erasures topic (key contact_id); each worker reads every request and
removes the person from all the state it keeps (``leadpulse.stream.erasure``; docs/operating.md,
"Erasing a person", also for what stays in the input topics).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone

from leadpulse.stream.config import Settings


async def _send(settings: Settings, contact_ids: list[str], bootstrap: str) -> None:
    from leadpulse.schemas.events import Erasure
    from leadpulse.stream.publish import new_producer, start_producer
    from leadpulse.stream.topics_admin import COMPACTED, ensure_topics

    conn = settings.kafka_connection(bootstrap)
    topic = settings.topic("crm.erasures")
    ensure_topics(conn, [topic], settings.partitions, settings.replication, configs={topic: COMPACTED})
    producer = new_producer(conn, client_id="leadpulse-erase")
    await start_producer(producer, conn)
    try:
        now = datetime.now(timezone.utc)
        for cid in contact_ids:
            request = Erasure(contact_id=cid, requested_at=now)
            await producer.send(topic, request.model_dump_json().encode(), key=cid.encode())
        await producer.flush()
    finally:
        await producer.stop()


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.stream.connection import BrokerUnavailable
    from leadpulse.stream.topics_admin import TopicsError

    bootstrap = args.bootstrap or settings.kafka_bootstrap
    if not bootstrap:
        print("leadpulse erase: set KAFKA_BOOTSTRAP (or --bootstrap) to the cluster the workers read",
              file=sys.stderr)
        return 2
    try:
        asyncio.run(_send(settings, args.contact, bootstrap))
    except (BrokerUnavailable, TopicsError) as exc:
        print(f"leadpulse erase: {exc}", file=sys.stderr)
        return 2
    topic = settings.topic("crm.erasures")
    for cid in args.contact:
        print(f"erasure of {cid} requested on {topic}; every worker removes the person from its state "
              "(leadpulse_erasures_total counts them)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "erase", help="erase a person from every worker's state (right to erasure)",
        description="Publish an erasure request for each --contact to the erasures topic "
                    "(LEADPULSE_TOPIC_ERASURES, default crm.erasures). Every worker removes the person's "
                    "fields, activities, orders and score from its graph store, score book and router "
                    "state, publishes a tombstone for their score, and drops their events dated before "
                    "the request if they arrive later. The input topics still hold the person's records: "
                    "see docs/operating.md, \"Erasing a person\".")
    p.add_argument("--contact", action="append", required=True, metavar="ID",
                   help="contact_id of the person to erase (repeat for several)")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default: $KAFKA_BOOTSTRAP)")
    p.set_defaults(func=_run)
