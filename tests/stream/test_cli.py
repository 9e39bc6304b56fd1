"""The ``leadpulse`` command, run as a real process."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leadpulse.stream.consume import consume

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "tables.md"


def leadpulse(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leadpulse.stream.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _ctrl_c_reaches_it() -> None:
    # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored: give the child the default, as a terminal's foreground job has.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _assert_gone(pid: int, owner: str, timeout: float = 10) -> None:
    """The process ``pid`` exits within ``timeout`` seconds (a broker must die with its owner)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"broker {pid} survived {owner}")


def test_help() -> None:
    out = leadpulse("--help")
    assert out.returncode == 0
    for command in ("broker", "simulate", "publish", "demo", "worker", "train", "retrain", "evaluate"):
        assert command in out.stdout


@pytest.mark.parametrize("command", ["broker", "simulate", "publish", "demo", "worker", "train", "retrain", "evaluate"])
def test_subcommand_help(command: str) -> None:
    out = leadpulse(command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: leadpulse " + command)


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "leadpulse"
    if not script.exists():
        pytest.skip("package not installed as a console script in this environment")
    assert subprocess.run([str(script), "--help"], capture_output=True, timeout=60).returncode == 0


def test_bad_setting_is_a_clean_error() -> None:
    out = leadpulse("publish", "--tables", ".", env={"LEADPULSE_PARTITIONS": "many"})
    assert out.returncode == 2 and "LEADPULSE_PARTITIONS" in out.stderr


def _doc_tables(path: Path) -> Path:
    text = DOCS.read_text()
    for name, body in re.findall(r"### (\w+\.csv)\n.*?```csv\n(.*?)```", text, re.S):
        (path / name).write_text(body)
    return path


def test_publish_command(broker: str, topic_prefix: str, tmp_path: Path) -> None:
    topic = topic_prefix + "activities"
    out = leadpulse("publish", "--tables", str(_doc_tables(tmp_path)), "--no-progress",
                    env={"KAFKA_BOOTSTRAP": broker, "LEADPULSE_TOPIC_ACTIVITIES": topic,
                         "LEADPULSE_PARTITIONS": "2"})
    assert out.returncode == 0, out.stderr
    assert "sent 14 events" in out.stdout and f"{topic}=4" in out.stdout
    assert len(consume(broker, [topic], expected=4, timeout=30)) == 4


def test_publish_without_broker_says_how_to_get_one(tmp_path: Path) -> None:
    out = leadpulse("publish", "--tables", str(tmp_path), env={"KAFKA_BOOTSTRAP": ""})
    assert out.returncode == 2 and "KAFKA_BOOTSTRAP" in out.stderr


def test_demo_with_existing_tables(tmp_path: Path) -> None:
    """The whole demo on its own embedded broker, fed the documented example tables."""
    out = leadpulse("demo", "--events-only", "--tables", str(_doc_tables(tmp_path)), "--timeout", "30",
                    "--fast", env={"KAFKA_BOOTSTRAP": "", "LEADPULSE_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "crm.activities=4" in out.stdout and "[demo] done" in out.stdout


def test_broker_command_prints_bootstrap_and_dies_on_ctrl_c() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "leadpulse.stream.cli", "broker", "--no-topics"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_reaches_it)
    try:
        pid_line = proc.stdout.readline()
        bootstrap = proc.stdout.readline().split("KAFKA_BOOTSTRAP=")[1].strip()
        broker_pid = int(re.search(r"pid (\d+)", pid_line).group(1))
        assert bootstrap.startswith("127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    finally:
        _reap(proc)
    _assert_gone(broker_pid, "the CLI")


def test_demo_ctrl_c_stops_everything(tmp_path: Path) -> None:
    rows = "\n".join(f"a{i},c{i % 7},page_view,2026-01-01T00:00:{i % 60:02d}Z" for i in range(2000))
    (tmp_path / "activities.csv").write_text("activity_id,contact_id,type,timestamp\n" + rows + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "leadpulse.stream.cli", "demo", "--events-only", "--tables", str(tmp_path),
                             "--rate", "50"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "KAFKA_BOOTSTRAP": "", "LEADPULSE_DATA_DIR": str(tmp_path)},
                            preexec_fn=_ctrl_c_reaches_it)
    try:
        broker_pid = int(re.search(r"pid (\d+)", proc.stdout.readline()).group(1))
        for line in proc.stdout:
            if line.startswith("  seen:") and "crm.activities=" in line and "=0" not in line:
                break  # events are flowing
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        _reap(proc)
    _assert_gone(broker_pid, "the demo")


def test_full_demo_trains_streams_and_scores_the_tiny_world(tmp_path: Path) -> None:
    """The README's main command, on the tiny world: train, worker, live replay, scores out."""
    # the tiny world spans 90 days: train on 95 % of it (a split needs 14 + 2 x 30 days)
    out = leadpulse("demo", "--size", "tiny", "--history", "0.95", "--epochs", "5", "--rate", "400",
                    "--timeout", "240",
                    env={"KAFKA_BOOTSTRAP": "", "LEADPULSE_DATA_DIR": str(tmp_path)}, timeout=420)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "[train] PROMOTED" in out.stdout
    assert "later events live at 400 events/s" in out.stdout
    published = re.search(r"\[demo\] ([\d,]+) score changes", out.stdout)
    assert published and int(published.group(1).replace(",", "")) > 0, out.stdout[-3000:]
    assert "top leads" in out.stdout
    # the live replay starts once the worker has caught up with the history, and the view says so
    lines = out.stdout.splitlines()
    caught = next(i for i, line in enumerate(lines) if line.startswith("[replay] caught up with the history"))
    live = next(i for i, line in enumerate(lines) if "later events live at 400 events/s" in line)
    assert caught < live
    assert any(line.startswith("catching up with the history: applied") for line in lines[:caught])
    assert not any(line.startswith("catching up") for line in lines[caught:])
    assert any(line.startswith("live part: ") for line in lines[live:])
    # its latency is the live part's: counted from the live replay's start, never before it
    assert not any("since the live part started" in line for line in lines[:live])
    assert re.search(r"^\[replay\] live part: event→publish p50 [\d,]+ ms  p99 [\d,]+ ms", out.stdout, re.M)


@pytest.mark.parametrize("argv, default, expected", [
    ([], 300.0, (300.0, None, "300 events/s")),
    (["--rate", "50"], 300.0, (50.0, None, "50 events/s")),
    (["--speedup", "3600"], 300.0, (None, 3600.0, "3600 x event time")),
    (["--fast"], 300.0, (None, None, "full speed")),
])
def test_demo_pacing(argv: list, default: float, expected: tuple) -> None:
    """--rate, --speedup and --fast pace the live replay; neither: the default rate."""
    import argparse

    from leadpulse.stream.demo import _pace, register
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert _pace(parser.parse_args(["demo", *argv]), default) == expected


@pytest.mark.parametrize("counts, quiet_for, caught_up", [
    (dict(consumed=100, applied=90, rejected=6, held=4), 0.0, True),  # dead letters and held count
    (dict(consumed=100, applied=100, unpublished=3), 60.0, False),  # scores still to publish
    (dict(consumed=99, applied=99), 60.0, False),  # not all consumed
    (dict(consumed=100, applied=97), 2.0, False),  # still moving
    (dict(consumed=100, applied=97), 6.0, True),  # counts that never add up: quiet ends the wait
])
def test_demo_catch_up_rule(counts: dict, quiet_for: float, caught_up: bool) -> None:
    """The demo's live part waits until the worker is done with every event published so far."""
    from leadpulse.stream.demo import _caught_up
    from leadpulse.stream.liveview import MetricsSample
    assert _caught_up(MetricsSample(**counts), 100, quiet_for) is caught_up


# --------------------------------------------------------------------------- no accidental broker
def test_worker_without_kafka_bootstrap_exits_at_once_and_says_what_to_set() -> None:
    t = time.monotonic()
    out = leadpulse("worker", env={"KAFKA_BOOTSTRAP": ""})
    assert out.returncode == 2
    assert "set KAFKA_BOOTSTRAP" in out.stderr and "--embedded" in out.stderr
    assert "listening" not in out.stdout + out.stderr and time.monotonic() - t < 30


def test_worker_embedded_and_kafka_bootstrap_are_exclusive() -> None:
    out = leadpulse("worker", "--embedded", env={"KAFKA_BOOTSTRAP": "127.0.0.1:9"})
    assert out.returncode == 2 and "--embedded" in out.stderr and "KAFKA_BOOTSTRAP" in out.stderr


@pytest.mark.parametrize("action", ["create", "check"])
def test_topics_commands_need_kafka_bootstrap(action: str) -> None:
    out = leadpulse("topics", action, env={"KAFKA_BOOTSTRAP": ""})
    assert out.returncode == 2 and "set KAFKA_BOOTSTRAP" in out.stderr
    assert leadpulse("topics", action, "--help").stdout.startswith(f"usage: leadpulse topics {action}")


def test_worker_embedded_starts_its_own_broker(tmp_path: Path) -> None:
    from leadpulse.stream.broker import free_port
    from tests.stream.tests_support import wait_for

    port = free_port()
    log = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "leadpulse.stream.cli", "worker", "--embedded"], cwd=ROOT,
                            env={**os.environ, "KAFKA_BOOTSTRAP": "", "LEADPULSE_DATA_DIR": str(tmp_path),
                                 "LEADPULSE_WEB_PORT": str(port)},
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        import urllib.request

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    return True
            except OSError:
                return proc.poll() is not None  # stop waiting if it died
        wait_for(healthy, 60, "worker --embedded /healthz", every=0.2)
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        text = (tmp_path / "worker.log").read_text()
        assert "embedded broker on 127.0.0.1:" in text and "development only" in text
    finally:
        _reap(proc)
        log.close()
