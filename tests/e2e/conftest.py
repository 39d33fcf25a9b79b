"""Fixtures of the end-to-end tier: real chat-server and chat-client processes on loopback,
started and driven through the lab harness (labkit.local, labkit.terminal).

Every test gets its own server on an ephemeral port (``-sp 0``; ready once it answers a PING).
A shared one would be cheaper, but tests assert exact ``list`` output and some kill clients
with SIGKILL, whose names the server keeps for 5 s: one test's leftovers would show up in the
next one's list.

Every process goes through a :class:`labkit.procs.Reaper` whose finalizer stops it (SIGTERM,
then SIGKILL), whether the test passed or not.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from labkit import local, netns
from labkit.local import ChatServer
from labkit.netns import Netns
from labkit.procs import Reaper
from labkit.terminal import PipedClient, TtyClient


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """When a test here fails, its report shows the output of every process it started."""
    report = yield
    reaper = getattr(item, "funcargs", {}).get("reaper")
    if report.failed and isinstance(reaper, Reaper):
        for label, describe in reaper.diagnostics:
            report.sections.append((f"{label} ({report.when})", describe()))
    return report


@pytest.fixture(autouse=True)
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's programs keep their keys, pins and names in the test's own home, never in
    the user's (~/.local/share/p2p-chat): one run's pins or name bindings must not decide the
    next run's output."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("CHAT_HOME", str(home))
    return home


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    r = Reaper()
    try:
        yield r
    finally:
        r.stop_all()


@pytest.fixture
def ns(request: pytest.FixtureRequest, reaper: Reaper) -> Iterator[Netns]:
    """A fresh network namespace ``chat-<module>-<random>`` for a ``*_netns`` test: skipped
    (failed under CI=true) when none can be made; its finalizer stops the test's processes, then
    deletes it."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    stem = module.removeprefix("test_").removesuffix("_netns").replace("_", "-")[:10]
    yield from netns.for_test(reaper, f"chat-{stem}", f"tests/e2e/{module}.py")


@pytest.fixture
def server(reaper: Reaper, tmp_path: Path) -> ChatServer:
    """``chat-server -sp 0 --host 127.0.0.1``; ``.port``: the port it bound; ``.proc``."""
    return ChatServer.start(tmp_path / "server.log", reaper=reaper)


@pytest.fixture
def spawn_tty(reaper: Reaper, server: ChatServer) -> Callable[[str], TtyClient]:
    """Start a terminal client (without waiting for its sign-in)."""

    def spawn(name: str) -> TtyClient:
        return local.tty_client(reaper, name, server.port)

    return spawn


@pytest.fixture
def client(spawn_tty: Callable[[str], TtyClient]) -> Callable[[str], TtyClient]:
    """``client(NAME)``: a terminal client signed in (``signed in as NAME`` seen, prompt shown)."""

    def start(name: str) -> TtyClient:
        c = spawn_tty(name)
        c.wait_signed_in()
        return c

    return start


@pytest.fixture
def clients(spawn_tty: Callable[[str], TtyClient]) -> Callable[..., list[TtyClient]]:
    """``clients("alice", "bob", ...)``: start them all at once, then wait for each sign-in."""

    def start(*names: str) -> list[TtyClient]:
        started = [spawn_tty(n) for n in names]
        for c in started:
            c.wait_signed_in()
        return started

    return start


@pytest.fixture
def piped(reaper: Reaper, server: ChatServer, tmp_path: Path) -> Callable[[str], PipedClient]:
    """``piped(NAME)``: a client whose stdin is a pipe (not yet waited for: call wait_signed_in)."""

    def start(name: str) -> PipedClient:
        return local.piped_client(reaper, name, server.port, tmp_path)

    return start
