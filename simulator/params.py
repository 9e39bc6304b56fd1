"""Options of the simulator: world sizes and the strength of every mechanism.

The conversion process is a daily hazard per contact,

    hazard_c(t) = r * exp(eta_c(t)) / mean_{open contacts}(exp(eta(t)))

where ``r`` is the daily rate that gives ``base_rate_30d`` and ``eta`` is the sum of the
mechanism terms below (each ``w_*`` is a log-hazard weight). Normalising by the mean keeps the
base rate fixed whatever the strengths, so strengths only move *who* converts, not how many.
docs/simulator.md explains every term.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class SizeSpec:
    """How big a world is.

    Args:
        companies: number of accounts.
        contacts_per_company: mean contacts per account (lognormal spread, at least 1).
        days: simulated days after ``start``.
    """
    companies: int
    contacts_per_company: float
    days: int


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(companies=25, contacts_per_company=9.0, days=90),
    "small": SizeSpec(companies=500, contacts_per_company=10.0, days=181),
    # the small world's accounts x4 over the large world's 273 days: long enough for a 90-day
    # label window behind a year-long population filter, at a fifth of the large world's cost
    "medium": SizeSpec(companies=2_000, contacts_per_company=10.0, days=273),
    "large": SizeSpec(companies=10_000, contacts_per_company=10.5, days=273),
}


@dataclass(frozen=True)
class SimParams:
    """Strengths of the mechanisms and the amount of CRM mess (docs/simulator.md).

    Every ``w_*`` is a log-hazard weight: the conversion hazard is multiplied by
    ``exp(w * term)``. Defaults are tuned so the relational terms (committee, champion, peer)
    carry most of the signal.

    Args:
        start: first simulated instant (UTC). Default 2026-01-01T00:00Z.
        base_rate_30d: share of open (not yet converted) contacts placing a first order per
            30 days. Default 0.025.
        w_fit: per unit of ideal-customer fit (industry, company size, seniority, department;
            standardised). Default 0.2.
        w_velocity: per unit of log1p(short-term intent), intent decayed with
            ``velocity_half_life`` (5 days). Default 0.5.
        w_engagement: per unit of log1p(long-term intent), ``engagement_half_life`` 45 days.
            Default 0.1.
        w_order: while a demo_request that followed a pricing view (within 30 days) is at
            most ``order_window`` (45) days old. Default 1.2.
        w_order_reverse: the same for a pricing view after a demo_request. Default 0.0.
        w_committee: per unit of log1p(engaged colleagues); engaged = intent decayed with
            ``committee_half_life`` (14 days) above ``engaged_threshold`` (3.0). Default 2.0.
        w_champion: per unit of log1p(best engagement of a non-decision-maker at the account),
            decision-makers only. Default 1.3.
        w_peer: per unit of log(recent orders at industry peers and same-stack companies /
            expected), orders of the last ``peer_window`` (60) days. Default 1.8.
        w_decision_maker: flat bonus of directors, vps, c_levels. Default 0.0 (they still
            place most orders, through the champion term).
        contact_noise, account_noise: sd of persistent unobserved per-contact and per-account
            log-hazard effects. Defaults 0.3, 0.2.
        cycle_start_rate: daily probability an idle account starts a buying cycle (times
            exp(0.3 fit + industry momentum + ``peer_cycle_effect`` * peer)). Default 0.006.
        cycle_days: mean cycle length. Default 55.
        cycle_boost: activity multiplier of committee members in a cycle. Default 6.
        committee_share: probability a contact joins its account's committee. Default 0.45.
        dm_activity: activity and committee-share multiplier of decision-makers. Default 0.8.
        activity_rate: mean daily activities of a contact outside a cycle. Default 0.045.
        industry_momentum_sd: sd of the AR(1) industry momentum (log cycle-start rate).
            Default 0.7.
        repeat_rate_30d: repeat-order rate of customers per 30 days. Default 0.01.
        missing_rate: base share of optional fields left empty (scaled per field). Default 0.1.
        duplicate_rate: share of people entered twice under two contact ids. Default 0.03.
        late_rate: share of rows delivered late (hours to weeks). Default 0.05.
        redelivery_rate: share of activity rows written twice. Default 0.005.
        pre_contact_rate: share of contacts tracked up to 20 days before their CRM record.
            Default 0.3.
        update_rate: share of contacts with a later versioned row (half promotions, half
            field fixes). Default 0.12.
        job_change_rate: yearly probability a person changes employer (at most once in a
            run; a new contacts.csv row of the same contact id with the new company_id).
            Default 0.18 (B2B data: 15-25 % a year).
        job_change_same_industry: probability the new employer is in the same industry.
            Default 0.6.
        job_change_step_up: probability a move comes with one seniority step up (capped at
            c_level); otherwise the seniority is kept. Default 0.3.
        w_champion_move: flat log-hazard bonus of a person who championed a purchase at
            their former employer, for ``champion_window`` (180) days after the move. A
            champion: at an account's order, a person there other than its buyer whose
            ``committee_half_life`` intent exceeded ``engaged_threshold`` within
            ``champion_lookback`` (30) days before it. Default 1.5.
        champion_cycle_effect: added to the log cycle-start rate of an account while a
            champion mover (in their window) works there. Default 1.0.
    """
    start: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc)
    base_rate_30d: float = 0.025
    w_fit: float = 0.2
    w_velocity: float = 0.5
    velocity_half_life: float = 5.0
    w_engagement: float = 0.1
    engagement_half_life: float = 45.0
    w_order: float = 1.2
    w_order_reverse: float = 0.0
    order_window: int = 45
    w_committee: float = 2.0
    w_champion: float = 1.3
    w_peer: float = 1.8
    w_decision_maker: float = 0.0
    contact_noise: float = 0.3
    account_noise: float = 0.2
    cycle_start_rate: float = 0.006
    cycle_days: float = 55.0
    cycle_boost: float = 6.0
    committee_share: float = 0.45
    dm_activity: float = 0.8
    activity_rate: float = 0.045
    engaged_threshold: float = 3.0
    committee_half_life: float = 14.0
    peer_window: int = 60
    peer_cycle_effect: float = 0.5
    industry_momentum_sd: float = 0.7
    repeat_rate_30d: float = 0.01
    missing_rate: float = 0.1
    duplicate_rate: float = 0.03
    late_rate: float = 0.05
    redelivery_rate: float = 0.005
    pre_contact_rate: float = 0.3
    update_rate: float = 0.12
    job_change_rate: float = 0.18
    job_change_same_industry: float = 0.6
    job_change_step_up: float = 0.3
    w_champion_move: float = 1.5
    champion_window: int = 180
    champion_lookback: int = 30
    champion_cycle_effect: float = 1.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["start"] = self.start.isoformat().replace("+00:00", "Z")
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "SimParams":
        """Inverse of ``to_dict`` (e.g. the ``params`` of a world.json).

        Example:
            >>> SimParams.from_dict(SimParams(w_peer=2.5).to_dict()) == SimParams(w_peer=2.5)
            True
        """
        start = datetime.fromisoformat(values["start"].replace("Z", "+00:00"))
        # a world.json written before job changes existed describes a world without them
        legacy = {} if "job_change_rate" in values else {"job_change_rate": 0.0}
        return cls(**{**legacy, **values, "start": start})
