"""Options of the Faust app, built from ``leadpulse.stream.config.Settings``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from leadpulse.stream.faustapp import FETCH_MAX_WAIT_MS


@dataclass(frozen=True)
class AppOptions:
    """Options of the Faust app (built from ``stream.config.Settings``).

    Args:
        app_id: Faust app id = consumer group id.
        bootstrap: Kafka bootstrap servers.
        partitions: partitions of every topic, the account topic included.
        topics: contract topic name -> configured name.
        account_topic: the internal repartition topic, keyed by company_id.
        web_host, web_port: bind address of the HTTP views.
        batch_size, batch_seconds: micro-batch bounds of both agents.
        sweep_seconds, sweep_leads: the decay sweep rescores up to ``sweep_leads`` stale leads
            every ``sweep_seconds`` (spread out so it never starves ingestion), and skips its
            tick while the account agent has a backlog (its last batch was full, or it holds
            a window of leads to score together: ``ScoringOptions.coalesce``).
        model_poll_seconds: how often the registry's champion is checked for a hot swap.
        retrain_seconds: how often ``retrain`` (a separate process) runs; 0 = never.
        replicate: run the replication reader (``stream.replica``); off only in unit tests.
        lag_seconds: how often the consumer-lag gauge is refreshed; 0 = never (on Tansu the
            high watermark is wrong when producers batch: BROKER_NOTES trap 1).
        web_url: the URL other workers reach this one at (Faust's canonical URL; default
            ``http://<web_host>:<web_port>``), for routing ``/leads`` to the owner.
        datadir: Faust's own directory; its default is ``<app_id>-data`` in the working directory.
        fetch_max_wait_ms: longest wait of a consumer fetch, Faust's and the replication
            reader's (``stream.faustapp``: Tansu holds every fetch that long).
    """
    app_id: str
    bootstrap: str
    partitions: int
    topics: dict
    account_topic: str = "leadpulse.accounts"
    datadir: Optional[str] = None
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_size: int = 1000
    batch_seconds: float = 0.1
    sweep_seconds: float = 2.0
    sweep_leads: int = 200
    model_poll_seconds: float = 5.0
    retrain_seconds: float = 0.0
    replicate: bool = True
    lag_seconds: float = 0.0
    web_url: Optional[str] = None
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS
