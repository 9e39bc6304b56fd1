"""docker-compose.yml, the Dockerfile and the provisioning they mount.

There is no Docker engine here, so the stack itself never runs in these tests: they check what
can be checked without one. The compose file parses; every file or directory it references
exists (build context, Dockerfile, bind mounts, the scripts and examples it runs); the wiring
between services is consistent (depends_on, volumes, ports, Prometheus targets, Grafana paths);
and every leadpulse variable it sets is a real setting.
"""
from __future__ import annotations

import json
import posixpath
import re
import subprocess
from pathlib import Path

import yaml

from tests.ops.ops_support import ROOT, exposed_metric_names, metric_names_in

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict = COMPOSE["services"]
WORKERS = sorted(n for n, s in SERVICES.items() if s.get("command") == ["worker"])


def _binds(service: dict) -> list[tuple[Path, str]]:
    """(host path, container path) of every bind mount ("./..." sources) of a service."""
    out = []
    for v in service.get("volumes", []):
        source, target = v.split(":")[:2]
        if source.startswith((".", "/")):
            out.append(((ROOT / source).resolve(), target))
    return out


def _in_container(service: dict, container_path: str) -> Path:
    """The repository file that a container path of ``service`` maps to (through its binds)."""
    for host, target in sorted(_binds(service), key=lambda b: -len(b[1])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return host / posixpath.relpath(container_path, target) if container_path != target else host
    raise AssertionError(f"{container_path} is not mounted from the repository")


def test_the_stack_has_every_part():
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    env = SERVICES["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "KAFKA_CONTROLLER_QUORUM_VOTERS" in env  # KRaft
    assert WORKERS and "worker-1" in WORKERS
    for name in ("topics", "simulate", "trainer", "publisher", "prometheus", "alertmanager", "grafana"):
        assert name in SERVICES, name
    assert SERVICES["publisher"]["command"][:1] == ["publish"]


def test_every_referenced_file_exists():
    for name, service in SERVICES.items():
        build = service.get("build")
        if build:
            context = ROOT / build["context"]
            assert context.is_dir(), f"{name}: build context {context}"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile"
        for host, _target in _binds(service):
            assert host.exists(), f"{name}: bind mount source {host} missing"
        entry = (service.get("entrypoint") or []) + (service.get("command") or [])
        for arg in entry:  # scripts and examples the service runs from the repository
            if isinstance(arg, str) and re.fullmatch(r"(examples|deploy)/\S+\.(py|sh)", arg):
                assert (ROOT / arg).is_file(), f"{name}: runs missing {arg}"
            if isinstance(arg, str) and arg.startswith("/leadpulse/"):
                assert _in_container(service, arg).is_file(), f"{name}: runs missing {arg}"


def test_named_volumes_and_dependencies_are_declared():
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for v in service.get("volumes", []):
            source = v.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared"
        depends = service.get("depends_on", {})
        for dep, cond in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_completed_successfully":
                assert SERVICES[dep].get("restart") == "no", f"{dep} is waited for as a one-shot"
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{dep} is waited for as healthy"


def test_workers_have_state_health_and_restart_policies():
    models = set()
    data = []
    for name in WORKERS:
        w = SERVICES[name]
        assert w["restart"] in ("unless-stopped", "always", "on-failure"), name
        assert "6066" in " ".join(w["healthcheck"]["test"]), name
        assert w["environment"]["LEADPULSE_WEB_HOST"] == "0.0.0.0", name  # reachable in a container
        mounts = {v.split(":")[1]: v.split(":")[0] for v in w["volumes"]}
        assert mounts["/data"] == f"{name}-data", f"{name}: its own state volume"
        data.append(mounts["/data"])
        models.add(mounts["/models"])
        assert w["environment"]["LEADPULSE_DATA_DIR"] == "/data"
        assert w["environment"]["LEADPULSE_MODEL_DIR"] == "/models"
        deps = w["depends_on"]  # a champion exists before the first worker starts
        assert deps["trainer"]["condition"] == "service_completed_successfully"
        assert deps["topics"]["condition"] == "service_completed_successfully"
    assert len(set(data)) == len(WORKERS) and len(models) == 1, "state per worker, one shared registry"
    trainer = SERVICES["trainer"]
    assert {v.split(":")[1]: v.split(":")[0] for v in trainer["volumes"]}["/models"] in models
    for name in ("kafka", "prometheus", "alertmanager", "grafana"):
        assert "healthcheck" in SERVICES[name] and SERVICES[name]["restart"] == "unless-stopped", name


def test_leadpulse_environment_names_real_settings():
    from leadpulse.stream.config import Settings

    known = set(Settings.env_vars())
    for name, service in SERVICES.items():
        if service.get("image") != "leadpulse:local":
            continue
        env = service.get("environment", {})
        for var in env:
            if var.startswith(("LEADPULSE_", "KAFKA_BOOTSTRAP")):
                assert var in known, f"{name}: {var} is not a leadpulse setting"
    passed = set(SERVICES["worker-1"]["environment"])
    # every setting is configurable from the environment of compose (the broker binary is
    # only for the embedded broker, which compose does not use)
    assert known - passed == {"LEADPULSE_BROKER_BIN"}, known - passed


def test_prometheus_scrapes_the_workers_and_loads_the_rules_in_the_container():
    prom = SERVICES["prometheus"]
    config_arg = next(a for a in prom["command"] if a.startswith("--config.file="))
    config_path = config_arg.split("=", 1)[1]
    config_file = _in_container(prom, config_path)
    assert config_file == (ROOT / "deploy" / "prometheus.yml").resolve()
    config = yaml.safe_load(config_file.read_text())
    for pattern in config["rule_files"]:  # resolved inside the container, then mapped back
        container_glob = posixpath.normpath(posixpath.join(posixpath.dirname(config_path), pattern))
        host_dir = _in_container(prom, posixpath.dirname(container_glob))
        assert list(host_dir.glob(posixpath.basename(container_glob))), pattern
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "leadpulse")
    names = {n for sd in job["dns_sd_configs"] for n in sd["names"]}
    assert names == set(WORKERS), "Prometheus scrapes exactly the worker services"
    assert {sd["port"] for sd in job["dns_sd_configs"]} == {6066}
    am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]
    assert _in_container(SERVICES["alertmanager"], "/etc/alertmanager/alertmanager.yml").is_file()


def test_grafana_provisions_the_data_source_and_the_dashboard():
    grafana = SERVICES["grafana"]
    sources = _in_container(grafana, "/etc/grafana/provisioning/datasources")
    ds = [d for f in sources.glob("*.yml") for d in yaml.safe_load(f.read_text())["datasources"]]
    assert [d["url"] for d in ds] == ["http://prometheus:9090"]
    providers = _in_container(grafana, "/etc/grafana/provisioning/dashboards")
    paths = [p["options"]["path"] for f in providers.glob("*.yml") for p in yaml.safe_load(f.read_text())["providers"]]
    dashboards = [j for p in paths for j in _in_container(grafana, p).glob("*.json")]
    assert dashboards, "the provider's path holds the dashboard JSON"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _in_container(grafana, home).is_file()
    # the dashboard names no data source: a variable of type datasource picks one (the
    # provisioned default here, any Prometheus where the JSON is imported)
    assert [d["type"] for d in ds if d.get("isDefault")] == ["prometheus"]
    for path in dashboards:
        dash = json.loads(path.read_text())
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        source = variables["DS_PROMETHEUS"]
        assert (source["type"], source["query"]) == ("datasource", "prometheus")
        used = "${DS_PROMETHEUS}"
        for v in variables.values():
            if "datasource" in v:
                assert v["datasource"] == {"type": "prometheus", "uid": used}, v["name"]
        for panel in dash["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": used}, panel["title"]
            for t in panel["targets"]:
                assert t["datasource"] == {"type": "prometheus", "uid": used}, panel["title"]
        assert not re.search(r'"uid":\s*"prometheus"', path.read_text()), "a hard-coded data source uid"


def test_grafana_wants_a_login_and_a_password_of_its_own():
    env = SERVICES["grafana"]["environment"]
    assert str(env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    # the password comes from the environment, and compose refuses to start without it
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    text = (ROOT / "docker-compose.yml").read_text()
    assert "admin/admin" not in text and not re.search(r"GRAFANA_ADMIN_PASSWORD:-", text), "a default password"
    assert str(env.get("GF_USERS_ALLOW_SIGN_UP", "false")).lower() == "false"


def test_dashboard_shows_what_operators_need():
    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "leadpulse.json").read_text())
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dash["panels"]}
    known = exposed_metric_names() | {"up"}
    for title, expr in exprs.items():
        assert not metric_names_in(expr) - known, f"{title}: unknown metrics {metric_names_in(expr) - known}"
    wanted = {  # what issue 6 asks for -> the series that shows it
        "events/s per topic": "sum by (topic) (rate(leadpulse_events_consumed_total",
        "latency percentiles": "histogram_quantile(0.99, sum by (le) (rate(leadpulse_event_to_publish_seconds_bucket",
        "affected leads per event": "leadpulse_affected_leads_",
        "scores per minute": "rate(leadpulse_scores_published_total",
        "alerts per minute": "rate(leadpulse_alerts_total",
        "tier distribution": "sum by (tier) (leadpulse_leads_by_tier",
        "model version": "leadpulse_model_info",
        "AUROC": "leadpulse_model_auroc",
        "dead letters": "rate(leadpulse_events_rejected_total",
        "held events": "leadpulse_held_events",
        "data freshness": "leadpulse_applied_event_age_seconds",
        "process RSS": "process_resident_memory_bytes",
    }
    everything = " ".join(exprs.values())
    for what, fragment in wanted.items():
        assert fragment in everything, f"dashboard lacks {what}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"


def test_dockerfile_copies_only_what_exists_and_ignores_nothing_it_needs():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, flags=re.M)
    assert "download.pytorch.org/whl/cpu" in text and "pip install -c constraints.txt ." in text
    ignored = {entry.strip() for entry in (ROOT / ".dockerignore").read_text().splitlines()
               if entry.strip() and not entry.startswith("#")}
    for line in re.findall(r"^COPY\s+(.+)$", text, flags=re.M):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: missing"
            assert source.rstrip("/") not in ignored, f"COPY {source} but .dockerignore drops it"
    assert "6066" in text and "LEADPULSE_WEB_HOST=0.0.0.0" in text


def test_topic_script_is_valid_sh_and_keeps_input_history():
    script = ROOT / "deploy" / "create-topics.sh"
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "retention.ms=-1" in text
    for default in ("crm.companies", "crm.contacts", "crm.activities", "crm.opportunities", "crm.orders",
                    "leadpulse.accounts", "leads.scores", "leads.alerts", "crm.deadletter", "models.updates"):
        assert default in text, default
