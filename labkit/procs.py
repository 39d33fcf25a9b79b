"""Processes: who owns them, how they are stopped, what they exited with.

A :class:`Reaper` owns every process a test starts (a plain ``subprocess.Popen`` or a pexpect
child) and :meth:`Reaper.stop_all` ends those still running: SIGTERM, so that a client signs
out, then SIGKILL after a grace period. :func:`stop` does the same for one process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from labkit.util import tail, wait_until

if TYPE_CHECKING:
    import pexpect

Proc: TypeAlias = "subprocess.Popen[bytes] | subprocess.Popen[str] | pexpect.spawn"

POLL_S = 0.02


def program(name: str) -> str:
    """The path of console script ``name`` (``chat-server``, ``chat-client``): the one beside
    the running interpreter if there is one (a virtual environment that is not activated),
    else whatever ``PATH`` finds."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name) or name


def alive(p: Proc) -> bool:
    if isinstance(p, subprocess.Popen):
        return p.poll() is None
    return bool(p.isalive())


def status(p: Proc) -> int | None:
    """The exit status, -SIGNAL if a signal ended it, None while it runs."""
    if isinstance(p, subprocess.Popen):
        return p.returncode
    if p.signalstatus is not None:
        return -int(p.signalstatus)
    return None if p.exitstatus is None else int(p.exitstatus)


def exit_code_of(p: Proc, timeout: float, who: str) -> int:
    """Wait (bounded) for ``p`` to end; its exit status, or -SIGNAL if a signal ended it."""
    wait_until(lambda: not alive(p), timeout, f"{who} to exit")
    if not isinstance(p, subprocess.Popen):
        p.close()  # isalive() has reaped it; close() only releases the pty
    code = status(p)
    assert code is not None
    return code


def _close(p: Proc, grace_s: float) -> None:
    """Reap ``p`` and release its pty or pipes."""
    if isinstance(p, subprocess.Popen):
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=grace_s)
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
    else:
        with contextlib.suppress(Exception):
            p.close(force=True)


def terminate(procs: Iterable[Proc], grace_s: float = 3.0) -> None:
    """SIGTERM every process still running, SIGKILL those left after ``grace_s``, reap all."""
    procs = list(procs)
    running = [p for p in procs if alive(p)]
    for p in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(alive(p) for p in running) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    for p in running:
        if alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
    for p in procs:
        _close(p, grace_s)


def stop(p: Proc | None, grace_s: float = 3.0) -> None:
    """:func:`terminate` for one process (None: nothing to do)."""
    if p is not None:
        terminate([p], grace_s)


class Reaper:
    """Every process a test starts; :meth:`stop_all` ends those still running and reaps them."""

    def __init__(self, grace_s: float = 3.0) -> None:
        self.grace_s = grace_s
        self._procs: list[Proc] = []
        self.diagnostics: list[tuple[str, Callable[[], str]]] = []
        """(label, what to show) for each process: for the report of a failed test."""

    def track(self, proc: Proc, label: str, output: Callable[[], str]) -> None:
        self._procs.append(proc)

        def describe() -> str:
            state = "running" if alive(proc) else f"exit {status(proc)}"
            return f"[pid {proc.pid}, {state}]\n{tail(output(), 3000)}"

        self.diagnostics.append((label, describe))

    def stop_all(self) -> None:
        terminate(self._procs, self.grace_s)
        self._procs.clear()


def udp_ports_of(pid: int) -> set[int]:
    """Local ports of the UDP sockets process ``pid`` holds (from /proc, no psutil)."""
    inodes: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
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
