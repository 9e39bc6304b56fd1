"""The documentation stays true: every setting in docs/configuration.md with its default, every
alert in docs/operating.md, and every relative link between the docs resolves."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.ops.ops_support import ROOT

DOCS = ROOT / "docs"
NEW_DOCS = ["getting-started.md", "configuration.md", "contracts.md", "operating.md", "bring-your-own-crm.md"]


def _config_table() -> dict[str, str]:
    """Environment variable -> default, from the table in stream/config.py's docstring."""
    import leadpulse.stream.config

    rows = {}
    for line in leadpulse.stream.config.__doc__.splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]+)\s{2,}(\S.*?)\s{2,}\S", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    return rows


def test_configuration_reference_lists_every_setting_with_its_default():
    from leadpulse.stream.config import Settings

    doc = (DOCS / "configuration.md").read_text()
    table = _config_table()
    assert set(table) == set(Settings.env_vars()), "stream/config.py's own table is the source of truth"
    doc_rows = {m.group(1): m.group(2) for m in re.finditer(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|\s*([^|]*)\|", doc, flags=re.M)}
    for var in Settings.env_vars():
        assert var in doc_rows, f"docs/configuration.md has no table row for {var}"
        default = table[var]
        assert default.strip("`") in doc_rows[var].replace("`", ""), \
            f"{var}: default {default!r} not in its row {doc_rows[var]!r}"


def test_operating_guide_covers_the_operations_issue_6_names():
    text = (DOCS / "operating.md").read_text().lower()
    for topic in ("partition", "scale", "retention", "rebuild", "recover", "upgrad", "roll back"):
        assert topic in text, topic


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+\s+(.+)$", markdown, flags=re.M)}


def test_relative_links_and_anchors_in_the_new_docs_resolve():
    for name in NEW_DOCS:
        path = DOCS / name
        text = path.read_text()
        for target, anchor in re.findall(r"\]\((?!https?://|mailto:)([^)#\s]*)(?:#([^)\s]+))?\)", text):
            linked = (path.parent / target) if target else path
            assert linked.exists(), f"{name}: broken link {target}"
            if anchor and linked.suffix == ".md":
                assert anchor in _anchors(linked.read_text()), f"{name}: no section #{anchor} in {target or name}"


def test_getting_started_uses_only_commands_that_exist():
    from leadpulse.stream.cli import build_parser

    text = (DOCS / "getting-started.md").read_text()
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001
    # command lines, not the live view's "leadpulse live —" header
    for sub in re.findall(r"^leadpulse ([a-z]+)\b(?! —)", text, flags=re.M):
        assert sub in commands, f"getting-started uses `leadpulse {sub}`"
    for script in re.findall(r"\./(scripts/[\w.]+)", text):
        assert (ROOT / script).is_file(), script


def test_every_example_in_the_contracts_validates_against_its_topic_model():
    from leadpulse.schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS

    models = {s.name: s.model for s in INPUT_TOPICS + OUTPUT_TOPICS}
    text = (DOCS / "contracts.md").read_text()
    checked = set()
    for topic, body in re.findall(r"^### (\S+)\n(.*?)(?=^##)", text + "\n## end", flags=re.M | re.S):
        for block in re.findall(r"```json\n(.*?)```", body, flags=re.S):
            value = models[topic].model_validate_json(block)  # raises on any contract violation
            assert value.model_dump(), topic
            checked.add(topic)
    assert checked == set(models), f"no example for {set(models) - checked}"


def test_the_worked_crm_mapping_example_runs_and_every_row_is_valid(tmp_path):
    """docs/bring-your-own-crm.md: its export files and its script, run as written."""
    import subprocess

    from leadpulse.schemas.tables import read_tables

    text = (DOCS / "bring-your-own-crm.md").read_text()
    files = re.findall(r"<!-- file: (\S+) -->\n```csv\n(.*?)```", text, flags=re.S)
    scripts = re.findall(r"<!-- run: (\S+) -->\n```python\n(.*?)```", text, flags=re.S)
    assert len(files) == 5 and len(scripts) == 1
    for name, body in files + scripts:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    result = subprocess.run([sys.executable, scripts[0][0]], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    events, errors = read_tables(tmp_path / "tables")
    assert not errors, errors
    kinds = [e.kind for e in events]
    assert {k: kinds.count(k) for k in set(kinds)} == {"company": 3, "contact": 4, "activity": 5,
                                                         "opportunity": 2, "order": 1}
    contacts = {e.contact_id: e for e in events if e.kind == "contact"}
    assert contacts["hs-1"].company_id == "acme.example" and contacts["hs-2"].seniority == "c_level"
    first = next(e for e in events if e.kind == "activity")
    assert first.timestamp.isoformat() == "2026-01-09T10:00:00+00:00"  # 11:00 Berlin in UTC
