"""The product does not import the test oracle or the lab (tests/unit/test_layers.py checks that
for every product module: none imports chat_check, labkit, bench or anything of tests/). The
history format the client shares with the checker is a package of its own, chat_history, which
imports nothing of the project at all.

Read from the sources by the one import walker (tests/importgraph.py): every ``import`` and
``from ... import``, at any depth, including those under ``if TYPE_CHECKING``, so a lazy import
inside a function counts too.
"""

from __future__ import annotations

from importgraph import NOT_PRODUCT, ROOT, SOURCES, import_graph, imports_in, top_level

FIRST_PARTY = frozenset({*SOURCES, *NOT_PRODUCT})
GRAPH = import_graph()


def uses(package: str) -> set[str]:
    """The first-party top-level packages that the modules of ``package`` import."""
    found: set[str] = set()
    for module, targets in GRAPH.items():
        if module.split(".")[0] == package:
            found |= top_level(targets)
    return found & FIRST_PARTY


def test_the_history_format_stands_alone() -> None:
    """chat_history is shared by the client and the checker: it depends on neither."""
    assert uses("chat_history") <= {"chat_history"}


def test_the_client_and_the_checker_share_the_history_package() -> None:
    assert "chat_history" in uses("chat_client")
    checker = import_graph({"chat_check": ROOT / "services/check/chat_check"})
    assert "chat_history" in top_level(set().union(*checker.values()))


def test_the_scan_sees_lazy_and_guarded_imports() -> None:
    """The scan is not blind to the forms a forbidden import could take."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from labkit.util import in_ci\n"
        "def f():\n    import chat_check.checker\n    from bench import run\n"
        "from . import sibling\n"
    )
    found = top_level(imports_in(source, "chat_client.app"))
    assert found & NOT_PRODUCT == {"labkit", "chat_check", "bench"}
    assert "chat_client" in found  # the relative import, resolved
