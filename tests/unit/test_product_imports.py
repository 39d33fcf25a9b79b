"""The product does not import the test oracle or the lab: chat_client, chat_server, chat_shell and
chat_protocol (what the images ship and users run) import neither chat_check (the history
checker), nor labkit, nor bench, nor anything of tests/. The history format they share with the
checker is a package of its own, chat_history, which imports nothing of the project at all.

Read from the sources (every ``import`` and ``from ... import``, at any depth, including those
under ``if TYPE_CHECKING``), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = {
    "chat_protocol": ROOT / "services/protocol/chat_protocol",
    "chat_shell": ROOT / "services/shell/chat_shell",
    "chat_server": ROOT / "services/server/chat_server",
    "chat_client": ROOT / "services/client/chat_client",
    "chat_history": ROOT / "services/history/chat_history",
    "chat_bots": ROOT / "services/bots/chat_bots",
}
FORBIDDEN = frozenset({"chat_check", "labkit", "bench", "tests", "netsim", "conftest"})
FIRST_PARTY = frozenset({*PRODUCT, *FORBIDDEN})


def top_level_imports(source: str) -> set[str]:
    """The top-level package of every absolute import in ``source``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def imports_of(package: str) -> dict[str, set[str]]:
    """For each module file of ``package``: the first-party top-level packages it imports."""
    out: dict[str, set[str]] = {}
    for path in sorted(PRODUCT[package].rglob("*.py")):
        names = top_level_imports(path.read_text(encoding="utf-8")) & FIRST_PARTY
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize("package", sorted(PRODUCT))
def test_the_product_imports_no_checker_lab_or_benchmark(package: str) -> None:
    modules = imports_of(package)
    assert modules, f"no modules found for {package} under {PRODUCT[package]}"
    bad = {path: sorted(names & FORBIDDEN) for path, names in modules.items() if names & FORBIDDEN}
    assert not bad, f"{package} imports what the product must not: {bad}"


def test_the_history_format_stands_alone() -> None:
    """chat_history is shared by the client and the checker: it depends on neither."""
    uses = set().union(*imports_of("chat_history").values())
    assert uses <= {"chat_history"}, sorted(uses)


def test_the_client_and_the_checker_share_the_history_package() -> None:
    client = set().union(*imports_of("chat_client").values())
    assert "chat_history" in client
    checker = {
        name
        for path in (ROOT / "services/check/chat_check").rglob("*.py")
        for name in top_level_imports(path.read_text(encoding="utf-8"))
    }
    assert "chat_history" in checker


def test_the_scan_sees_lazy_and_guarded_imports() -> None:
    """The scan is not blind to the forms a forbidden import could take."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from labkit.util import in_ci\n"
        "def f():\n    import chat_check.checker\n    from bench import run\n"
        "from . import sibling\n"
    )
    assert top_level_imports(source) & FORBIDDEN == {"labkit", "chat_check", "bench"}
