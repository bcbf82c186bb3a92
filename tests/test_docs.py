"""The docs stay true: links and anchors resolve, every alert has a runbook section, and every
command the README and docs/ show exists with the flags they show (a renamed flag breaks this)."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands, load_command_class

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PAGES = ["performance", "reliability", "deploy", "api", "operations", "reference"]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> set[str]:
    prose = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)  # a shell comment is no heading
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", prose, re.M)}


def test_the_readme_is_a_front_door_that_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 260
    for page in PAGES:
        assert (ROOT / "docs" / f"{page}.md").is_file(), page
        assert f"docs/{page}.md" in readme, f"the README does not link docs/{page}.md"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(doc):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        exists = path.exists()
        if not exists or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    assert broken == []


def test_every_alert_rule_has_a_runbook_section():
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert alerts
    for rule in alerts:
        url = rule["annotations"].get("runbook_url", "")
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md", rule["alert"]
        assert anchor == rule["alert"].lower() and anchor in anchors(ROOT / path), rule["alert"]


def shown(pattern: str) -> set[tuple[str, str]]:
    """(the command's name, the rest of the line) for each shown use of a command."""
    found = set()
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            for m in re.finditer(pattern, line):
                found.add((m.group(1), m.group(2)))
    return found


def flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


def flag_values(text: str) -> list[tuple[str, list[str]]]:
    """(flag, the literal values shown for it): `--limits documented|none` gives both words;
    placeholders (`URL`, `N`) and numbers are not literal choices."""
    shown = []
    for flag, value in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)[ =]([a-z][\w.|\\-]*)", text):
        shown.append((flag, [v for v in value.replace("\\", "").split("|") if v]))
    return shown


MANAGE = r"manage\.py ([a-z_]+)([^`]*)"


def test_every_manage_py_command_shown_exists_with_its_flags():
    commands = get_commands()
    shown_uses = shown(MANAGE)
    assert len({name for name, _ in shown_uses}) >= 10
    wrong = []
    for name, rest in sorted(shown_uses):
        if name not in commands:
            wrong.append(f"manage.py {name}: no such command")
            continue
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        actions = {option: action for action in parser._actions for option in action.option_strings}
        wrong += [f"manage.py {name} {flag}" for flag in flags(rest) - set(actions)]
        for flag, values in flag_values(rest):
            choices = getattr(actions.get(flag), "choices", None)
            wrong += [f"manage.py {name} {flag} {v}" for v in values if choices and v not in choices]
    assert wrong == []


def test_every_make_target_shown_exists():
    targets = {name for name, _ in shown(r"(?:`|^\$ )(?:[A-Z_]+=\S+ )*make ([a-z-]+)()")}
    assert {"demo", "test", "test-containers"} <= targets
    for target in sorted(targets):
        dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, f"make {target}: {dry.stderr}"


def test_every_benchmark_shown_exists_with_its_flags():
    uses = shown(r"bench/([a-z_]+\.py)([^`]*)")
    assert len(uses) >= 5
    helps: dict[str, str] = {}
    wrong = []
    for script, rest in sorted(uses):
        if script not in helps:
            run = subprocess.run(
                [sys.executable, f"bench/{script}", "--help"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert run.returncode == 0, f"bench/{script} --help: {run.stderr[-500:]}"
            helps[script] = run.stdout
        # Subcommands (`pipeline.py throughput --tokens …`) have their own help.
        sub = re.match(r"\s+([a-z]+)\b", rest)
        text = helps[script]
        if sub and f"{{{sub.group(1)}" in text.replace(",", "{"):
            key = f"{script} {sub.group(1)}"
            if key not in helps:
                helps[key] = subprocess.run(
                    [sys.executable, f"bench/{script}", sub.group(1), "--help"],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=60,
                ).stdout
            text = helps[key] + helps[script]
        wrong += [f"bench/{script} {flag}" for flag in flags(rest) - flags(text)]  # whole flags, not prefixes
    assert wrong == []
