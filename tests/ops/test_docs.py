"""The documentation stays true: every setting in docs/configuration.md with its default, every
alert in docs/operating.md, and every relative link between the docs resolves."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.ops.ops_support import ROOT

DOCS = ROOT / "docs"
NEW_DOCS = ["getting-started.md", "configuration.md", "contracts.md", "operating.md", "bring-your-own-crm.md"]


def _section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _rows(markdown: str) -> dict[str, tuple[str, str]]:
    """First-column variable -> (default, meaning), for each table row of ``markdown``."""
    return {m.group(1): (m.group(2).strip(), m.group(3).strip())
            for m in re.finditer(r"^\|\s*`([A-Z][A-Z0-9_]+)`[^|]*\|([^|]*)\|(.*)\|\s*$", markdown, flags=re.M)}


def test_configuration_reference_lists_every_setting_with_its_default():
    """Settings (stream/config.py) is the source: each field has its row, and every variable the
    page names is a setting or one of the compose stack's own."""
    from leadpulse.stream.config import Settings, doc_default

    text = (DOCS / "configuration.md").read_text()
    rows = _rows(_section(text, "leadpulse settings"))
    for name, field in Settings.model_fields.items():
        var = Settings.env_name(name)
        assert var in rows, f"docs/configuration.md has no table row for {var}"
        assert rows[var][0] == doc_default(field), f"{var}: default {doc_default(field)!r}, doc {rows[var][0]!r}"
        assert rows[var][1], f"{var}: no meaning"
    stack = set(_rows(_section(text, "docker-compose variables"))) - set(Settings.env_vars())
    compose = (ROOT / "docker-compose.yml").read_text()
    assert all(var in compose for var in stack), [var for var in stack if var not in compose]
    named = set(re.findall(r"\b((?:LEADPULSE|KAFKA)_[A-Z0-9_]+)", text))
    assert named <= set(Settings.env_vars()) | stack, f"not settings: {named - set(Settings.env_vars()) - stack}"


def test_configuration_reference_is_the_generated_table():
    from leadpulse.stream.config import update_doc

    text = (DOCS / "configuration.md").read_text()
    assert update_doc(text) == text, \
        "stale: run python -m leadpulse.stream.config --update-doc docs/configuration.md"


def test_operating_guide_covers_the_operations_issue_6_names():
    text = (DOCS / "operating.md").read_text().lower()
    for topic in ("partition", "scale", "retention", "rebuild", "recover", "upgrad", "roll back"):
        assert topic in text, topic


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors (lower case, punctuation dropped, spaces to dashes) and the
    explicit ``<a id="...">`` ones."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+\s+(.+)$", markdown, flags=re.M)} \
        | set(re.findall(r'<a id="([^"]+)"></a>', markdown))


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
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    # command lines, not the live view's "leadpulse live —" header
    for sub in re.findall(r"^leadpulse ([a-z]+)\b(?! —)", text, flags=re.M):
        assert sub in commands, f"getting-started uses `leadpulse {sub}`"
    for script in re.findall(r"\./(scripts/[\w.]+)", text):
        assert (ROOT / script).is_file(), script


def test_every_example_in_the_contracts_validates_against_its_topic_model():
    from leadpulse.schemas.topics import ALL_TOPICS

    models = {s.name: s.model for s in ALL_TOPICS}
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


def _repo_text_files() -> dict[str, str]:
    """Path -> text of every file git tracks or would track (new files count before their commit)."""
    import subprocess

    import pytest

    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout: {exc}")
    texts = {}
    for name in listed:
        path = ROOT / name
        if path.is_file():
            texts[name] = path.read_bytes().decode("utf-8", errors="ignore")
    return texts


def test_the_repository_cites_only_its_own_docs():
    """Comments, docstrings and docs cite docs/ in the repository, never notes kept outside it,
    and every ``docs/<page>.md#<anchor>`` they cite (and every ``<page>.md#<anchor>`` link between
    the docs) names an ``<a id>`` or a heading of that page (docs/architecture.md#layout)."""
    # built from parts so that this file does not cite them itself
    outside = re.compile("|".join([r"\bshared" + "/", "BROKER" + "_NOTES", r"\bARCHITECTURE" + r"\.md",
                                   r"\bSTYLE" + r"\.md"]))
    texts = _repo_text_files()
    offenders = [f"{name}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)}"
                 for name, text in texts.items() for m in outside.finditer(text)]
    assert not offenders, "cites notes outside the repository (cite docs/ instead):\n" + "\n".join(offenders)

    def anchors(page: str) -> set[str]:
        markdown = (DOCS / page).read_text()
        return _anchors(markdown) | set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", markdown))

    cited = [(name, page, anchor) for name, text in texts.items()
             for page, anchor in re.findall(r"\bdocs/([\w.-]+\.md)#([\w-]+)", text)]
    cited += [(name, page or Path(name).name, anchor) for name, text in texts.items()
              if name.startswith("docs/") and name.endswith(".md")
              for page, anchor in re.findall(r"\]\(([\w.-]+\.md)?#([\w-]+)\)", text)]
    assert cited, "no docs anchors found: the pattern is wrong"
    missing = [f"{name}: docs/{page}#{anchor}" for name, page, anchor in cited
               if not (DOCS / page).is_file() or anchor not in anchors(page)]
    assert not missing, "cited anchors that do not exist:\n" + "\n".join(sorted(set(missing)))
