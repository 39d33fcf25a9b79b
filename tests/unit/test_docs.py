"""Docs that restate code are checked against it: the limits and timers tables of
docs/PROTOCOL.md against const.py, README's limits table against the same constants, and the
state tables of docs/PROTOCOL.md against the transition tables the cores run. Edit a table by
hand against the code, or change the code without the table, and one of these fails."""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat_protocol import const
from chat_protocol.client.directory import CLIENT_TRANSITIONS
from chat_protocol.const import DEFAULT_TIMINGS
from chat_protocol.secure.packets import TRANSPORT_OVERHEAD_BYTES
from chat_protocol.server.users import USER_TRANSITIONS

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def section(path: Path, heading: str) -> str:
    """The text under ``heading`` (a markdown heading line, exactly) up to the next heading of
    the same or a higher level."""
    text = path.read_text()
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n") + len(heading) + 1
    stop = re.compile(rf"^#{{1,{len(level)}}} ", re.M).search(text, start)
    return text[start : stop.start() if stop else len(text)]


def table_rows(text: str) -> Iterator[list[str]]:
    """The cells of each body row of the markdown tables in ``text``."""
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        yield cells


def body_rows(text: str) -> list[list[str]]:
    rows = list(table_rows(text))
    return rows[1:]  # the first row of the table is its header


def parse_value(text: str) -> float:
    """'8 MiB' -> 8388608, '1200' -> 1200, '0.03' -> 0.03."""
    m = re.fullmatch(r"([0-9][0-9_.]*)\s*(MiB|KiB)?", text.strip())
    assert m, f"not a value: {text!r}"
    number = float(m[1].replace("_", ""))
    return number * {"MiB": MiB, "KiB": 1024, None: 1}[m[2]]


# --- docs/PROTOCOL.md: limits and timers ---------------------------------------------------


def named_values(text: str) -> dict[str, str]:
    """Rows of the form | `A`, `B` | 1, 2 | ... | -> {A: '1', B: '2'}."""
    out: dict[str, str] = {}
    for cells in body_rows(text):
        names = re.findall(r"`(\w+)`", cells[0])
        values = [v.strip() for v in cells[1].split(",")]
        assert len(names) == len(values), f"names and values do not pair up: {cells[:2]}"
        out.update(zip(names, values, strict=True))
    return out


def test_protocol_limits_table_equals_const() -> None:
    rows = named_values(section(ROOT / "docs/PROTOCOL.md", "## Limits"))
    assert len(rows) >= 10
    for name, shown in rows.items():
        assert hasattr(const, name), f"PROTOCOL.md's limits name {name}, which const.py lacks"
        assert parse_value(shown) == getattr(const, name), f"{name}: the doc says {shown}"


def test_protocol_timers_table_equals_the_default_timings() -> None:
    text = section(ROOT / "docs/PROTOCOL.md", "## Timers (`const.py`, `Timings`; all in seconds)")
    rows = named_values(text)
    fields = {f.name for f in dataclasses.fields(DEFAULT_TIMINGS)}
    assert set(rows) <= fields, f"not timers: {set(rows) - fields}"
    missing = fields - set(rows) - {"sweep_interval_s"}  # internal: not a user-visible timer
    assert not missing, f"timers the table lacks: {missing}"
    for name, shown in rows.items():
        assert parse_value(shown) == getattr(DEFAULT_TIMINGS, name), f"{name}: doc says {shown}"


# --- README: the limits a user meets ------------------------------------------------------


def _readme_limits() -> dict[str, str]:
    rows = body_rows(section(ROOT / "README.md", "## Limits"))
    return {cells[0]: cells[1] for cells in rows}


STRETCH = const.MAX_HEARTBEAT_INTERVAL_S / DEFAULT_TIMINGS.heartbeat_interval_s
"""How far the server may stretch the heartbeat interval (and with it the client timeout)."""


def _s(x: float) -> str:
    return f"{x:g} s"


README_LIMITS = {
    "message size": (
        f"{const.MAX_MESSAGE_BYTES // MiB} MiB of UTF-8 (sent as "
        f"≤ {const.CHUNK_PAYLOAD_BYTES}-byte chunks, datagrams ≤ {const.MAX_DATAGRAM_BYTES} bytes "
        f"+ {TRANSPORT_OVERHEAD_BYTES} of encryption)"
    ),
    "unacknowledged chunks in flight per destination": f"{const.SEND_WINDOW_CHUNKS} ",
    "messages from one sender being reassembled or waiting": str(
        const.MAX_PARTIAL_MESSAGES_PER_PEER
    ),
    "bytes held for one sender before delivery": f"{const.MAX_BUFFERED_BYTES_PER_PEER // MiB} MiB",
    "peers a client tracks": f"{const.MAX_PEERS_TRACKED} ",
    "undeliverable message reported after": _s(DEFAULT_TIMINGS.delivery_timeout_s),
    "bytes a client holds for all senders together": f"{const.RECEIVE_BUDGET_BYTES // MiB} MiB",
    "a partial message with no new chunk is dropped after": _s(const.PARTIAL_TIMEOUT_S),
    "names one source IP may hold on a server": f"{const.MAX_USERS_PER_IP} ",
    "handshakes one source IP may start per second": f"{const.MAX_HANDSHAKES_PER_IP_PER_S:g} ",
    "handshakes a client answers from peers per second": (
        f"{const.PEER_HANDSHAKES_PER_S_UNDER_LOAD:g} in all and "
        f"{const.PEER_HANDSHAKES_PER_IP_PER_S:g} per source IP (beyond: a cookie round trip "
        f"first); {const.MAX_HALF_OPEN_PEER_SESSIONS} half-open at most"
    ),
    "dead client removed after": (
        f"{_s(DEFAULT_TIMINGS.client_timeout_s)}; at most "
        f"{_s(DEFAULT_TIMINGS.client_timeout_s * STRETCH)}"
    ),
    "dead server noticed after": _s(DEFAULT_TIMINGS.server_timeout_s),
}


def test_readme_limits_table_rows_are_the_checked_ones() -> None:
    assert set(_readme_limits()) == set(README_LIMITS)


@pytest.mark.parametrize("row", sorted(README_LIMITS))
def test_readme_limit_shows_the_constant(row: str) -> None:
    shown = _readme_limits()[row]
    assert shown.startswith(README_LIMITS[row]), f"README's {row!r}: {shown!r}"


# --- docs/PROTOCOL.md: state tables ---------------------------------------------------------


def doc_transitions(text: str) -> set[tuple[str, str, str]]:
    """| state(s) | trigger(s) | next | on | -> every (state, trigger, next) it names."""
    out = set()
    for cells in body_rows(text):
        for state in cells[0].split(","):
            for trigger in cells[1].split(","):
                out.add((state.strip(), trigger.strip(), cells[2].strip()))
    return out


def test_client_state_table_in_protocol_md_is_the_code() -> None:
    text = section(ROOT / "docs/PROTOCOL.md", "## State machines")
    client = text[text.index("Client (") : text.index("Server's view")]
    code = {
        (s.value, t.name, n.value)
        for s, moves in CLIENT_TRANSITIONS.items()
        for t, n in moves.items()
    }
    assert doc_transitions(client) == code


def test_server_state_table_in_protocol_md_is_the_code() -> None:
    text = section(ROOT / "docs/PROTOCOL.md", "## State machines")
    server = text[text.index("Server's view") :]
    code = {
        (s.value, t.name, n.value)
        for s, moves in USER_TRANSITIONS.items()
        for t, n in moves.items()
    }
    assert doc_transitions(server) == code


def test_the_errors_module_names_only_events_and_errors_that_exist() -> None:
    from chat_protocol import errors, events

    # The source's docstring: a compiled module (mypyc) keeps none.
    source = (ROOT / "services/protocol/chat_protocol/errors.py").read_text()
    docstring = ast.get_docstring(ast.parse(source)) or ""
    named = re.findall(r"``([A-Z][A-Za-z]+)``|:class:`([A-Z][A-Za-z]+)`", docstring)
    names = {a or b for a, b in named}
    assert names, "the errors module's docstring names no event or error"
    unknown = {n for n in names if not hasattr(events, n) and not hasattr(errors, n)}
    assert not unknown, f"errors.py's docstring names what does not exist: {unknown}"


TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


@pytest.mark.parametrize(
    "doc", ["README.md", "docs/SECURITY.md", "docs/PROTOCOL.md", "docs/CLI.md"]
)
def test_every_test_a_doc_names_exists(doc: str) -> None:
    for path, name in TEST_REF.findall((ROOT / doc).read_text()):
        source = ROOT / path
        assert source.is_file(), f"{doc} names {path}, which does not exist"
        assert re.search(rf"^(async )?def {name}\(", source.read_text(), re.M), (
            f"{doc} names {path}::{name}, which does not exist"
        )


def test_the_threat_model_points_every_attacker_at_tests() -> None:
    rows = body_rows(section(ROOT / "docs/SECURITY.md", "## Threat model"))
    attackers = {re.sub(r"\*\*(.*?)\*\*.*", r"\1", cells[0]) for cells in rows}
    assert {"Passive observer", "Active network", "Signed-in user"} <= attackers
    assert "Malicious directory server" in attackers
    for cells in rows:
        assert "tests/" in cells[3], f"no test for {cells[0]}"


ARCHITECTURE = ROOT / "docs/ARCHITECTURE.md"
CORE = ROOT / "services/protocol/chat_protocol"
MODULE_REF = re.compile(r"`((?:client|server|secure|transfer|wire)/\w+\.py)`")


def test_every_core_module_the_architecture_cites_exists() -> None:
    cited = set(MODULE_REF.findall(ARCHITECTURE.read_text()))
    assert cited, "docs/ARCHITECTURE.md cites no module of the core"
    missing = sorted(c for c in cited if not (CORE / c).is_file())
    assert not missing, f"docs/ARCHITECTURE.md cites modules that do not exist: {missing}"


@pytest.mark.parametrize("role", ["client", "server"])
def test_the_architecture_picture_names_every_module_of_the_roles(role: str) -> None:
    """The layer picture lists each module of client/ and server/ by name."""
    doc = ARCHITECTURE.read_text()
    picture = doc.split("```")[1]
    named = set(re.findall(r"\w+", picture))
    modules = {p.stem for p in (CORE / role).glob("*.py")} - {"__init__"}
    assert modules, f"no modules found under {CORE / role}"
    assert sorted(modules - named) == [], f"docs/ARCHITECTURE.md's picture omits {role}/ modules"


# --- the client's commands: README.md and docs/CLI.md against chat_client.commands.TABLE ----


def test_readme_commands_table_is_the_commands_table() -> None:
    from chat_client.commands import TABLE

    text = section(ROOT / "README.md", "## Using the client")
    start = text.index("| command | alias |")
    table = text[start : text.index("\n\n", start)]
    rows = body_rows(table)
    shown = [(re.findall(r"`([^`]+)`", r[0]), re.findall(r"`([^`]+)`", r[1])) for r in rows]
    expected = [([s.usage], [f"{a} {s.args}".rstrip() for a in s.aliases]) for s in TABLE]
    assert shown == expected


def test_cli_md_names_every_command_and_alias() -> None:
    from chat_client.commands import TABLE

    text = section(ROOT / "docs/CLI.md", "## chat-client")
    line = text[text.index("- Commands (case-insensitive") :]
    line = line[: line.index("\n- ")]
    for s in TABLE:
        words = [f"`{s.usage}`", *(f"`{a} {s.args}`".replace(" `", "`") for a in s.aliases)]
        entry = words[0] + (f" (alias {', '.join(words[1:])})" if s.aliases else "")
        assert " ".join(entry.split()) in " ".join(line.split()), entry
