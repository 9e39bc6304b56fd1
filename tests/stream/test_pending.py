"""When the pending set is due: at once when caught up, after a hold that grows with how far
behind the worker is, up to the window, and further behind up to half the lag, at most the longest
window."""
from __future__ import annotations

import time

from leadpulse.stream.pending import Pending


def _pending(lag: float) -> Pending:
    p = Pending()
    p.add_batch(1, {("acc", 0): 1}, [time.time() - lag])
    return p


def test_caught_up_or_off_it_is_due_at_once():
    assert not Pending().due(1.0)  # nothing pending
    assert _pending(0.5).due(1.0)
    assert _pending(30.0).due(0.0)
    p = Pending()
    p.add_batch(1, {}, [])  # records without a produce time: nothing says it is behind
    assert p.due(1.0)


def test_behind_the_hold_grows_with_the_lag_up_to_the_window():
    just_behind, far_behind = _pending(1.3), _pending(30.0)
    assert not just_behind.due(1.0) and not far_behind.due(1.0)
    time.sleep(0.4)  # past the 0.3 s by which the first is behind beyond the window
    assert just_behind.due(1.0) and not far_behind.due(1.0)
    far_behind.since -= 0.7  # the whole window has passed for the second too
    assert far_behind.due(1.0)


def test_far_behind_the_window_grows_to_half_the_lag_at_most_the_longest():
    def hold(lag: float, longest: float) -> float:
        p = _pending(lag)
        p.since = time.monotonic()
        for waited in range(0, 40):  # the first whole second it is due after
            p.since = time.monotonic() - waited - 0.001
            if p.due(1.0, longest):
                return waited
        raise AssertionError("never due")
    assert hold(1.5, 10.0) == 1  # just behind: what the lag exceeds the window by (0.5 s)
    assert hold(8.0, 0.0) == 1 and hold(8.0, 1.0) == 1  # no longer window: the window, as before
    assert hold(8.0, 10.0) == 4  # half the lag
    assert hold(30.0, 10.0) == 10  # at most the longest
    assert hold(2.5, 10.0) == 2  # at least the window, at most what the lag exceeds it by (1.5 s)


def test_a_lead_keeps_the_earliest_time_of_the_events_that_reached_it():
    p = Pending()
    p.reach({"ct_1"}, 200)
    p.reach({"ct_1", "ct_2"}, 100)
    p.reach({"ct_1"}, 300)
    assert p.reached == {"ct_1": 100, "ct_2": 100}


def test_a_lead_that_moves_account_is_pending_under_its_new_partition_only():
    p = Pending()
    p.add_lead("ct_1", 0, "crm.activities:a1")
    p.add_lead("ct_2", 0, "crm.activities:a1")
    p.add_lead("ct_1", 3, "crm.contacts:ct_1")
    assert p.causes == {0: {"ct_2": "crm.activities:a1"}, 3: {"ct_1": "crm.contacts:ct_1"}}
