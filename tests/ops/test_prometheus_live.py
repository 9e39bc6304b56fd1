"""Debian's Prometheus scrapes a live worker; leadpulse metrics come back through its HTTP API.

The worker (``live_worker``) consumed the tiny world. Prometheus runs on a free loopback port
with a generated config: the worker as scrape target (1 s interval) and the repository's alert
rules. The test then reads the worker's figures back with ``/api/v1/query``, checks that every
rule loaded and evaluates without error, and that every dashboard query is valid PromQL that
Prometheus answers.
"""
from __future__ import annotations

import json
import signal
import subprocess
import urllib.parse
import urllib.request

import pytest

from tests.ops.ops_support import ROOT, require_tool, wait_for

pytestmark = pytest.mark.slow


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def prometheus(tmp_path, live_worker):
    """Base URL of a Prometheus scraping ``live_worker`` (killed by pid at the end)."""
    from leadpulse.stream.broker import free_port

    binary = require_tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{ROOT / 'prometheus' / 'rules'}/*.yml']\n"
        "scrape_configs:\n"
        "  - job_name: leadpulse\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{live_worker.port}']}}]\n")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 60, "prometheus /-/ready")
        yield url
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        log.close()


def _query(url: str, promql: str) -> list:
    body = _get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_the_worker_and_serves_its_metrics(prometheus, live_worker):
    url = prometheus
    wait_for(lambda: _query(url, 'up{job="leadpulse"} == 1'), 30, "the worker target to be up")
    wait_for(lambda: _query(url, "leadpulse_scores_published_total"), 30, "scraped score counters")

    # the figures Prometheus holds are the worker's own (it is settled: nothing moves any more)
    consumed = sum(float(r["value"][1]) for r in _query(url, "leadpulse_events_consumed_total"))
    assert consumed == live_worker.metric("leadpulse_events_consumed_total") > 0
    by_topic = {r["metric"]["topic"] for r in _query(url, "sum by (topic) (leadpulse_events_consumed_total)")}
    assert by_topic == {live_worker.topics[t] for t in ("crm.companies", "crm.contacts", "crm.activities",
                                                          "crm.opportunities", "crm.orders")}
    published = sum(float(r["value"][1]) for r in _query(url, "leadpulse_scores_published_total"))
    assert published == live_worker.metric("leadpulse_scores_published_total") > 0
    jumps = _query(url, 'sum(leadpulse_alerts_total{kind="jump"})')
    assert jumps and float(jumps[0]["value"][1]) > 0

    model = _query(url, "leadpulse_model_info == 1")
    health = json.loads(live_worker.get("/healthz"))
    assert [r["metric"]["model_version"] for r in model] == [health["model_version"]]

    # histograms arrive whole: quantiles over the scrape window are finite numbers
    count = _query(url, "sum(leadpulse_event_to_publish_seconds_count)")
    assert float(count[0]["value"][1]) > 0
    p99 = _query(url, "histogram_quantile(0.99, sum by (le) (leadpulse_event_to_publish_seconds_bucket))")
    assert 0 < float(p99[0]["value"][1]) < 60
    affected = _query(url, "sum by (kind) (leadpulse_affected_leads_count)")
    assert {r["metric"]["kind"] for r in affected} >= {"activity", "contact"}


def test_prometheus_loads_and_evaluates_every_alert_rule(prometheus, live_worker):
    import yaml

    expected = {r["alert"] for f in (ROOT / "prometheus" / "rules").glob("*.yml")
                for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]}

    def evaluated() -> bool:
        rules = [r for g in _get(prometheus + "/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        return {r["name"] for r in rules} == expected and all(r.get("lastEvaluation", "").startswith("2")
                                                               and not r["lastEvaluation"].startswith("0001")
                                                               for r in rules)

    wait_for(evaluated, 30, "every rule evaluated once")
    rules = [r for g in _get(prometheus + "/api/v1/rules")["data"]["groups"] for r in g["rules"]]
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


def test_every_dashboard_query_is_answered(prometheus, live_worker):
    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "leadpulse.json").read_text())
    wait_for(lambda: _query(prometheus, "leadpulse_scores_published_total"), 30, "scraped metrics")
    for panel in dash["panels"]:
        for target in panel["targets"]:
            # Grafana's variables, as Grafana would expand them for "All" over a short range
            promql = target["expr"].replace("$__rate_interval", "1m").replace('"$instance"', '".*"')
            _query(prometheus, promql)  # asserts status == success (valid PromQL, evaluated)
