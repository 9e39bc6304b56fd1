"""Alert rules, Prometheus and Alertmanager configuration, checked by the real tools.

``promtool check config`` and ``check rules`` must pass, the ``promtool test rules`` unit tests
must pass, and every alert must have a unit test in which it fires and one in which a healthy
series keeps it quiet. Every metric a rule names must be one the worker exposes.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.ops.ops_support import ROOT, exposed_metric_names, metric_names_in, require_tool

RULE_FILES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
TEST_FILES = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _rules() -> list[dict]:
    return [r for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]]


def test_promtool_check_config_resolves_the_rule_files():
    result = _run(require_tool("promtool"), "check", "config", "deploy/prometheus.yml")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert RULE_FILES, "no rule files under prometheus/rules"
    for f in RULE_FILES:  # the relative rule_files glob found every file, and each is valid
        assert re.search(rf"Checking \S*prometheus/rules/{f.name}\s+SUCCESS", out), out
    assert f"SUCCESS: {len(_rules())} rules found" in out, out


def test_promtool_check_rules():
    result = _run(require_tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    assert TEST_FILES, "no promtool unit tests under prometheus/tests"
    result = _run(require_tool("promtool"), "test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_in_a_unit_test_and_stays_quiet_on_a_healthy_series():
    cases = []  # (alertname, expected alerts, label values of the test's input series)
    for f in TEST_FILES:
        for test in yaml.safe_load(f.read_text())["tests"]:
            values = set(re.findall(r'="([^"]*)"', " ".join(s["series"] for s in test["input_series"])))
            cases += [(c["alertname"], c.get("exp_alerts") or [], values) for c in test["alert_rule_test"]]
    for rule in _rules():
        name = rule["alert"]
        mine = [c for c in cases if c[0] == name]
        firing = [c for c in mine if c[1]]
        assert firing, f"{name}: no unit test in which it fires"
        # quiet: a case expecting nothing, or a firing case whose input has a series (another
        # instance or topic) that the alert must leave alone
        quiet = [c for c in mine if not c[1]] + [
            c for c in firing if c[2] - {v for a in c[1] for v in a["exp_labels"].values()} - {"leadpulse"}]
        assert quiet, f"{name}: no unit test with a healthy series that must not fire"


def test_every_alert_has_summary_and_a_runbook_in_the_operating_guide():
    guide = (ROOT / "docs" / "operating.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"^#+\s*(.+)$", guide, flags=re.M)}
    for rule in _rules():
        notes = rule.get("annotations", {})
        assert notes.get("summary") and notes.get("runbook"), rule["alert"]
        anchor = f"docs/operating.md#{rule['alert'].lower()}"
        assert anchor in notes["runbook"], f"{rule['alert']}: runbook should link {anchor}"
        assert rule["alert"].lower() in headings, f"docs/operating.md has no section {rule['alert']}"
        assert rule["labels"]["severity"] in ("warning", "critical")


def test_rules_only_name_metrics_the_worker_exposes():
    known = exposed_metric_names() | {"up"}
    for rule in _rules():
        unknown = metric_names_in(rule["expr"]) - known
        assert not unknown, f"{rule['alert']} names unknown metrics {unknown}"


def test_alertmanager_config_is_valid():
    result = _run(require_tool("amtool"), "check-config", "deploy/alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    # every alert is routed somewhere: the root route has a receiver that is defined
    config = yaml.safe_load((ROOT / "deploy" / "alertmanager.yml").read_text())
    assert config["route"]["receiver"] in {r["name"] for r in config["receivers"]}
