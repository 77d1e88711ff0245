"""Contexts share only their published events: a module under `services/<a>/` may import
`services.<b>.events` of another context, and nothing else of it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
CONTEXTS = sorted(p.name for p in SERVICES.iterdir() if (p / "__init__.py").exists())


def foreign_imports(source: str, own: str) -> list[str]:
    """What a module of context `own` imports of other contexts besides their `events`
    modules, as `<line>: <module>`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from services.x import events` names the module in the alias
            targets = [f"{node.module}.{alias.name}" if node.module.count(".") == 1
                       else node.module for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] != "services" or len(parts) < 2 or parts[1] == own:
                continue
            if len(parts) < 3 or parts[2] != "events":
                found.append(f"{node.lineno}: {target}")
    return found


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_context_imports_only_the_events_of_another(context):
    modules = sorted((SERVICES / context).rglob("*.py"))
    assert modules
    assert [f"{m.relative_to(SERVICES.parent)}:{line}" for m in modules
            for line in foreign_imports(m.read_text(), context)] == []


@pytest.mark.parametrize("context", ["registration", "guidance", "supervision", "notification"])
def test_each_publishing_context_has_an_events_module(context):
    assert (SERVICES / context / "events.py").is_file()


def test_the_walk_finds_every_import_of_another_context_but_its_events():
    # the test above would pass vacuously if the walk missed imports
    source = ("from services.guidance.domain import Stage\n"
              "from services.guidance import domain\n"
              "import services.registration.registrar\n"
              "from services.guidance import events\n"
              "from services.guidance.events import Stage\n"
              "import services.supervision.events\n"
              "from services.audit import history\n"
              "def later():\n"
              "    from services.supervision.api import build_router\n")
    assert foreign_imports(source, own="audit") == [
        "1: services.guidance.domain", "2: services.guidance.domain",
        "3: services.registration.registrar", "9: services.supervision.api"]
