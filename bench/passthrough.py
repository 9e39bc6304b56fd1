"""The pass-through baseline of the stream benchmark: a minimal Faust app.

It consumes the same five input topics as the worker and sends every record unchanged to one
output topic, with the worker's Faust settings (broker timeouts, partitions, ``take_events``
batch bounds, the same send path, flush per batch). What the worker does beyond this is the
cost of leadpulse; the ratio worker / pass-through is the figure that travels to other machines.

Configured like the worker, from the environment (``stream.config.Settings``); the output
topic is ``<LEADPULSE_TOPIC_SCORES>.passthrough``::

    python -m leadpulse.bench.passthrough
"""
from __future__ import annotations

import sys
from typing import Union

import faust
from faust.web import Request, Response, View

from leadpulse.stream.config import Settings
from leadpulse.stream.connection import KafkaConnection
from leadpulse.stream.faustapp import new_app, send


def output_topic(settings: Settings) -> str:
    """Where the pass-through writes (beside the worker's score topic)."""
    return settings.topic_scores + ".passthrough"


def build_app(settings: Settings, bootstrap: Union[str, KafkaConnection]) -> faust.App:
    """The pass-through app, on the same Faust app factory as ``stream.app.build_app``."""
    app = new_app(settings.app_id + "-passthrough", bootstrap, partitions=settings.partitions,
                  web_host=settings.web_host, web_port=settings.web_port,
                  fetch_max_wait_ms=settings.fetch_wait_ms, datadir=str(settings.data_dir / "faust"))
    inputs = app.topic(*settings.input_topics, key_serializer="raw", value_serializer="raw")
    out = app.topic(output_topic(settings), key_serializer="raw", value_serializer="raw",
                    partitions=settings.partitions)
    batch_seconds = settings.batch_ms / 1000

    @app.agent(inputs)
    async def passthrough(stream):
        async for events in stream.take_events(settings.batch_size, within=batch_seconds):
            for ev in events:
                await send(app, out, ev.message.key, ev.message.value)
            await app.producer.flush()

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    return app


def main() -> int:
    """Run the pass-through app until killed."""
    settings = Settings.from_env()
    if not settings.kafka_bootstrap:
        print("bench.passthrough: set KAFKA_BOOTSTRAP", file=sys.stderr)
        return 2
    app = build_app(settings, settings.kafka_connection())
    faust.Worker(app, loglevel="warning", quiet=True, override_logging=False).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
