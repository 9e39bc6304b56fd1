"""The Faust app factory shared by the worker and the benchmark's pass-through."""
from __future__ import annotations

import asyncio

from leadpulse.stream.faustapp import FETCH_MAX_WAIT_MS, new_app


def _fetch_wait(**kw) -> int:
    async def build() -> int:
        app = new_app("t-faustapp", "127.0.0.1:9", partitions=1, web_host="127.0.0.1", web_port=6999, **kw)
        consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()
    return asyncio.run(build())


def test_the_consumer_gets_our_fetch_wait_not_fausts_1500_ms() -> None:
    """Faust builds its consumer with fetch_max_wait_ms=1500, which Tansu always waits out."""
    assert _fetch_wait() == FETCH_MAX_WAIT_MS
    assert _fetch_wait(fetch_max_wait_ms=37) == 37
