"""The Faust app that the worker and the benchmark's pass-through both run on.

One place for the settings that make restarts, rebalances and fetches fast on Tansu and on
Apache Kafka, so the benchmark compares the worker with a pass-through configured alike.

Fetch wait. Faust creates its consumer with ``fetch_max_wait_ms=1500`` and no setting to change
it. Apache Kafka answers a fetch as soon as data arrives, so the wait only bounds idle polls;
the embedded Tansu broker holds every fetch for the whole wait (docs/kafka-notes.md#fetch-wait).
The worker has two consumer hops (input topics, then the account topic), so that wait was most
of its event→publish latency at moderate rates. ``fetch_max_wait_ms`` sets it; a short wait
costs idle polls only.

Sending. ``send`` enqueues a record with the app's producer (``app.producer.send``), not through
``Topic.send``: the topic's per-record future message, callbacks and sensor hooks cost several
times the producer's own send (docs/kafka-notes.md#topic-send). Both apps send batch by batch
and then ``await app.producer.flush()``, which waits for every enqueued record.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from leadpulse.stream.connection import KafkaConnection, faust_settings
from leadpulse.stream.options import AppOptions
from leadpulse.stream.webauth import token_middleware

#: default of ``LEADPULSE_FETCH_WAIT_MS``
FETCH_MAX_WAIT_MS = AppOptions.fetch_max_wait_ms


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its fetcher in ``start()``, after Faust has built the consumer
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class _App(faust.App):
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS
    api_token: Optional[str] = None

    def on_webserver_init(self, web: Any) -> None:
        # before the aiohttp application starts (it freezes its middlewares then)
        if self.api_token:
            web.web_app.middlewares.append(token_middleware(self.api_token))

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)


def new_app(app_id: str, bootstrap: Union[str, KafkaConnection], *, partitions: int, web_host: str,
            web_port: int, fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS, api_token: Optional[str] = None,
            faust_views: bool = False, **settings: Any) -> faust.App:
    """A Faust app on ``bootstrap`` with leadpulse's settings; ``settings`` adds Faust settings.

    Args:
        app_id: Faust app id (= consumer group id).
        bootstrap: the cluster, with its TLS and SASL settings (a ``host:port`` is PLAINTEXT).
        partitions: partitions of topics the app declares.
        web_host, web_port: where its HTTP views listen.
        fetch_max_wait_ms: longest wait of a consumer fetch (see the module docstring).
        api_token: require ``Authorization: Bearer <token>`` on every view but the public ones
            (``leadpulse.stream.webauth``).
        faust_views: serve Faust's own views (router, tables, graph, stats).
    """
    app = _App(
        app_id,
        **faust_settings(bootstrap),
        store="memory://",
        topic_partitions=partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # docs/kafka-notes.md#trap-2: short timeouts from the first run make joins and failover fast.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=10.0,
        web_bind=web_host,
        web_port=web_port,
        web_host=web_host,
        web_enabled=True,
        web_router_enabled=faust_views,
        web_tables_enabled=faust_views,
        web_graph_enabled=faust_views,
        web_stats_enabled=faust_views,
        web_metrics_enabled=faust_views,
        **settings,
    )
    app.fetch_max_wait_ms = fetch_max_wait_ms
    app.api_token = api_token
    return app


async def send(app: faust.App, topic: faust.TopicT, key: Optional[bytes], value: bytes) -> None:
    """Enqueue one raw record for ``topic`` (a topic the app declared), partitioned by key as
    ``Topic.send`` would (the producer's default partitioner)."""
    await app.producer.send(topic.get_topic_name(), key, value, None, None, None)
