"""Options of the stream layer: frozen dataclasses whose field defaults are the defaults.

``leadpulse.stream.config.Settings`` takes the default of every setting that maps onto one of
these fields from here, and builds them (``Settings.app_options``, ``Settings.scoring_options``),
so each default is written once (docs/configuration.md). This module imports nothing heavy:
every command reads the settings, and most never load Faust or the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from leadpulse.stream.connection import KafkaConnection


@dataclass(frozen=True)
class AppOptions:
    """Options of the Faust app (built by ``Settings.app_options``).

    Args:
        app_id: Faust app id = consumer group id.
        bootstrap: the cluster and how to connect to it (a ``host:port`` string is PLAINTEXT).
        partitions: partitions of every topic, the account topic included.
        topics: contract topic name -> configured name.
        account_topic: the internal repartition topic, keyed by company_id.
        web_host, web_port: bind address of the HTTP views.
        batch_size, batch_seconds: micro-batch bounds of both agents.
        sweep_seconds, sweep_leads: the decay sweep rescores up to ``sweep_leads`` stale leads
            every ``sweep_seconds`` (spread out so it never starves ingestion), and skips its
            tick while the account agent has a backlog (its last batch was full, or it holds
            a window of leads to score together: ``ScoringOptions.coalesce``) and took a
            batch since the previous tick.
        model_poll_seconds: how often the registry's champion is checked for a hot swap.
        retrain_seconds: how often ``retrain`` (a separate process) runs; 0 = never.
        replicate: run the replication reader (``stream.replica``); off only in unit tests.
        lag_seconds: how often the consumer-lag gauge is refreshed; 0 = never. The worker sets
            0 on the embedded broker, whose high watermark is wrong when producers batch
            (docs/kafka-notes.md#trap-1).
        web_url: the URL other workers reach this one at (Faust's canonical URL; default
            ``http://<web_host>:<web_port>``), for routing ``/leads`` to the owner.
        datadir: Faust's own directory; its default is ``<app_id>-data`` in the working directory.
        fetch_max_wait_ms: longest wait of a consumer fetch, Faust's and the replication
            reader's (``stream.faustapp``: Tansu holds every fetch that long).
        api_token: when set, every HTTP view but ``/healthz``, ``/readyz`` and ``/metrics``
            requires ``Authorization: Bearer <token>``.
        faust_views: serve Faust's own views (``/router``, ``/table``, ``/graph``, stats); they
            describe the deployment to anyone who can reach the port, so they are off.
        ready_max_lag_seconds: ``/readyz`` fails while the applied data is further behind its
            input than this (``ScoringRuntime.input_lag``).
        hold_days: an activity or order held for a contact not seen yet becomes a dead letter
            ("contact never arrived") after this many days of wall-clock time; 0 = held until
            its contact comes (docs/stream.md, "Held events").
        expire_seconds: how often held events are checked against ``hold_days``.
        feeds: contract input topic -> its format and field mapping (``schemas.feeds.FeedSpec``);
            a topic not named detects its format by shape.
    """
    app_id: str
    bootstrap: Union[str, KafkaConnection]
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
    lag_seconds: float = 15.0
    web_url: Optional[str] = None
    fetch_max_wait_ms: int = 50
    api_token: Optional[str] = field(default=None, repr=False)
    faust_views: bool = False
    ready_max_lag_seconds: float = 120.0
    hold_days: float = 7.0
    expire_seconds: float = 60.0
    feeds: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ScoringOptions:
    """Options of incremental rescoring (built by ``Settings.scoring_options``).

    Args:
        epsilon: publish a score only when it moved more than this.
        jump_threshold: alert when a score rises by at least this.
        max_batch_leads: leads per scoring micro-batch (by default the app's ``batch_size``:
            ``LEADPULSE_BATCH_SIZE`` bounds both).
        hops: receptive field of the model.
        top_factors: factors explained per published score.
        explain_budget: leads explained per micro-batch: those with an alert first, then the
            largest moves; the rest are published with no factors and explained on demand by
            ``/leads/{contact_id}``.
        explain_per_second: and at most this many per second of wall time, on average (a token
            bucket holding up to ``explain_budget``). Explaining costs an occluded copy of the
            lead's neighbourhood per evidence group: without a rate cap, small batches spent
            most of their time explaining (docs/stream.md#measurements-behind-the-code).
        tier_hysteresis: a ``tier_change`` alert needs the score this far past the cut point it
            crossed, relative to the cut (e.g. 0.2: 20 % above it going up, below it going down),
            and compares with the tier of the lead's last tier alert, not its last score.
            Without it, leads hovering at a cut point flap across it
            (docs/stream.md#measurements-behind-the-code). Published scores keep the plain tier.
        decay_min_age: event-time seconds a lead's last check must be behind its partition's
            watermark before the decay sweep rescores it. Its time-relative features count in
            days (7/30/90-day windows, a 14-day half-life), so rescoring it more often spends
            CPU that ingestion needs and moves nothing that matters.
        coalesce: seconds (0 = off). When the newest record applied was produced more than
            this long ago, the worker is behind its input: ``flush_due`` then holds the
            affected leads of further batches until the oldest has waited as long as that lag
            exceeds this (at most this long: ``stream.pending.Pending.due``), so a lead that
            many events touch meanwhile is scored once, as of the newest of them. Rescoring is
            most of the account stage and costs per lead, so this is what lets a backlog shrink
            (docs/stream.md#measurements-behind-the-code). Not behind, every batch is scored at
            once.
        coalesce_max: seconds a window may grow to when the worker is far behind: the hold is
            then up to half the lag, at most this (``Pending.due``; at most ``coalesce`` when
            this is not longer). On the large world a window of 10,000 records scored 6.0
            leads an event against 11.7 at 1,000 (docs/stream.md#coalescing-under-backlog).
        max_future: seconds an event's time may be ahead of the worker's wall clock. Stage 1
            dead-letters a later event (``stream.ingest.validate``), and no batch moves a
            partition's watermark past the clock plus this (``AccountProcessor``), so one
            mistyped date cannot move the time every lead of a partition is scored as of
            (docs/architecture.md#invariant-7, docs/stream.md#event-time-is-bounded-by-the-wall-clock).
        outcome_window: the live outcome gauges cover this many of the most recently labelled
            leads (``stream.outcomes``; 0 = off). 2,000 at a 3 % conversion rate hold ~60
            converters: a standard error of AUROC of ~0.035 (docs/operating.md#live-outcomes).
    """
    epsilon: float = 1e-4
    jump_threshold: float = 0.2
    max_batch_leads: int = AppOptions.batch_size
    hops: int = 2
    top_factors: int = 3
    explain_budget: int = 16
    explain_per_second: float = 50.0
    tier_hysteresis: float = 0.2
    decay_min_age: float = 3600.0
    coalesce: float = 1.0
    coalesce_max: float = 10.0
    max_future: float = 3600.0
    outcome_window: int = 2000
