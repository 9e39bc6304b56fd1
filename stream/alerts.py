"""When a new score raises an alert: the tier-change rule (a Schmitt trigger on the tier cut
points) and the tier a lead's last tier alert announced. Pure; ``stream.accounts`` applies it."""
from __future__ import annotations

from typing import Optional, Sequence

from leadpulse.model.gnn import TIERS


def announced_tier(entry: dict) -> str:
    """The tier of the lead's last tier alert (books written before it was kept: its tier)."""
    return entry.get("alerted_tier", entry["tier"])


def tier_alert_cut(score: float, tier: str, announced: str, cuts: Optional[Sequence[float]],
                   hysteresis: float) -> Optional[float]:
    """The cut point a ``tier_change`` alert reports, or None when there is no alert to raise.

    There is one when ``tier`` differs from the ``announced`` one and the score lies past the
    cut point bounding ``tier`` on the side it came from by ``hysteresis`` of that cut (a
    Schmitt trigger: a lead hovering at a cut point alerts once, not at every wobble). With no
    cut points (a model without tiers) every change alerts, threshold 0.

    >>> cuts = (0.5, 0.2, 0.05)
    >>> tier_alert_cut(0.21, "B", "C", cuts, 0.2), tier_alert_cut(0.25, "B", "C", cuts, 0.2)
    (None, 0.2)
    >>> tier_alert_cut(0.17, "C", "B", cuts, 0.2), tier_alert_cut(0.15, "C", "B", cuts, 0.2)
    (None, 0.2)
    >>> tier_alert_cut(0.9, "A", "A", cuts, 0.2) is None, tier_alert_cut(0.01, "D", "B", cuts, 0.2)
    (True, 0.05)
    """
    if tier == announced:
        return None
    if not cuts:
        return 0.0
    new, old = TIERS.index(tier), TIERS.index(announced)
    if new < old:  # up: above the lower bound of the new tier
        cut = cuts[new]
        return cut if score >= cut * (1 + hysteresis) else None
    cut = cuts[new - 1]  # down: below the upper bound of the new tier
    return cut if score < cut * (1 - hysteresis) else None
