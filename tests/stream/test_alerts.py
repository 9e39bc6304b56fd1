"""The tier-alert rule's documented examples."""
from __future__ import annotations

import doctest


def test_doctests() -> None:
    import leadpulse.stream.alerts
    result = doctest.testmod(leadpulse.stream.alerts)
    assert result.attempted > 0 and result.failed == 0
