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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import psutil

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


def _descendants(pid: int) -> list[psutil.Process]:
    """Every process below ``pid`` now (children, theirs, ...)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _running(q: psutil.Process) -> bool:
    """Not ended (a zombie has ended: only its parent's reaping is left)."""
    try:
        return q.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_alive(pgid: int) -> bool:
    """Is any process left in process group ``pgid``?"""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def terminate(procs: Iterable[Proc], grace_s: float = 3.0) -> None:
    """Stop every process of ``procs`` and everything under it: SIGTERM (so a client signs
    out), SIGKILL what is left after ``grace_s``, reap all. The one way the lab, the tests and
    the benchmarks stop a process tree.

    The tree is every descendant found now (psutil) and, for a process started as a group
    leader (``start_new_session=True``), its whole process group (which keeps the grandchildren
    whose parent is gone)."""
    procs = list(procs)
    running = [p for p in procs if alive(p)]
    # A process started as a group leader (start_new_session) has a group of its pid, which
    # outlives it while any of its tree does; no other process has one.
    groups = [p.pid for p in procs if _group_alive(p.pid)]
    below = [q for p in running for q in _descendants(p.pid)]

    def signal_all(sig: signal.Signals) -> None:
        for p in running:
            if alive(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, sig)
        for q in below:
            with contextlib.suppress(psutil.Error):
                q.send_signal(sig)
        for g in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, sig)

    def left() -> bool:
        # alive() reaps our own children, so a group holding only their zombies empties
        return (
            any([alive(p) for p in running])
            or any(_running(q) for q in below)
            or any(_group_alive(g) for g in groups)
        )

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while left() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if left():
        signal_all(signal.SIGKILL)
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
    """Local ports of the UDP sockets process ``pid`` holds (in this network namespace)."""
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="udp") if c.laddr}


@dataclass(frozen=True)
class ProcStat:
    cpu_s: float
    """User + system CPU seconds, all threads."""
    rss_kb: int
    hwm_kb: int
    """Peak resident memory (VmHWM): the kernel keeps it in /proc/PID/status, psutil does not
    report it on Linux, so that one line is read from there."""


def proc_stat(pid: int) -> ProcStat:
    """CPU time and resident memory (now and peak) of process ``pid``."""
    proc = psutil.Process(pid)
    with proc.oneshot():
        cpu = proc.cpu_times()
        rss = proc.memory_info().rss
    hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return ProcStat(cpu_s=cpu.user + cpu.system, rss_kb=rss // 1024, hwm_kb=hwm)
