"""The worker's HTTP views on a real worker process: liveness, readiness, the token.

``/healthz`` is liveness; ``/readyz`` is 503 until a model is loaded, partitions are assigned
and the applied data is close to its input; with ``LEADPULSE_API_TOKEN`` set every view but
those two and ``/metrics`` requires the bearer token; Faust's own views are off.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Optional

import pytest

from tests.stream.tests_support import wait_for

pytestmark = pytest.mark.slow
TOKEN = "t0ken-for-the-test"


def _get(run, path: str, token: Optional[str] = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{run.port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, {"text": text}


def _readiness_until_ready(run, timeout: float = 60) -> list[tuple[int, dict]]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(_get(run, "/readyz"))
        if seen[-1][0] == 200:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"never ready: {seen[-1]}\n{run.log()}")


def test_readyz_waits_for_the_assignment_and_healthz_does_not(worker_factory):
    run = worker_factory("ready").start()  # returns once /healthz answers
    assert _get(run, "/healthz")[0] == 200
    seen = _readiness_until_ready(run)
    first_status, first = seen[0]
    assert first_status == 503 and not first["ready"]
    assert any("no partitions assigned" in r for r in first["reasons"]), first
    status, body = seen[-1]
    assert body["ready"] and body["reasons"] == [] and body["account_partitions"] == [0, 1]


def test_readyz_is_503_without_a_model(worker_factory, tmp_path):
    run = worker_factory("nomodel", LEADPULSE_MODEL_DIR=str(tmp_path / "empty-registry")).start()
    wait_for(lambda: _get(run, "/healthz")[1].get("account_partitions"), 60, "an assignment")
    status, body = _get(run, "/readyz")
    assert status == 503 and body["reasons"] == [
        "no model loaded: train one (`leadpulse train`) or check LEADPULSE_MODEL_DIR"], body


def test_the_token_guards_everything_but_probes_and_metrics(worker_factory):
    run = worker_factory("token", LEADPULSE_API_TOKEN=TOKEN).start()
    _readiness_until_ready(run)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert _get(run, path)[0] == 200, path
    for token in (None, "wrong", TOKEN + "x"):
        status, body = _get(run, "/leads/ct_000001", token)
        assert status == 401 and "Bearer" in body["error"], (token, status, body)
    status, body = _get(run, "/leads/ct_nobody", TOKEN)
    assert status == 404 and "no score" in body["error"]
    # Faust's own views are off: nothing of the deployment is described
    for path in ("/router", "/table", "/graph"):
        assert _get(run, path, TOKEN)[0] == 404, path
