"""Post leadpulse score jumps to a webhook (a chat channel, a sales tool, an automation).

A subscriber of ``leads.alerts`` (docs/contracts.md). Each alert of the selected kinds (default
``jump``) is POSTed as JSON: a human-readable ``text`` line (Slack and Mattermost incoming
webhooks show it as is) and the alert itself under ``alert``. Delivery is at least once:

* offsets are committed only after every alert of the batch was accepted (HTTP 2xx);
* a 5xx, a 429 or a connection error is retried with backoff (forever: an unreachable webhook
  pauses the consumer rather than dropping alerts); another 4xx is logged and skipped;
* every POST carries an ``Idempotency-Key`` header (contact, kind, as_of, model version) so the
  receiver can drop the duplicates that at-least-once delivery implies.

    WEBHOOK_URL=https://hooks.example.com/... python examples/alert_webhook.py
    python examples/alert_webhook.py --kinds jump,tier_change --idle-exit 10

Without a webhook URL it logs the payloads instead. It connects like every leadpulse client:
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
import sys
import time
import urllib.error
import urllib.request
from typing import Callable, Optional, Union

from leadpulse.stream.config import Settings, SettingsError
from leadpulse.stream.connection import (
    BrokerUnavailable,
    KafkaConnection,
    as_connection,
    check_reachable,
    kafka_python_kwargs,
)

logger = logging.getLogger("alert_webhook")


class Rejected(Exception):
    """The webhook refused an alert for good (a 4xx other than 429)."""


def payload(alert: dict) -> dict:
    """The JSON body posted for one ``leads.alerts`` value."""
    reasons = ", ".join(f["factor"] for f in (alert.get("top_factors") or [])[:3]) or "no explanation yet"
    previous = alert.get("previous_score")
    before = f"{previous:.2f}" if isinstance(previous, (int, float)) else "new"
    text = (f"Lead {alert['contact_id']} ({alert.get('company_id') or 'no company'}) {alert['kind']}: "
            f"{before} -> {alert['score']:.2f} as of {alert['as_of']} ({reasons})")
    return {"text": text, "alert": alert}


def idempotency_key(alert: dict) -> str:
    """Same alert, same key: the receiver can drop re-deliveries."""
    return "|".join(str(alert.get(k)) for k in ("contact_id", "kind", "as_of", "model_version"))


def post(url: str, alert: dict, timeout: float = 10.0) -> None:
    """POST one alert; raises :class:`Rejected` on a permanent refusal, OSError on a retryable one."""
    body = json.dumps(payload(alert)).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Idempotency-Key": idempotency_key(alert)})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code != 429:
            raise Rejected(f"HTTP {exc.code}") from exc
        raise  # HTTPError is an OSError: retried


def deliver(send: Callable[[dict], None], alert: dict, backoff: float = 0.5, max_backoff: float = 30.0) -> bool:
    """Send until accepted (True) or refused for good (False); retryable errors back off and retry."""
    delay = backoff
    while True:
        try:
            send(alert)
            return True
        except Rejected as exc:
            logger.error("webhook refused the alert for %s (%s): skipped", alert.get("contact_id"), exc)
            return False
        except OSError as exc:
            logger.warning("webhook unavailable (%s): retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_backoff)


def run(bootstrap: Union[str, KafkaConnection], topic: str, url: Optional[str], group: str, kinds: set,
        idle_exit: Optional[float] = None) -> int:
    """Consume ``topic`` and post alerts of ``kinds`` until interrupted (or idle ``idle_exit`` s).

    ``bootstrap``: the cluster, a ``KafkaConnection`` (TLS, SASL) or ``host:port`` (PLAINTEXT).

    Returns the number of alerts delivered (accepted by the webhook, or logged without one).
    """
    from kafka import KafkaConsumer
    from kafka.errors import CommitFailedError

    def log_only(alert: dict) -> None:
        logger.info("would post: %s", payload(alert)["text"])

    send = (lambda alert: post(url, alert)) if url else log_only
    kafka = as_connection(bootstrap)
    consumer = KafkaConsumer(topic, **kafka_python_kwargs(kafka), group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
                             bootstrap_timeout_ms=int(kafka.request_timeout_s * 1000),
                             client_id="leadpulse-alert-webhook")
    delivered, last_record = 0, time.monotonic()
    try:
        while True:
            batches = consumer.poll(timeout_ms=1000, max_records=200)
            records = [r for batch in batches.values() for r in batch]
            if not records:
                if not consumer.assignment():  # still joining the group: not idle yet
                    last_record = time.monotonic()
                elif idle_exit is not None and time.monotonic() - last_record >= idle_exit:
                    break
                continue
            for r in records:
                try:
                    alert = json.loads(r.value)
                    kind = alert["kind"]
                except (ValueError, KeyError, TypeError):
                    logger.warning("skipping a record that is not an alert at %s[%d]@%d", r.topic, r.partition, r.offset)
                    continue
                if kind in kinds and deliver(send, alert):
                    delivered += 1
            try:
                consumer.commit()  # every alert of the batch is delivered (or refused for good)
            except CommitFailedError:  # a rebalance moved the partitions: the new owner re-reads them
                logger.warning("offsets not committed (rebalance); the batch will be re-delivered")
            last_record = time.monotonic()
    finally:
        consumer.close(autocommit=False)
    return delivered


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[list] = None) -> int:
    """Command line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=os.environ.get("WEBHOOK_URL") or None,
                   help="webhook URL (default $WEBHOOK_URL; none: log the payloads)")
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092"),
                   help="Kafka bootstrap (default $KAFKA_BOOTSTRAP or localhost:9092)")
    p.add_argument("--topic", default=os.environ.get("LEADPULSE_TOPIC_ALERTS", "leads.alerts"),
                   help="alert topic (default $LEADPULSE_TOPIC_ALERTS or leads.alerts)")
    p.add_argument("--group", default="alert-webhook", help="consumer group id (default alert-webhook)")
    p.add_argument("--kinds", default="jump", help="comma-separated alert kinds to post (default jump)")
    p.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                   help="exit after this many seconds without a record (default: run forever)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    kinds = {k.strip() for k in args.kinds.split(",") if k.strip()}
    try:
        connection = Settings.from_env().kafka_connection(args.bootstrap)
        check_reachable(connection)
    except (SettingsError, BrokerUnavailable) as exc:
        print(f"alert_webhook: {exc}", file=sys.stderr)
        return 2
    try:
        delivered = run(connection, args.topic, args.url, args.group, kinds, args.idle_exit)
    except KeyboardInterrupt:
        return 130
    print(f"alert_webhook: {delivered} alerts delivered", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
