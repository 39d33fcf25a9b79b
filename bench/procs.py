"""Process plumbing of the benchmarks: CPU pinning, event-loop choice, children that print
JSON. Starting chat-server, stopping process trees, CPU and memory readings (psutil) and network
namespaces with loss come from the lab harness (labkit), shared with the test suites.

Every child started here is stopped in a ``finally`` (SIGTERM, then SIGKILL), and every network
namespace created here is deleted the same way, even when a measurement fails.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit import faults, local
from labkit.local import ChatServer
from labkit.netns import Netns
from labkit.netns import unavailable as netns_unavailable
from labkit.procs import ProcStat, proc_stat, stop, terminate
from labkit.util import wait_until

__all__ = ["ProcStat", "netns_unavailable", "proc_stat", "stop"]  # for bench.run, .liveness, .users

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
GRACE_S = 3.0
"""How long a child has after SIGTERM before SIGKILL."""


def _cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


_ALLOWED = _cpus()
NEAR: int | None = _ALLOWED[0] if len(_ALLOWED) >= 2 else None
"""The CPU of the measuring side (the sender, the load generator) when there are two or more."""
FAR: int | None = _ALLOWED[1] if len(_ALLOWED) >= 2 else None
"""The CPU of the answering side (servers, the receiving peer). Pinning the two sides to two
different CPUs makes every datagram cross CPUs, as between machines, in every run: left to the
scheduler, two ping-pong processes sometimes share a CPU (a direct hand-off, ~4x faster on this
kind of VM) and sometimes do not, and the baselines would flip between the two."""


LOAD_CPUS: tuple[int, ...] = tuple(c for c in _ALLOWED if c != FAR) if FAR is not None else ()
"""The CPUs a load process may use while it prepares (every allowed CPU but FAR): NEAR alone on
a 2-CPU machine."""


def pinned(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that keeps the child (and what it starts) on ``cpu``."""
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def pin_self(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def pin_self_any(cpus: tuple[int, ...]) -> None:
    """Let this process run on any of ``cpus`` (nothing changes if it is empty)."""
    if cpus:
        os.sched_setaffinity(0, set(cpus))


BENCH_HOME_ENV = "CHAT_BENCH_HOME"


def bench_home() -> str:
    """The key store (``CHAT_HOME``) of every chat program a benchmark run starts: a temporary
    directory made by the first process that asks, inherited by its children, deleted when that
    process exits. So the servers of one run share one key, the clients pin it for each port, and
    nothing of the user's own home is read or written."""
    home = os.environ.get(BENCH_HOME_ENV)
    if not home:
        home = tempfile.mkdtemp(prefix="chat-bench-home-")
        os.environ[BENCH_HOME_ENV] = home
        atexit.register(shutil.rmtree, home, True)
    return home


def loop_env(loop: str) -> dict[str, str]:
    """The environment for a child that must run on ``loop`` ('uvloop' or 'asyncio'), with the
    run's key store (:func:`bench_home`)."""
    home = bench_home()
    env = dict(os.environ)
    env["CHAT_HOME"] = home
    env.pop("CHAT_NO_UVLOOP", None)
    if loop == "asyncio":
        env["CHAT_NO_UVLOOP"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    # Children run `python -m bench.X`: make the package importable from any working directory.
    paths = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class LineReader:
    """Reads a child's text stream in a thread, so waiting for a line can time out."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stamped: list[tuple[float, str]] = []
        """Every line with the time.monotonic() it was read at."""
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: object) -> None:
        try:
            for line in stream:  # type: ignore[attr-defined]
                self.stamped.append((time.monotonic(), line.rstrip("\n")))
                self.lines.put(line.rstrip("\n"))
        except (OSError, ValueError):
            pass
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        seen: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line starting {prefix!r} within {timeout_s} s; got {seen}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"stream ended before a line starting {prefix!r}; got {seen}")
            if line.startswith(prefix):
                return line
            seen.append(line)


Server = ChatServer
"""A running chat-server (labkit.local.ChatServer): .proc, .host, .port, .loop, .target."""


@contextlib.contextmanager
def chat_server(
    loop: str = "uvloop", host: str = "127.0.0.1", cpu: int | None = None
) -> Iterator[ChatServer]:
    """The real chat-server (``python -m chat_server``) on a free port, on ``loop`` and
    ``cpu``, once it answers a PING; stopped on exit from the block."""
    with local.running(
        host=host, command=[PY, "-m", "chat_server"], env=loop_env(loop), preexec_fn=pinned(cpu)
    ) as server:
        yield server


_ECHO_RE = re.compile(r"echo listening on ([0-9.]+):(\d+) \((\w+)\)")


@dataclass
class Echo:
    """The echo-ceiling server (bench.echo_server) child."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    loop: str

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


@contextlib.contextmanager
def echo_server(
    loop: str = "uvloop", host: str = "127.0.0.1", cpu: int | None = None
) -> Iterator[Echo]:
    """The echo-ceiling server on ``loop``, once it has logged its port; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-echo-") as tmp:
        log = Path(tmp) / "echo.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [PY, "-m", "bench.echo_server", "--host", host],
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                env=loop_env(loop),
                preexec_fn=pinned(cpu),
            )
        try:

            def listening() -> re.Match[str] | None:
                m = _ECHO_RE.search(log.read_text(errors="replace"))
                if m is None and proc.poll() is not None:
                    raise RuntimeError(f"echo server exited with {proc.returncode}")
                return m

            m = wait_until(listening, 15, "the echo server to listen", interval=0.01)
            yield Echo(proc=proc, host=host, port=int(m.group(2)), loop=m.group(3))
        finally:
            stop(proc)


@contextlib.contextmanager
def child(
    args: Sequence[str], *, loop: str = "uvloop", cpu: int | None = None
) -> Iterator[subprocess.Popen[str]]:
    """A child with text pipes for stdin and stdout; stopped on exit from the block."""
    proc = subprocess.Popen(
        list(args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=loop_env(loop),
        preexec_fn=pinned(cpu),
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(OSError, ValueError):
            if proc.stdin is not None:
                proc.stdin.close()
        stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.contextmanager
def far_server(module: str, role: str, host: str) -> Iterator[int]:
    """The measuring side's set-up for a baseline: this process on ``NEAR``, the server
    ``python -m module role --host host`` (it prints ``ready PORT`` once it listens) on ``FAR``;
    yields that port, stops the server on exit from the block."""
    pin_self(NEAR)
    with child([PY, "-m", module, role, "--host", host], cpu=FAR) as srv:
        yield int(LineReader(srv.stdout).wait_for("ready", 10).split()[1])


def run_json(
    cmd: Sequence[str],
    *,
    timeout_s: float,
    loop: str = "uvloop",
    cpu: int | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run a benchmark child to completion and return the JSON object it printed last.

    The child gets a process group of its own; on a timeout or any error the whole group (the
    child and whatever it started) is killed, so nothing outlives the benchmark. ``env``
    replaces :func:`loop_env` (bench.against runs an earlier commit's code with it).
    """
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=loop_env(loop) if env is None else env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=pinned(cpu),
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:  # its group too: children left behind by a child that exited
        terminate([proc], grace_s=GRACE_S)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])} ... exited with {proc.returncode}: {err.strip()[-1500:]}"
        )
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"{' '.join(cmd[:4])} ... printed no result: {out[-500:]} {err[-1500:]}")


# --- network namespaces with loss ---------------------------------------------------------------


@contextlib.contextmanager
def lossy_netns(loss: float) -> Iterator[list[str]]:
    """A fresh network namespace (loopback only) dropping ``loss`` of incoming UDP datagrams.

    Yields the command prefix that runs a program inside it. The namespace is deleted on exit.
    """
    with Netns.create("chatbench") as ns:
        if loss > 0:
            faults.loss(ns.place, loss)
        yield ns.prefix
