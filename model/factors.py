"""What an explanation is made of, for every model family: ``Factor``, ``Explanation``, the
evidence groups and the words of each group.

Shared by the GNN's occlusion (``model.explain``), the tabular models' TreeSHAP and the rules
model's points (``model.tabular_explain``), so a factor reads the same whichever model served
it. A group's text is chosen after its contribution is known, from a pair: what the evidence is
when it raises the score and when it lowers it (``model.explain``, "The words agree with the
sign"); an empty text leaves the factor out in that direction (nothing true to say).

Example:
    >>> sorted(GROUPS)[:3]
    ['account_orders', 'career', 'colleagues']
    >>> _silence_texts(78.4)
    ('last activity 78 days ago', 'no activity for 78 days')
    >>> sign_split([Factor("a", "title", 0.02), Factor("b", "source", -0.05)], top_k=1, min_abs=1e-4).top
    [Factor(factor='b', group='source', contribution=-0.05)]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from leadpulse.model.temporal import RECENCY_CAP_DAYS

__all__ = ["Factor", "Explanation", "GROUPS", "SILENCE_DAYS", "sign_split"]

GROUPS = ("steps_order", "own_activity", "silence", "career", "title", "source", "colleagues", "account_orders",
          "peers", "firmographics", "opportunities")
#: days without activity from which the silence is a factor of its own
SILENCE_DAYS = 30


@dataclass(frozen=True)
class Factor:
    """One explanation line: ``factor`` (human text), ``group`` (stable key), ``contribution``
    (calibrated probability points; positive raises the score)."""
    factor: str
    group: str
    contribution: float

    def to_dict(self) -> dict:
        return {"factor": self.factor, "contribution": round(self.contribution, 4)}


@dataclass(frozen=True)
class Explanation:
    """One lead's factors three ways: ``top`` (largest absolute contribution first, both signs,
    what ``explain`` returns), ``positive`` (those that raise the score, largest first) and
    ``negative`` (those that lower it, the largest drop first)."""
    top: list[Factor]
    positive: list[Factor]
    negative: list[Factor]


def sign_split(factors: list[Factor], top_k: int, min_abs: float) -> Explanation:
    """The ``Explanation`` of one lead's factors: those below ``min_abs``, zero or without a
    text dropped (a zero contribution says nothing), the rest sorted by size, ``top_k`` each."""
    kept = [f for f in factors if abs(f.contribution) >= min_abs and f.contribution and f.factor]
    kept.sort(key=lambda f: (-abs(f.contribution), f.group))
    return Explanation(top=kept[:top_k], positive=[f for f in kept if f.contribution > 0][:top_k],
                       negative=[f for f in kept if f.contribution < 0][:top_k])


# ------------------------------------------------------------------ the words of each group
def _activities(n: int) -> str:
    return f"{n} activit{'y' if n == 1 else 'ies'}"


def _activity_texts(row: dict) -> tuple[str, str]:
    """(text when the lead's own activity raises the score, text when it lowers it)."""
    hi14, n30, ever = int(row["n_high_intent_14d"]), int(row["n_all_30d"]), int(row["n_all_ever"])
    if hi14:
        steps = f"{hi14} demo/meeting/call/trial step{'s' if hi14 > 1 else ''} in the last 14 days"
        return steps, "only " + steps
    if not row["has_activity"]:
        return "", "no recorded activity"
    days = row["days_since_last_activity"]
    if days >= SILENCE_DAYS:  # the silence itself is the ``silence`` group
        last = "over a year ago" if days >= RECENCY_CAP_DAYS else f"{int(days)} days ago"
        return (f"past activity: {_activities(ever)}, the last {last}",
                f"only {_activities(ever)}, the last {last}")
    return (f"{_activities(n30)} in the last 30 days",
            f"only {_activities(n30)} in the last 30 days, none a demo/meeting/call/trial")


def _silence_texts(days: float) -> tuple[str, str]:
    """(text when the silence raises the score, text when it lowers it)."""
    if days >= RECENCY_CAP_DAYS:
        return "last activity over a year ago", "no activity for over a year"
    return f"last activity {int(days)} days ago", f"no activity for {int(days)} days"


def _ago(days: float) -> str:
    if days >= RECENCY_CAP_DAYS:
        return "over a year ago"
    d = int(days)
    return "today" if d == 0 else f"{d} day{'s' if d != 1 else ''} ago"


def _career_text(row: dict) -> Optional[str]:
    """What the lead's career columns say, or None when there is nothing (no former employer).
    A description of the evidence only: whether it raises or lowers the score is the sign of
    the contribution."""
    moved = row["days_since_move"] < RECENCY_CAP_DAYS
    joined = f", joined {_ago(row['days_since_move'])}" if moved else ""
    if row["champion_before"]:
        return f"champion at a previous customer{joined}"
    if row["former_customer"]:
        return f"worked at a previous customer{joined}"
    if row["has_former_employer"]:
        return f"joined from another company {_ago(row['days_since_move'])}" if moved else "has a former employer"
    return None


def _steps_order_text(order: float) -> str:
    """The order of the key steps (``order_pricing_before_demo``: > 0 pricing first), a plain fact."""
    return "viewed pricing then requested a demo" if order > 0 else "requested a demo before viewing pricing"
