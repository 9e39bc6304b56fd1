"""The distribution: one top-level import name, usable from a wheel outside the source tree."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out), str(ROOT)], check=True, timeout=300)
    wheels = list(out.glob("leadpulse-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_installs_one_top_level_name(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        tops = {name.split("/")[0] for name in z.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"leadpulse"}
    for sub in ("schemas", "graph_store", "model", "stream", "simulator", "bench"):
        assert f"leadpulse/{sub}/__init__.py" in z.namelist() or any(
            n.startswith(f"leadpulse/{sub}/") for n in z.namelist()), sub


def test_a_fresh_venv_with_the_wheel_runs_the_cli(wheel: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # the dependencies come from this environment's site-packages as a plain path: its .pth files
    # (the editable install of the source tree among them) are not processed
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, timeout=300)
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    help_ = run(str(venv / "bin" / "leadpulse"), "--help")
    assert help_.returncode == 0 and "usage: leadpulse" in help_.stdout, help_.stderr
    where = run(str(py), "-c", "import leadpulse.stream, leadpulse.model.gnn; print(leadpulse.stream.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(site)), where.stdout
    for bare in ("stream", "model", "schemas", "graph_store", "simulator", "bench"):
        assert run(str(py), "-c", f"import {bare}").returncode != 0, f"{bare} is importable"
