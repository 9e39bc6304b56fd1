"""``leadpulse topics create | check``, and the topic check every worker runs before it starts.

    leadpulse topics create    # create the missing topics as they must be, then check them all
    leadpulse topics check     # print what is wrong; exit status 1 if anything is

What the topics must be is :class:`~leadpulse.stream.topics_admin.TopicLayout` (docs/operating.md,
"Topics"). The worker creates missing topics the same way, then refuses to start on the problems
that would scatter a contact's events or make a rebuild impossible (co-partitioned topics with
different partition counts, finite retention or compaction of an input or account topic) unless
``LEADPULSE_ALLOW_UNSAFE_TOPICS=true``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from leadpulse.stream.config import Settings
from leadpulse.stream.connection import BrokerUnavailable, KafkaConnection, check_reachable

logger = logging.getLogger(__name__)

#: the configs the per-topic listing shows
_SHOWN = ("retention.ms", "retention.bytes", "cleanup.policy")


def _connection(args: argparse.Namespace, settings: Settings, command: str) -> Optional[KafkaConnection]:
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    if not bootstrap:
        print(f"leadpulse topics {command}: no Kafka configured: set KAFKA_BOOTSTRAP=host:port or pass "
              "--bootstrap (`leadpulse broker` starts a development broker)", file=sys.stderr)
        return None
    conn = settings.kafka_connection(bootstrap)
    try:  # the cause at once (refused, certificate, SASL mechanism), not the admin client's retries
        check_reachable(conn)
    except BrokerUnavailable as exc:
        print(f"leadpulse topics {command}: {exc}", file=sys.stderr)
        return None
    return conn


def _report(conn: KafkaConnection, settings: Settings, command: str) -> int:
    """Print every topic and every problem; 0 when nothing is wrong, 1 when something is."""
    from leadpulse.stream.topics_admin import TopicLayout, check_topics, topic_states

    layout = TopicLayout.from_settings(settings)
    states = topic_states(conn, layout.names)
    width = max(len(n) for n in layout.names)
    print(f"topics on {conn.bootstrap} (configured: {layout.partitions} partitions, "
          f"replication {layout.replication}):")
    for name in layout.names:
        state = states.get(name)
        if state is None:
            print(f"  {name:<{width}}  missing")
            continue
        shown = " ".join(f"{k}={state.configs[k]}" for k in _SHOWN if k in state.configs)
        print(f"  {name:<{width}}  {state.partitions} partitions  {shown or '(no configs described)'}")
    problems = check_topics(layout, states)
    for problem in problems:
        print(problem)
    errors = sum(p.is_error for p in problems)
    warnings = len(problems) - errors
    verdict = f"{errors} problem{'s' * (errors != 1)}" if errors else "all fine"
    print(f"topics {command}: {verdict}" + (f" ({warnings} warning{'s' * (warnings != 1)})" if warnings else ""))
    return 1 if errors else 0


def _run_create(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.stream.topics_admin import BrokerUnavailable, TopicLayout, TopicsError, create_topics

    conn = _connection(args, settings, "create")
    if conn is None:
        return 2
    try:
        created = create_topics(conn, TopicLayout.from_settings(settings))
        print(f"created {len(created)} topic{'s' * (len(created) != 1)}" + (f": {', '.join(created)}" if created else
              " (every topic existed; existing topics are never changed)"))
        return _report(conn, settings, "create")
    except (TopicsError, BrokerUnavailable) as exc:
        print(f"leadpulse topics create: {exc}", file=sys.stderr)
        return 2


def _run_check(args: argparse.Namespace, settings: Settings) -> int:
    from leadpulse.stream.topics_admin import BrokerUnavailable, TopicsError

    conn = _connection(args, settings, "check")
    if conn is None:
        return 2
    try:
        return _report(conn, settings, "check")
    except (TopicsError, BrokerUnavailable) as exc:
        print(f"leadpulse topics check: {exc}", file=sys.stderr)
        return 2


def prepare_worker_topics(settings: Settings, bootstrap: str) -> Optional[str]:
    """Create the missing topics as ``leadpulse topics create`` does and check them all.

    Returns:
        None when the worker may start (problems it tolerates are logged as warnings), else the
        message to stop with: the unsafe problems, and what to do.

    Raises:
        TopicsError: the topics could not be created or described.
    """
    from leadpulse.stream.topics_admin import TopicLayout, create_topics, verify_topics

    conn = settings.kafka_connection(bootstrap)
    layout = TopicLayout.from_settings(settings)
    created = create_topics(conn, layout)
    if created:
        logger.info("created topics %s", ", ".join(created))
    problems = verify_topics(conn, layout)
    unsafe = [p for p in problems if p.unsafe]
    for problem in problems:
        if not problem.unsafe:
            logger.warning("topics: %s", problem.message)
    if not unsafe:
        return None
    listed = "\n".join(f"  - {p.message}" for p in unsafe)
    if settings.allow_unsafe_topics:
        logger.warning("starting on unsafe topics because LEADPULSE_ALLOW_UNSAFE_TOPICS is set:\n%s", listed)
        return None
    return (f"leadpulse worker: refusing to start: the topics on {conn.bootstrap} are unsafe:\n{listed}\n"
            "Fix them (`leadpulse topics check` lists every problem; docs/operating.md, \"Topics\"), or set "
            "LEADPULSE_ALLOW_UNSAFE_TOPICS=true to start anyway (a lost data directory may then be "
            "impossible to rebuild).")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "topics", help="create or check the Kafka topics (partitions, retention, compaction)",
        description="Create or check leadpulse's topics on KAFKA_BOOTSTRAP: the input topics and the "
                    "account topic with LEADPULSE_PARTITIONS partitions, LEADPULSE_REPLICATION replicas "
                    "and unlimited retention, leads.scores compacted, the other outputs with the same "
                    "partitions and replication (docs/operating.md, \"Topics\").")
    actions = p.add_subparsers(dest="topics_action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", help="create the missing topics, then check them all",
        description="Create every missing topic as it must be; existing topics are never changed. "
                    "Then check them all, as `leadpulse topics check` does (exit status 1 if "
                    "anything is wrong).")
    create.set_defaults(func=_run_create)
    check = actions.add_parser(
        "check", help="print what is wrong with the topics; exit status 1 if anything is",
        description="Report missing topics, input and account topics with different partition "
                    "counts, input and account topics with finite retention (retention.ms or "
                    "retention.bytes) or compaction, and leads.scores not compacted. A config the "
                    "broker does not describe is a warning (the embedded broker describes only the "
                    "configs a topic was created with). Exit status 0 when nothing is wrong, 1 when "
                    "something is, 2 when the broker cannot be asked.")
    check.set_defaults(func=_run_check)
    for action in (create, check):
        action.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default: $KAFKA_BOOTSTRAP)")
