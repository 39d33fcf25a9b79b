"""What the two process-driving test suites share: tests/e2e/chatproc.py (the chat programs as
processes on loopback) and tests/integration/chatlab.py (the same programs in containers).

- :func:`wait_until` polls a condition with a deadline (nothing in either suite sleeps to
  synchronise); :func:`tail` keeps the output quoted in a failure message short.
- :data:`ESCAPE_RE` matches terminal escape sequences; :func:`plain` removes them.
- :func:`expect_match` and :func:`expect_eof`: pexpect waits on a terminal client that fail with
  what it printed.
- :class:`PipedProcess` is the plumbing of a client run with stdin a pipe and stdout/stderr in
  files: ordered writes to stdin, and the two files read back. Each suite starts the process
  its own way and adds its own waits.
- :func:`in_ci` and :func:`unavailable`: a test whose environment is missing skips, or fails
  under CI, where it must run.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

import pytest

if TYPE_CHECKING:
    import pexpect

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    detail: Callable[[], str] = str,
    interval: float = 0.02,
) -> T:
    """Poll ``probe`` every ``interval`` s until it returns something truthy; fail after
    ``timeout`` s with ``what`` and ``detail()`` in the message."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = detail()
            raise AssertionError(
                f"timed out after {timeout:.1f} s waiting for {what}"
                + (f"\n{extra}" if extra else "")
            )
        time.sleep(interval)


def tail(text: str, n: int = 2000) -> str:
    """The last ``n`` characters of ``text`` (``...`` in front when cut)."""
    return text if len(text) <= n else "..." + text[-n:]


# CSI (ESC [ params intermediates final), OSC (ESC ] ... BEL/ST), character set selection
# (ESC ( B) and two-byte escapes.
ESCAPE_RE = re.compile(
    r"\x1b\[(?P<params>[0-9;?<=>]*)[ -/]*(?P<final>[@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[()*+][0-9A-Za-z]"
    r"|\x1b[@-Z\\-_=>]"
)


def plain(text: str) -> str:
    """A terminal transcript without escape sequences and carriage returns."""
    return ESCAPE_RE.sub("", text).replace("\r", "")


def expect_match(
    child: pexpect.spawn, pattern: str, timeout: float, who: str, output: Callable[[], str]
) -> re.Match[str]:
    """``child.expect(pattern)``; on a timeout or the end of the output, fail with ``who``,
    the pattern and ``output()`` (what the client printed)."""
    import pexpect

    try:
        child.expect(pattern, timeout=timeout)
    except (pexpect.TIMEOUT, pexpect.EOF) as exc:
        what = "timed out" if isinstance(exc, pexpect.TIMEOUT) else "output ended"
        raise AssertionError(
            f"{who}: {what} waiting {timeout} s for /{pattern}/; output so far:\n" + output()
        ) from None
    match = child.match
    assert isinstance(match, re.Match)
    return match


def expect_eof(child: pexpect.spawn, timeout: float, who: str, output: Callable[[], str]) -> None:
    """Wait for the end of ``child``'s output; fail with ``output()`` if it goes on."""
    import pexpect

    try:
        child.expect(pexpect.EOF, timeout=timeout)
    except pexpect.TIMEOUT:
        raise AssertionError(
            f"{who}: still running after {timeout} s; output:\n" + output()
        ) from None


class PipedProcess:
    """A client process with stdin a pipe and stdout/stderr in files (no terminal, no prompt).

    Files rather than pipes for the output: a large message never passes through a pty, and a
    slow reader never blocks the client.
    """

    tail_chars = 2000
    """How much of each output :meth:`outputs` quotes."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.name = name
        self.proc = proc
        self.out_path = out
        self.err_path = err
        self._writers: list[threading.Thread] = []

    def feed(self, data: bytes, *, close: bool = False) -> None:
        """Write ``data`` to stdin from a thread (a pipe holds 64 KiB; the client reads it only
        once signed in), then close stdin if asked. Writes happen in call order."""
        previous = self._writers[-1] if self._writers else None
        stdin = self.proc.stdin
        assert stdin is not None

        def write() -> None:
            if previous is not None:
                previous.join()
            with contextlib.suppress(BrokenPipeError, ValueError, OSError):
                stdin.write(data)
                stdin.flush()
                if close:
                    stdin.close()

        t = threading.Thread(target=write, name=f"stdin-{self.name}", daemon=True)
        t.start()
        self._writers.append(t)

    def close_input(self) -> None:
        self.feed(b"", close=True)

    def stdout(self) -> str:
        return self.out_path.read_bytes().decode("utf-8", errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_bytes().decode("utf-8", errors="replace")

    def outputs(self) -> str:
        """The end of stdout and of stderr, for a failure message."""
        return (
            f"{self.name} stdout:\n{tail(self.stdout(), self.tail_chars)}\n"
            f"{self.name} stderr:\n{tail(self.stderr(), self.tail_chars)}"
        )


def in_ci() -> bool:
    """``CI`` is set to 1, true or yes."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str, what: str) -> NoReturn:
    """Skip for ``reason``; under CI (:func:`in_ci`) fail instead: ``what`` must run there."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: {what} must run)", pytrace=False)
    pytest.skip(reason)
