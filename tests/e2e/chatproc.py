"""Drive real chat-server / chat-client processes for the end-to-end tier.

- :class:`Reaper` owns every process a test starts and stops them all in a finalizer (SIGTERM so a
  client signs out, then SIGKILL after a grace period), even when the test failed half-way.
- :class:`Server` runs ``chat-server -sp 0`` with stderr in a log file, parses the port it bound
  from ``chat-server listening on HOST:PORT (loop)``, and reads its sign-in log lines.
- :class:`TtyClient` runs ``chat-client`` under pexpect on a pseudo-terminal (the prompt_toolkit
  path). Its output goes through :class:`ScreenFilter`, so tests match plain text.
- :class:`PipedClient` runs ``chat-client`` with stdin a pipe and stdout/stderr in files (the
  non-terminal path; large messages never go through a pty).

Nothing here sleeps to synchronise: every wait is a condition with a deadline (pexpect ``expect``
with a timeout, or :func:`wait_until` polling a file or a process). What the container suite
(tests/integration/chatlab.py) shares with this one is in tests/testkit.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pexpect
from testkit import ESCAPE_RE, PipedProcess, expect_eof, expect_match, tail, wait_until

START_TIMEOUT_S = 10.0
"""Start-up of a Python process plus sign-in; generous for a loaded CI machine."""
STOP_GRACE_S = 3.0
"""How long the finalizer lets a process exit on SIGTERM before it sends SIGKILL."""
POLL_S = 0.02
TAIL_CHARS = 1500
"""How much of a process's output a failure message quotes."""

TTY_ENV = {
    # prompt_toolkit asks the terminal for the cursor position (CPR) and waits for an answer that a
    # pexpect pty never gives; this turns the request off.
    "PROMPT_TOOLKIT_NO_CPR": "1",
    # A real terminal type: with TERM=dumb prompt_toolkit falls back to a line-mode prompt that does
    # not redraw the prompt and the half-typed line around printed messages, which is the very
    # behaviour the TTY tests check. The escape sequences are removed by ScreenFilter.
    "TERM": "xterm",
    "COLUMNS": "200",
    "LINES": "50",
}


# --- processes ---------------------------------------------------------------------------------


class Reaper:
    """Every process a test starts; :meth:`stop_all` ends those still running and reaps them."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes] | pexpect.spawn] = []
        self.diagnostics: list[tuple[str, Callable[[], str]]] = []
        """(label, what to show) for each process: shown in the report when a test fails."""

    def track(
        self, proc: subprocess.Popen[bytes] | pexpect.spawn, label: str, output: Callable[[], str]
    ) -> None:
        self._procs.append(proc)

        def describe() -> str:
            status = "running" if _alive(proc) else f"exit {_status(proc)}"
            return f"[pid {proc.pid}, {status}]\n{tail(output(), 3000)}"

        self.diagnostics.append((label, describe))

    def stop_all(self) -> None:
        alive = [p for p in self._procs if _alive(p)]
        for p in alive:
            _signal(p, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while any(_alive(p) for p in alive) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        for p in alive:
            if _alive(p):
                _signal(p, signal.SIGKILL)
        for p in self._procs:
            if isinstance(p, pexpect.spawn):
                with contextlib.suppress(Exception):
                    p.close(force=True)
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=STOP_GRACE_S)
                for stream in (p.stdin, p.stdout, p.stderr):
                    if stream is not None:
                        with contextlib.suppress(OSError):
                            stream.close()
        self._procs.clear()


def _alive(p: subprocess.Popen[bytes] | pexpect.spawn) -> bool:
    if isinstance(p, pexpect.spawn):
        return bool(p.isalive())
    return p.poll() is None


def _status(p: subprocess.Popen[bytes] | pexpect.spawn) -> int | None:
    if isinstance(p, pexpect.spawn):
        if p.signalstatus is not None:
            return -int(p.signalstatus)
        return None if p.exitstatus is None else int(p.exitstatus)
    return p.returncode


def _signal(p: subprocess.Popen[bytes] | pexpect.spawn, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(p.pid, sig)


def exit_code_of(p: subprocess.Popen[bytes] | pexpect.spawn, timeout: float, who: str) -> int:
    """Wait (bounded) for ``p`` to end; its exit status, or -SIGNAL if a signal ended it."""
    wait_until(lambda: not _alive(p), timeout, f"{who} to exit")
    if isinstance(p, pexpect.spawn):
        # isalive() has reaped it; close() only releases the pty.
        p.close()
        return -p.signalstatus if p.signalstatus is not None else int(p.exitstatus)
    assert p.returncode is not None
    return p.returncode


def udp_ports_of(pid: int) -> set[int]:
    """Local ports of the UDP sockets process ``pid`` holds (from /proc, no psutil)."""
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports: set[int] = set()
    for table in ("udp", "udp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9 and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


# --- server ------------------------------------------------------------------------------------

LISTENING_RE = re.compile(r"chat-server listening on (?P<host>\S+):(?P<port>\d+) \((?P<loop>\w+)\)")


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, host: str, port: int) -> None:
        self.proc = proc
        self.log_path = log_path
        self.host = host
        self.port = port

    @classmethod
    def start(
        cls,
        reaper: Reaper,
        log_path: Path,
        *,
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> Server:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*prefix, "chat-server", "-sp", "0", "--host", host, *extra_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        reaper.track(proc, "chat-server log", lambda: log_path.read_text(errors="replace"))

        def listening() -> re.Match[str] | None:
            m = LISTENING_RE.search(log_path.read_text(errors="replace"))
            if m is None and proc.poll() is not None:
                raise AssertionError(
                    f"chat-server exited with {proc.returncode} before listening:\n"
                    + log_path.read_text(errors="replace")
                )
            return m

        m = wait_until(listening, START_TIMEOUT_S, "chat-server to listen")
        assert m["host"] == host, m.group(0)
        port = int(m["port"])
        assert 0 < port < 65536, m.group(0)
        return cls(proc, log_path, host, port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        rx = re.compile(pattern)
        return wait_until(
            lambda: rx.search(self.log()),
            timeout,
            f"server log /{pattern}/",
            lambda: tail(self.log(), TAIL_CHARS),
        )

    def client_addr(self, name: str, timeout: float = 5.0) -> tuple[str, int]:
        """Where ``name`` signed in from, per the server log (``NAME signed in from IP:PORT``)."""
        m = self.wait_log(rf"\b{re.escape(name)} signed in from (\S+):(\d+)", timeout)
        return m.group(1), int(m.group(2))

    def wait_exit(self, timeout: float) -> int:
        return exit_code_of(self.proc, timeout, "chat-server")


# --- terminal client ---------------------------------------------------------------------------

_MAX_ESC_LEN = 64


class ScreenFilter:
    """Turns a terminal byte stream into plain text a regex can match.

    Escape sequences are removed, except "cursor forward" (``ESC [ n C``), which prompt_toolkit
    emits instead of spaces (the prompt ``+> `` is drawn as ``+>`` then "2 left, 3 right"); it
    becomes ``n`` spaces. A sequence cut in two by a read is held back until the rest arrives.
    """

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        self._held = ""
        cut = text.rfind("\x1b")
        if cut != -1 and len(text) - cut < _MAX_ESC_LEN and not ESCAPE_RE.match(text, cut):
            text, self._held = text[:cut], text[cut:]
        return ESCAPE_RE.sub(_replace_escape, text)


def _replace_escape(m: re.Match[str]) -> str:
    if m["final"] == "C" and m["params"] is not None and "?" not in m["params"]:
        return " " * int(m["params"] or "1")
    return ""


class _ScreenSpawn(pexpect.spawn):  # type: ignore[misc]
    """pexpect.spawn whose reads go through a :class:`ScreenFilter`, kept in a transcript."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.screen = ScreenFilter()
        self.transcript: list[str] = []
        super().__init__(*args, **kwargs)

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> str:
        text = self.screen.feed(super().read_nonblocking(size, timeout))
        self.transcript.append(text)
        return text


LIST_RE = r"online \((?P<total>\d+)\): (?P<names>[^\r\n]*)\r?\n"
PROMPT_RE = r"\+> "


class TtyClient:
    """``chat-client -u NAME -sp PORT`` on a pseudo-terminal."""

    def __init__(self, name: str, child: _ScreenSpawn) -> None:
        self.name = name
        self.child = child

    @classmethod
    def spawn(cls, reaper: Reaper, name: str, port: int, host: str = "127.0.0.1") -> TtyClient:
        child = _ScreenSpawn(
            "chat-client",
            ["-u", name, "-sip", host, "-sp", str(port)],
            encoding="utf-8",
            codec_errors="replace",
            env={**os.environ, **TTY_ENV},
            dimensions=(50, 200),
            timeout=5,
        )
        client = cls(name, child)
        reaper.track(child, f"chat-client {name} (terminal, filtered)", client.transcript)
        return client

    @property
    def pid(self) -> int:
        return int(self.child.pid)

    def transcript(self) -> str:
        return "".join(self.child.transcript)

    def _recent(self) -> str:
        return tail(self.transcript(), TAIL_CHARS)

    def expect(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """Wait for ``pattern`` in the output (after what earlier expects consumed)."""
        return expect_match(self.child, pattern, timeout, self.name, self._recent)

    def wait_signed_in(self, timeout: float = START_TIMEOUT_S) -> None:
        self.expect(rf"signed in as {re.escape(self.name)}; type 'help' for commands\r?\n", timeout)
        self.expect(PROMPT_RE, timeout)

    def type(self, text: str) -> None:
        """Keystrokes without Enter."""
        self.child.send(text)

    def enter(self, line: str) -> None:
        """Type ``line`` and press Enter."""
        self.child.send(line + "\r")

    def list_names(self, timeout: float = 5.0) -> list[str]:
        self.enter("list")
        m = self.expect(LIST_RE, timeout)
        names = m["names"].split(", ") if m["names"] else []
        assert int(m["total"]) == len(names), m.group(0)
        return names

    def wait_exit(self, timeout: float) -> int:
        """Wait for the output to end and the process to exit; its exit status."""
        expect_eof(self.child, timeout, self.name, self._recent)
        return exit_code_of(self.child, timeout, f"chat-client {self.name}")


# --- piped client ------------------------------------------------------------------------------


class PipedClient(PipedProcess):
    """``chat-client`` with stdin a pipe, stdout and stderr in files (no terminal, no prompt)."""

    tail_chars = TAIL_CHARS

    @classmethod
    def spawn(
        cls,
        reaper: Reaper,
        name: str,
        port: int,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
    ) -> PipedClient:
        out, err = workdir / f"{name}.out", workdir / f"{name}.err"
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen(
                [*prefix, "chat-client", "-u", name, "-sip", host, "-sp", str(port)],
                stdin=subprocess.PIPE,
                stdout=fo,
                stderr=fe,
            )
        client = cls(name, proc, out, err)
        reaper.track(proc, f"chat-client {name} (piped)", client.outputs)
        return client

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_stdout(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        rx = re.compile(pattern)
        return wait_until(
            lambda: rx.search(self.stdout()),
            timeout,
            f"{self.name} stdout /{pattern[:80]}/",
            self.outputs,
        )

    def wait_signed_in(self, timeout: float = START_TIMEOUT_S) -> None:
        self.wait_stdout(
            rf"signed in as {re.escape(self.name)}; type 'help' for commands\n", timeout
        )

    def wait_exit(self, timeout: float) -> int:
        try:
            return exit_code_of(self.proc, timeout, f"chat-client {self.name}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.outputs()}") from None
