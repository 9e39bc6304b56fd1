"""``leadpulse models``: real processes on a copy of a real trained registry, and one real worker
that follows the champion through a manual promotion and a rollback."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.stream.tests_support import consume, wait_for

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ("list", "show", "promote", "rollback", "pin", "unpin")


def leadpulse(*args: str, root: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``leadpulse ARGS``; without ``env``, on registry ``root`` and no broker."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
        env["LEADPULSE_MODEL_DIR"] = str(root)
    return subprocess.run([sys.executable, "-m", "leadpulse.stream.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


def models(*args: str, root: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return leadpulse("models", *args, root=root, env=env)


@pytest.fixture
def registry(trained_registry, tmp_path):
    """A copy of the session's registry (two trained GNNs) with a fresh history: v1 champion."""
    from leadpulse.model.registry import ModelRegistry

    root = tmp_path / "models"
    shutil.copytree(trained_registry[0], root)
    for name in ("champion.json", "champions.jsonl", "pin.json"):
        (root / name).unlink(missing_ok=True)
    reg = ModelRegistry(root)
    reg.set_champion(trained_registry[1][0], "test: first model")
    return reg, trained_registry[1]


def test_help_lists_models_and_its_subcommands():
    out = subprocess.run([sys.executable, "-m", "leadpulse.stream.cli", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "models" in out.stdout
    out = models("--help", root=ROOT / "nowhere")
    assert out.returncode == 0 and all(sub in out.stdout for sub in SUBCOMMANDS)
    for sub in SUBCOMMANDS:
        out = models(sub, "--help", root=ROOT / "nowhere")
        assert out.returncode == 0 and out.stdout.startswith(f"usage: leadpulse models {sub}"), out.stderr
    assert models(root=ROOT / "nowhere").returncode == 2  # a subcommand is required


def test_no_registry_is_an_error_and_is_not_created(tmp_path):
    out = models("list", root=tmp_path / "typo")
    assert out.returncode == 2 and f"no model registry at {tmp_path / 'typo'}" in out.stderr
    assert not (tmp_path / "typo").exists()


def test_list_and_show(registry):
    reg, (v1, v2) = registry
    out = models("list", root=reg.root)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert lines[v1].endswith("champion") and not lines[v2].endswith("champion")
    assert "GNNLeadModel" in lines[v2] and v1 in lines[v2]  # its class, and its parent

    listed = json.loads(models("list", "--json", root=reg.root).stdout)
    assert listed["champion"] == v1 and listed["pinned"] is None
    rows = {r["version"]: r for r in listed["versions"]}
    assert set(rows) == {v1, v2} and rows[v1]["champion"] and not rows[v2]["champion"]
    art = reg.artifact(v2)
    latest = max(art["metrics"], key=lambda m: tuple(m["window"]))
    assert rows[v2]["metrics"] == latest["metrics"] and rows[v2]["window"] == latest["window"]
    assert {"auroc", "average_precision"} <= set(rows[v2]["metrics"]) and rows[v2]["parent"] == v1
    assert f"{latest['metrics']['average_precision']:.4f}" in lines[v2]

    shown = json.loads(models("show", "champion", "--json", root=reg.root).stdout)
    assert shown["artifact"]["version"] == v1 and shown["champion"] and shown["pinned"] is None
    assert shown["history"][-1]["reason"] == "test: first model"
    assert any(d["challenger"] == v1 for d in shown["decisions"])

    out = models("show", v2, root=reg.root)
    assert out.returncode == 0 and out.stdout.startswith(v2 + "\n")
    assert art["task"] in out.stdout and "held-out windows" in out.stdout
    assert "auroc=" in out.stdout and "average_precision=" in out.stdout
    assert re.search(r"cutoffs \d{4}-\d\d-\d\d( \d\d:\d\d)? \.\. \d{4}-", out.stdout)  # dates, not micros
    assert str(art["train_window"][0]) not in out.stdout

    out = models("show", "gnn-v0999", root=reg.root)
    assert out.returncode == 2 and "unknown version 'gnn-v0999'" in out.stderr


def test_promote_and_rollback_without_a_broker(registry):
    reg, (v1, v2) = registry
    out = models("promote", "gnn-v0999", "--reason", "typo", root=reg.root)
    assert out.returncode == 2 and "unknown version 'gnn-v0999'" in out.stderr and reg.champion() == v1
    assert models("promote", v2, root=reg.root).returncode == 2  # --reason is required

    out = models("promote", v2, "--reason", "v1 overscores a bulk import", root=reg.root)
    assert out.returncode == 0, out.stderr
    assert "registry only" in out.stdout and "champion poll" in out.stdout
    assert reg.champion() == v2
    last = reg.decisions()[-1]
    assert (last["kind"], last["challenger"], last["champion"]) == ("manual", v2, v1)
    assert last["reason"] == "manual: v1 overscores a bulk import"

    out = models("rollback", root=reg.root)
    assert out.returncode == 0 and f"rolled back from {v2} to {v1}" in out.stdout
    assert reg.champion() == v1 and reg.champion_history()[-1]["reason"] == "rollback"
    out = models("rollback", root=reg.root)
    assert out.returncode == 2 and f"nothing to roll back to: {v1} is the first champion" in out.stderr
    assert reg.champion() == v1


def test_pin_refuses_manual_changes_until_forced_or_unpinned(registry):
    reg, (v1, v2) = registry
    out = models("pin", v2, "--reason", "quarter close", root=reg.root)
    assert out.returncode == 0, out.stderr
    assert reg.champion() == v2 and reg.pinned()["reason"] == "quarter close"
    listed = models("list", root=reg.root).stdout
    assert next(line for line in listed.splitlines() if line.startswith(v2)).endswith("champion, pinned")

    for args in (("promote", v1, "--reason", "x"), ("rollback",)):
        out = models(*args, root=reg.root)
        assert out.returncode == 2 and "pinned" in out.stderr and "--force" in out.stderr
        assert reg.champion() == v2
    out = models("rollback", "--force", "--reason", "v2 misbehaves", root=reg.root)
    assert out.returncode == 0 and reg.champion() == v1 and reg.pinned() is not None
    assert reg.champion_history()[-1]["reason"] == "rollback: v2 misbehaves"

    out = models("unpin", root=reg.root)
    assert out.returncode == 0 and "unpinned" in out.stdout and reg.pinned() is None
    out = models("unpin", root=reg.root)
    assert out.returncode == 0 and "not pinned" in out.stdout


def test_train_on_a_pinned_registry_records_its_decision_but_keeps_the_champion(registry, tiny_world):
    reg, (v1, _) = registry
    assert models("pin", "--reason", "quarter close", root=reg.root).returncode == 0
    out = leadpulse("train", "--tables", str(tiny_world), "--epochs", "1", root=reg.root)
    assert out.returncode == 0, out.stderr
    assert f"not promoted: pinned: the registry is pinned on {v1}" in out.stdout
    assert reg.champion() == v1 and reg.pinned()["reason"] == "quarter close"
    challenger = reg.decisions()[-1]
    assert challenger["kind"] == "compare" and not challenger["promoted"]
    shown = json.loads(models("show", challenger["challenger"], "--json", root=reg.root).stdout)
    assert shown["decisions"][-1]["reason"].startswith("pinned:") and not shown["champion"]


@pytest.mark.slow
def test_a_worker_follows_a_manual_promotion_and_a_rollback(worker_factory, registry):
    reg, (v1, v2) = registry
    run = worker_factory("w1", LEADPULSE_MODEL_DIR=str(reg.root), LEADPULSE_MODEL_POLL_SECONDS="1").start()

    def serving() -> str:
        return json.loads(run.get("/healthz") or "{}").get("model_version")
    wait_for(lambda: serving() == v1, 30, f"the worker serves {v1}\n" + run.log())

    began = time.monotonic()
    out = models("promote", v2, "--reason", "e2e", env=run.env())
    assert out.returncode == 0, out.stderr
    assert f"announced on {run.topics['models.updates']}" in out.stdout
    wait_for(lambda: serving() == v2, 15, f"the worker swaps to {v2}\n" + run.log(), every=0.2)

    out = models("rollback", env=run.env())
    assert out.returncode == 0, out.stderr
    wait_for(lambda: serving() == v1, 15, f"the worker swaps back to {v1}\n" + run.log(), every=0.2)
    assert time.monotonic() - began < 40

    updates = [json.loads(r.value) for r in consume(run, "models.updates", 2)]
    assert [(u["model_version"], u["promoted"], u["reason"]) for u in updates] == \
        [(v2, True, "manual: e2e"), (v1, True, "rollback")]
    assert updates[0]["metrics"] == max(reg.artifact(v2)["metrics"], key=lambda m: tuple(m["window"]))["metrics"]
