"""Driving a chat client, wherever it runs: a local ``chat-client`` or ``docker compose run``.

- :class:`TtyClient`: the command on a pseudo-terminal under pexpect (the prompt_toolkit path).
  What it prints goes through :class:`ScreenFilter`, so patterns match plain text, and is kept
  in a transcript.
- :class:`PipedClient`: the command with stdin a pipe and stdout/stderr in files (the
  non-terminal path; a large message never passes through a pty, a slow reader never blocks
  the client).

Both are started through a :class:`~labkit.procs.Reaper`, which stops them. Every wait has a
deadline: pexpect ``expect`` with a timeout, or :func:`~labkit.util.wait_until` on a file.
The patterns follow docs/CLI.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.procs import Reaper, exit_code_of
from labkit.util import tail, wait_until

if TYPE_CHECKING:
    import pexpect

TAIL_CHARS = 1500
"""How much of a client's output a failure message quotes."""

# A received message: ``alice (172.18.0.3:40211): hello``, ``bob ([::1]:5000): hi``, the first
# from a sender never pinned ``alice (172.18.0.3:40211) (new): hello`` (docs/CLI.md).
MESSAGE_RE = re.compile(
    r"(?P<sender>[A-Za-z0-9][A-Za-z0-9_.-]*)(?P<unverified>\?)? "
    r"\(\[?(?P<ip>[0-9a-fA-F.:]+?)\]?:(?P<port>\d+)\)(?P<mark> \[unverified\])?(?P<new> \(new\))?: "
    r"(?P<text>[^\r\n]*)"
)
LIST_RE = r"online \((?P<total>\d+)\): (?P<names>[^\r\n]*)\r?\n"
PROMPT_RE = r"\+> "

# CSI (ESC [ params intermediates final), OSC (ESC ] ... BEL/ST), character set selection
# (ESC ( B) and two-byte escapes.
ESCAPE_RE = re.compile(
    r"\x1b\[(?P<params>[0-9;?<=>]*)[ -/]*(?P<final>[@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[()*+][0-9A-Za-z]"
    r"|\x1b[@-Z\\-_=>]"
)
_MAX_ESC_LEN = 64

TTY_ENV = {
    # prompt_toolkit asks the terminal for the cursor position (CPR) and waits for an answer that
    # a pexpect pty never gives; this turns the request off.
    "PROMPT_TOOLKIT_NO_CPR": "1",
    # A real terminal type: with TERM=dumb prompt_toolkit falls back to a line-mode prompt that
    # does not redraw the prompt and the half-typed line around printed messages, which is the
    # very behaviour the local terminal tests check. The escapes are removed by ScreenFilter.
    "TERM": "xterm",
    "COLUMNS": "200",
    "LINES": "50",
}


def signed_in_re(name: str) -> str:
    return rf"signed in as {re.escape(name)}; type 'help' for commands\r?\n"


def messages_in(text: str, sender: str | None = None) -> list[re.Match[str]]:
    """Every received-message line in ``text`` (optionally from one sender)."""
    found = MESSAGE_RE.finditer(text)
    return [m for m in found if sender is None or m["sender"] == sender]


class ScreenFilter:
    """Turns a terminal byte stream into plain text a regex can match.

    Escape sequences are removed, except "cursor forward" (``ESC [ n C``), which prompt_toolkit
    emits instead of spaces (the prompt ``+> `` is drawn as ``+>`` then "2 left, 3 right"); it
    becomes ``n`` spaces. Carriage returns stay (patterns allow ``\\r?\\n``). A sequence cut in
    two by a read is held back until the rest arrives.
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


def _expect_match(
    child: pexpect.spawn, pattern: str, timeout: float, who: str, output: Callable[[], str]
) -> re.Match[str]:
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


def _screen_spawn(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None) -> Any:
    """A pexpect child whose reads go through a :class:`ScreenFilter` into ``.transcript``."""
    import pexpect

    class ScreenSpawn(pexpect.spawn):  # type: ignore[misc]
        def __init__(self) -> None:
            self.screen = ScreenFilter()
            self.transcript: list[str] = []
            super().__init__(
                argv[0],
                list(argv[1:]),
                env=dict(env),
                cwd=None if cwd is None else str(cwd),
                encoding="utf-8",
                codec_errors="replace",
                dimensions=(50, 200),
                timeout=5,
            )

        def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> str:
            text = self.screen.feed(super().read_nonblocking(size, timeout))
            self.transcript.append(text)
            return text

    return ScreenSpawn()


class TtyClient:
    """A client command (``chat-client -u NAME ...`` or ``docker compose run client -u NAME``)
    on a pseudo-terminal. :meth:`expect` consumes the output in order, as pexpect does, and
    fails with the recent output in the message; :meth:`transcript` is all of it."""

    def __init__(
        self, name: str, child: Any, *, timeout: float = 5.0, start_timeout: float = 10.0
    ) -> None:
        self.name = name
        self.child: pexpect.spawn = child
        self.timeout = timeout
        """Default bound of :meth:`expect` and :meth:`list_names`."""
        self.start_timeout = start_timeout
        """Default bound of :meth:`wait_signed_in` (process start-up plus sign-in)."""

    @classmethod
    def spawn(
        cls,
        reaper: Reaper,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 5.0,
        start_timeout: float = 10.0,
    ) -> TtyClient:
        child = _screen_spawn(argv, {**os.environ, **TTY_ENV, **(env or {})}, cwd)
        client = cls(name, child, timeout=timeout, start_timeout=start_timeout)
        reaper.track(child, f"{name} (terminal, filtered)", client.transcript)
        return client

    @property
    def pid(self) -> int:
        return int(self.child.pid)

    def transcript(self) -> str:
        """Everything printed so far, without escape sequences and carriage returns (lines end
        in ``\\n``; :meth:`expect` sees the ``\\r`` still)."""
        return "".join(self.child.transcript).replace("\r", "")

    def _recent(self) -> str:
        return tail(self.transcript(), TAIL_CHARS)

    def expect(self, pattern: str, timeout: float | None = None) -> re.Match[str]:
        """Wait for ``pattern`` in the output (after what earlier expects consumed)."""
        bound = self.timeout if timeout is None else timeout
        return _expect_match(self.child, pattern, bound, self.name, self._recent)

    def poll(self, pattern: str) -> re.Match[str] | None:
        """The next match of ``pattern`` if it is already in the output, else None (no wait)."""
        import pexpect

        if self.child.expect([pattern, pexpect.TIMEOUT, pexpect.EOF], timeout=0.01) != 0:
            return None
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    def read_available(self) -> str:
        """Read what the client has printed so far (consumes no match); the transcript."""
        import pexpect

        self.child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=0.01)
        return self.transcript()

    def wait_signed_in(self, timeout: float | None = None) -> None:
        bound = self.start_timeout if timeout is None else timeout
        self.expect(signed_in_re(self.name), bound)
        self.expect(PROMPT_RE, bound)

    def type(self, text: str) -> None:
        """Keystrokes without Enter."""
        self.child.send(text)

    def enter(self, line: str) -> None:
        """Type ``line`` and press Enter."""
        self.child.send(line + "\r")

    def list_names(self, timeout: float | None = None) -> list[str]:
        """Run ``list``; the names it showed (checked against the total it printed)."""
        self.enter("list")
        m = self.expect(LIST_RE, timeout)
        names = [n.strip() for n in m["names"].split(",") if n.strip()]
        assert int(m["total"]) == len(names), f"{self.name}: {m.group(0)!r}"
        return names

    def messages(self, sender: str | None = None) -> list[re.Match[str]]:
        return messages_in(self.transcript(), sender)

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the output to end and the process to exit; its exit status."""
        import pexpect

        try:
            self.child.expect(pexpect.EOF, timeout=timeout)
        except pexpect.TIMEOUT:
            raise AssertionError(
                f"{self.name}: still running after {timeout} s; output:\n" + self._recent()
            ) from None
        return exit_code_of(self.child, timeout, self.name)


class PipedClient:
    """A client command with stdin a pipe and stdout/stderr in files (no terminal, no prompt).
    Messages and info lines go to stdout, errors to stderr (docs/CLI.md)."""

    def __init__(
        self,
        name: str,
        proc: subprocess.Popen[bytes],
        out: Path,
        err: Path,
        *,
        timeout: float = 5.0,
        start_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.proc = proc
        self.out_path = out
        self.err_path = err
        self.timeout = timeout
        self.start_timeout = start_timeout
        self._writers: list[threading.Thread] = []

    @classmethod
    def spawn(
        cls,
        reaper: Reaper,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 5.0,
        start_timeout: float = 10.0,
    ) -> PipedClient:
        """Start ``argv``; its output goes to ``workdir/NAME.out`` and ``NAME.err``."""
        out, err = workdir / f"{name}.out", workdir / f"{name}.err"
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=fo,
                stderr=fe,
                cwd=cwd,
                env=None if env is None else {**os.environ, **env},
            )
        client = cls(name, proc, out, err, timeout=timeout, start_timeout=start_timeout)
        reaper.track(proc, f"{name} (piped)", client.outputs)
        return client

    @property
    def pid(self) -> int:
        return self.proc.pid

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
            f"{self.name} stdout:\n{tail(self.stdout(), TAIL_CHARS)}\n"
            f"{self.name} stderr:\n{tail(self.stderr(), TAIL_CHARS)}"
        )

    def wait_output(
        self, pattern: str, timeout: float | None = None, *, stream: str = "stdout"
    ) -> re.Match[str]:
        """Wait until ``pattern`` is in stdout (or ``stream="stderr"``); fail early if the
        client exits without printing it."""
        rx = re.compile(pattern)
        read = self.stdout if stream == "stdout" else self.stderr
        short = pattern[:80]

        def probe() -> re.Match[str] | None:
            m = rx.search(read())
            if m is None and self.proc.poll() is not None and not rx.search(read()):
                raise AssertionError(
                    f"{self.name} exited ({self.proc.returncode}) before printing /{short}/ "
                    f"on {stream}\n{self.outputs()}"
                )
            return m

        bound = self.timeout if timeout is None else timeout
        return wait_until(probe, bound, f"{self.name} {stream} /{short}/", self.outputs)

    def wait_stdout(self, pattern: str, timeout: float | None = None) -> re.Match[str]:
        return self.wait_output(pattern, timeout)

    def wait_signed_in(self, timeout: float | None = None) -> None:
        bound = self.start_timeout if timeout is None else timeout
        self.wait_stdout(signed_in_re(self.name), bound)

    def messages(self, sender: str | None = None) -> list[re.Match[str]]:
        return messages_in(self.stdout(), sender)

    def wait_exit(self, timeout: float = 10.0) -> int:
        try:
            return exit_code_of(self.proc, timeout, self.name)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.outputs()}") from None
