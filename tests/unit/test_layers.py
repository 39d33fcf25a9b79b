"""The import graph of the product keeps its layers: read from the sources (ast), not run.

Three rules, each a table below:

* the product does not import the checker, the lab or the benchmarks (:data:`PRODUCT`,
  :data:`NOT_PRODUCT`);
* no module imports one of a higher layer, and units of one layer do not import each other
  (:data:`LAYERS`: lowest first; a unit is a package or a set of modules, and a module belongs to
  the unit with the longest prefix that names it);
* there is no import cycle.

Each check is a function of a graph; the last tests feed it graphs that break the rule, so a
check that cannot fail would fail here.
"""

from __future__ import annotations

from importgraph import NOT_PRODUCT, SOURCES, Graph, import_graph

PRODUCT = sorted(SOURCES)
"""Packages that must not import :data:`NOT_PRODUCT` (the checker, the lab, the benchmarks and
the tests: tests/importgraph.py)."""

FOUNDATION = (
    "chat_protocol.const",
    "chat_protocol.errors",
    "chat_protocol.counters",
    "chat_protocol.machine",
    "chat_protocol.outcomes",
)

LAYERS: list[list[tuple[str, ...]]] = [
    [FOUNDATION],
    [("chat_history",)],  # the history format: imports nothing of the project
    [("chat_protocol.wire",)],
    [("chat_protocol.secure",), ("chat_protocol.transfer",)],
    [("chat_protocol.events",)],
    [("chat_protocol.client",), ("chat_protocol.server",)],
    [("chat_protocol",)],  # the package's face (__init__): compiled(), core_kind()
    [("chat_shell",)],
    [("chat_server",), ("chat_client",), ("chat_bots",)],
]
"""Lowest first. A unit may import its own modules and any unit of a lower layer, nothing else."""


def _unit(module: str) -> tuple[int, tuple[str, ...]] | None:
    """(layer, unit) of ``module``: the unit with the longest prefix naming it."""
    best: tuple[int, tuple[str, ...]] | None = None
    best_len = -1
    for layer, units in enumerate(LAYERS):
        for unit in units:
            for prefix in unit:
                if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                    best, best_len = (layer, unit), len(prefix)
    return best


def product_imports(graph: Graph) -> list[str]:
    return [
        f"{m} imports {t}"
        for m, targets in sorted(graph.items())
        if m.split(".")[0] in PRODUCT
        for t in sorted(targets)
        if t.split(".")[0] in NOT_PRODUCT
    ]


def upward_imports(graph: Graph) -> list[str]:
    bad = []
    for m, targets in sorted(graph.items()):
        mine = _unit(m)
        for t in sorted(targets):
            theirs = _unit(t)
            if mine is None or theirs is None or theirs[1] == mine[1]:
                continue
            if theirs[0] >= mine[0]:
                how = "up a layer" if theirs[0] > mine[0] else "across its layer"
                bad.append(f"{m} imports {t} ({how})")
    return bad


def cycles(graph: Graph) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


GRAPH = import_graph()


def test_the_graph_is_read() -> None:
    assert "chat_protocol.secure.session" in GRAPH["chat_protocol.secure.endpoint"]
    assert "chat_protocol.wire.codec" in GRAPH["chat_protocol"]  # (from chat_protocol.wire import)
    assert "chat_protocol.client.peerlinks" in GRAPH["chat_protocol.client.core"]
    assert len(GRAPH) > 40


def test_every_product_module_has_a_layer() -> None:
    assert [m for m in GRAPH if _unit(m) is None] == []


def test_the_product_does_not_import_the_checker_the_lab_or_the_benchmarks() -> None:
    assert product_imports(GRAPH) == []


def test_no_import_runs_up_a_layer_or_across_it() -> None:
    assert upward_imports(GRAPH) == []


def test_there_is_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


# -- the checks catch what they are for ----------------------------------------------------------


def test_a_product_import_of_the_checker_is_caught() -> None:
    graph = {"chat_shell.aio": {"chat_check.history"}, "chat_check.cli": {"chat_protocol"}}
    assert product_imports(graph) == ["chat_shell.aio imports chat_check.history"]


def test_an_import_up_or_across_a_layer_is_caught() -> None:
    graph = {
        "chat_protocol.wire.codec": {"chat_protocol.secure.packets", "chat_protocol.const"},
        "chat_protocol.secure.session": {"chat_protocol.transfer.rangeset"},
        "chat_protocol.secure.endpoint": {"chat_protocol.secure.session"},
    }
    assert upward_imports(graph) == [
        "chat_protocol.secure.session imports chat_protocol.transfer.rangeset (across its layer)",
        "chat_protocol.wire.codec imports chat_protocol.secure.packets (up a layer)",
    ]


def test_a_cycle_is_caught() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
