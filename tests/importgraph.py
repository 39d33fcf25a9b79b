"""The import graph of the project, read from the sources (ast), not run: every ``import`` and
``from ... import``, at any depth (inside functions, under ``if TYPE_CHECKING``), relative ones
resolved. One walker, for tests/unit/test_layers.py (the layers and cycles of the product) and
tests/unit/test_product_imports.py (what the product may not import).
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "chat_protocol": ROOT / "services/protocol/chat_protocol",
    "chat_shell": ROOT / "services/shell/chat_shell",
    "chat_server": ROOT / "services/server/chat_server",
    "chat_client": ROOT / "services/client/chat_client",
    "chat_history": ROOT / "services/history/chat_history",
    "chat_bots": ROOT / "services/bots/chat_bots",
}
"""The product's packages (what the images ship and users run) and where their sources are."""

NOT_PRODUCT = frozenset(
    {
        "chat_check",
        "labkit",
        "bench",
        "tests",
        "netsim",
        "natsim",
        "budget",
        "conftest",
        "importgraph",
    }
)
"""What the product must not import: the checker, the lab, the benchmarks and the tests."""

Graph = dict[str, set[str]]


def module_name(package: str, root: Path, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(
    source: str, name: str, *, is_package: bool = False, known: Collection[str] = ()
) -> set[str]:
    """The modules that ``source`` (the module ``name``) imports. ``from a import b`` counts
    as ``a.b`` when that is a module in ``known``, else as ``a``."""
    edges: set[str] = set()
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            edges.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                up = here[: len(here) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for a in node.names:
                sub = f"{base}.{a.name}"
                edges.add(sub if sub in known else base)
    return edges


def import_graph(sources: dict[str, Path] = SOURCES) -> Graph:
    """Module -> the modules (of any package) it imports, anywhere in its source."""
    files = {
        module_name(pkg, root, path): path
        for pkg, root in sources.items()
        for path in sorted(root.rglob("*.py"))
    }
    graph: Graph = {}
    for name, path in files.items():
        source = path.read_text(encoding="utf-8")
        edges = imports_in(source, name, is_package=path.name == "__init__.py", known=files)
        graph[name] = edges - {name}
    return graph


def top_level(modules: Collection[str]) -> set[str]:
    """The top-level packages of ``modules``."""
    return {m.split(".")[0] for m in modules}
