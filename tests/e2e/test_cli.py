"""Command-line mistakes: one clear line on stderr and the documented exit status."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.local import ChatServer as Server
from labkit.procs import Reaper, program

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_S = 10


def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Console script ``name`` (the installed one, see labkit.procs.program) with ``args``."""
    return subprocess.run(
        [program(name), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def error_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr without argparse's usage lines (the first, and its indented continuations)."""
    return [
        ln
        for ln in r.stderr.splitlines()
        if ln.strip() and not ln.startswith("usage:") and not ln.startswith(" ")
    ]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_server_port_in_use(busy_port: int) -> None:
    r = run("chat-server", "-sp", str(busy_port), "--host", "127.0.0.1")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        f"chat-server: error: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    ]


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ("70000", "chat-server: error: argument -sp/--port: port out of range 0-65535: 70000"),
        ("-1", "chat-server: error: argument -sp/--port: port out of range 0-65535: -1"),
        ("abc", "chat-server: error: argument -sp/--port: not a port number: 'abc'"),
    ],
)
def test_server_bad_port_is_a_usage_error(port: str, message: str) -> None:
    r = run("chat-server", f"-sp={port}")
    assert r.returncode == 2
    assert error_lines(r) == [message]


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("192.0.2.1", "Cannot assign requested address"),  # TEST-NET-1: not an address of ours
        ("no.such.host.invalid", ""),  # the resolver's wording varies
    ],
    ids=["not-local", "unresolvable"],
)
def test_server_bad_host(host: str, reason: str) -> None:
    r = run("chat-server", "-sp", "0", "--host", host)
    assert r.returncode == 1
    [line] = r.stderr.splitlines()
    assert line.startswith(f"chat-server: error: cannot listen on {host}:0: "), line
    assert line.endswith(reason), line


@pytest.mark.guard("name-binding")
def test_a_name_is_its_first_keys_until_the_operator_releases_it(
    reaper: Reaper, tmp_path: Path
) -> None:
    """Issue 19, point 2, with the real programs: the binding is on disk in the server's home,
    another home's 'alice' is refused (exit 3, one line), and ``names release`` frees the name
    while the server runs."""
    home = tmp_path / "server"
    server = Server.start(tmp_path / "server.log", reaper=reaper, extra_args=["--home", str(home)])
    port = str(server.port)

    def alice(client_home: str) -> subprocess.CompletedProcess[str]:
        return run("chat-client", "-u", "alice", "-sp", port, "--home", str(tmp_path / client_home))

    first = alice("first")
    assert first.returncode == 0, first.stderr
    squatter = alice("second")
    assert squatter.returncode == 3
    assert error_lines(squatter)[-1].startswith(
        "error: the name 'alice' belongs to another key; pick another name"
    ), squatter.stderr
    listed = run("chat-server", "names", "list", "--home", str(home))
    assert listed.returncode == 0 and listed.stdout.startswith("alice  "), listed
    released = run("chat-server", "names", "release", "alice", "--home", str(home))
    assert released.returncode == 0, released.stderr
    assert released.stdout.startswith("released 'alice' (it belonged to ")
    again = alice("second")
    assert again.returncode == 0, again.stderr
    assert alice("first").returncode == 3  # now the second key's


def test_server_probe_answers_0_for_a_live_server_and_1_for_none(
    server: Server, busy_port: int
) -> None:
    ok = run("chat-server", "--probe", "-sp", str(server.port))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"ok: server at 127.0.0.1:{server.port} answers\n"  # (no user count)
    silent = run("chat-server", "--probe", "-sp", str(busy_port))
    assert silent.returncode == 1
    assert silent.stderr.splitlines() == [
        f"chat-server: probe: no answer from 127.0.0.1:{busy_port}"
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["-u", "bad name"],
            "chat-client: error: argument -u/--user: invalid user name 'bad name': use 1-32 "
            "characters: ASCII letters, digits, '_', '.', '-', starting with a letter or digit",
        ),
        (["-u", "x", "-sp", "0"], "chat-client: error: argument -sp/--port: port out of range"),
        ([], "chat-client: error: the following arguments are required: -u/--user"),
    ],
    ids=["bad-name", "bad-port", "no-user"],
)
def test_client_usage_errors_exit_2(argv: list[str], message: str) -> None:
    r = run("chat-client", *argv)
    assert r.returncode == 2
    [line] = error_lines(r)
    assert line.startswith(message), line
