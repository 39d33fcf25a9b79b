"""Bad input, on real processes: every case gets the exact line docs/CLI.md promises and its exit
code, and ends within a bound (a hang fails the case; the bound is no claim about speed).

Arguments, homes, key and pin files, history files, piped input, terminal input (pexpect) and
signals. The cases share one server (``srv``); each uses its own user name and home.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chat_client.exits import ExitCode
from chat_client.ui import MAX_LINE_BYTES, MAX_TYPED_CHARS, too_long_text
from labkit.local import ChatServer
from labkit.procs import Reaper, program
from labkit.terminal import PROMPT_RE, TtyClient
from labkit.util import wait_until

pytestmark = pytest.mark.e2e

BOUND_S = 15.0
"""Longest a case's process may run (start-up on a loaded machine included)."""
NAME_RULE = (
    "use 1-32 characters: ASCII letters, digits, '_', '.', '-', starting with a letter or digit"
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    reaper = Reaper()
    try:
        yield ChatServer.start(tmp_path_factory.mktemp("srv") / "server.log", reaper=reaper)
    finally:
        reaper.stop_all()


def errors(stderr: str) -> list[str]:
    """stderr without argparse's usage lines (the first, and its indented continuations)."""
    return [
        ln
        for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith("usage:") and not ln.startswith(" ")
    ]


def run(
    prog: str, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program(prog), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        env=None if env is None else {**os.environ, **env},
    )


@pytest.fixture
def free_port() -> Iterator[int]:
    """A UDP port nobody answers on (held open, so nothing else takes it)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        yield s.getsockname()[1]


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prog", "argv", "line"),
    [
        ("chat-client", [], "chat-client: error: the following arguments are required: -u/--user"),
        (
            "chat-client",
            ["-u", "bad name"],
            f"chat-client: error: argument -u/--user: invalid user name 'bad name': {NAME_RULE}",
        ),
        (
            "chat-client",
            ["-u", "-x"],
            "chat-client: error: argument -u/--user: expected one argument",
        ),
        (
            "chat-client",
            ["-u", "a" * 33],
            f"chat-client: error: argument -u/--user: invalid user name {'a' * 33!r}: {NAME_RULE}",
        ),
        (
            "chat-client",
            ["-u", "al", "-sp", "0"],
            "chat-client: error: argument -sp/--port: port out of range 1-65535: 0",
        ),
        (
            "chat-client",
            ["-u", "al", "-sp", "70000"],
            "chat-client: error: argument -sp/--port: port out of range 1-65535: 70000",
        ),
        (
            "chat-client",
            ["-u", "al", "-sp", "abc"],
            "chat-client: error: argument -sp/--port: not a port number: 'abc'",
        ),
        (
            "chat-client",
            ["-u", "al", "--home", ""],
            "chat-client: error: argument --home: an empty path (leave --home out for the "
            "default home)",
        ),
        (
            "chat-client",
            ["-u", "al", "--server-key", "nope"],
            "chat-client: error: argument --server-key: ",
        ),
        (
            "chat-client",
            ["-u", "al", "--bogus"],
            "chat-client: error: unrecognized arguments: --bogus",
        ),
        (
            "chat-server",
            ["--home", ""],
            "chat-server: error: argument --home: an empty path (leave --home out for the "
            "default home)",
        ),
        (
            "chat-server",
            ["-sp", "70000"],
            "chat-server: error: argument -sp/--port: port out of range 0-65535: 70000",
        ),
        (
            "chat-server",
            ["--max-users-per-ip", "0"],
            "chat-server: error: argument --max-users-per-ip: must be at least 1: 0",
        ),
    ],
    ids=[
        "no-user",
        "bad-name",
        "name-missing",
        "name-too-long",
        "port-0",
        "port-too-big",
        "port-not-a-number",
        "empty-home",
        "bad-server-key",
        "unknown-option",
        "server-empty-home",
        "server-port-too-big",
        "server-zero-users-per-ip",
    ],
)
def test_bad_arguments_are_usage_errors(prog: str, argv: list[str], line: str) -> None:
    r = run(prog, *argv)
    assert r.returncode == ExitCode.USAGE, r.stderr
    [shown] = errors(r.stderr)
    if line.endswith(": "):
        assert shown.startswith(line), shown  # the fingerprint parser's own words follow
    else:
        assert shown == line
    assert "Traceback" not in r.stderr


def test_a_bad_port_in_the_environment_is_a_usage_error() -> None:
    r = run("chat-client", "-u", "al", env={"CHAT_PORT": "http"})
    assert r.returncode == ExitCode.USAGE
    assert errors(r.stderr) == [
        "chat-client: error: argument -sp/--port: not a port number: 'http'"
    ]


def test_an_unresolvable_server_has_its_own_exit_code(tmp_path: Path) -> None:
    r = run("chat-client", "-u", "al", "-sip", "no.such.host.invalid", "--home", str(tmp_path))
    assert r.returncode == ExitCode.UNRESOLVED
    [line] = r.stderr.splitlines()
    assert line.startswith("error: cannot resolve the server 'no.such.host.invalid': "), line


def test_an_ipv6_server_is_shown_in_brackets(tmp_path: Path, free_port: int) -> None:
    r = run(
        "chat-client", "-u", "al", "-sip", "::1", "-sp", str(free_port), "--home", str(tmp_path)
    )
    assert r.returncode == ExitCode.NO_SERVER
    assert r.stderr.splitlines() == [f"error: no answer from the server at [::1]:{free_port}"]


# --- homes, key files, pin files ----------------------------------------------------------------


@dataclass
class HomeCase:
    prepare: Callable[[Path], object]
    line: str
    """The error line, ``{home}`` for the home."""
    home: str = "h"
    """The home, under the test's directory."""


def _file(path: Path, text: str, mode: int = 0o600) -> None:
    """``text`` in ``path`` (a lone surrogate becomes that byte: not UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    path.chmod(mode)


def _key_of(name: str, mode: int = 0o600) -> Callable[[Path], None]:
    """A valid key file of ``name`` where al's belongs."""

    def prepare(home: Path) -> None:
        from chat_shell.keystore import KeyStore

        KeyStore(home).user_key(name)
        (home / "keys" / f"user-{name}.json").rename(home / "keys" / "user-al.json")
        (home / "keys" / "user-al.json").chmod(mode)

    return prepare


HOME_CASES = {
    "home-is-a-file": HomeCase(
        lambda h: h.write_text("x"),
        "error: cannot use the home directory: {home} is not a directory",
    ),
    "home-under-a-file": HomeCase(
        lambda h: h.parent.write_text("x"),
        "error: cannot use the home directory: {home}/.. is not a directory",
        home="f/h",
    ),
    "key-is-a-directory": HomeCase(
        lambda h: (h / "keys" / "user-al.json").mkdir(parents=True),
        "error: cannot use the home directory: {home}/keys/user-al.json is not a regular file",
    ),
    "key-open-to-others": HomeCase(
        lambda h: _key_of("al", 0o644)(h),
        "error: cannot use the home directory: {home}/keys/user-al.json is open to other users; "
        "run: chmod 600 {home}/keys/user-al.json",
    ),
    "key-not-json": HomeCase(
        lambda h: _file(h / "keys" / "user-al.json", "x"),
        "error: cannot use the home directory: cannot read {home}/keys/user-al.json: not JSON "
        "(Expecting value: line 1 column 1 (char 0))",
    ),
    "key-not-utf8": HomeCase(
        lambda h: _file(h / "keys" / "user-al.json", "\udcff"),
        "error: cannot use the home directory: cannot read {home}/keys/user-al.json: "
        "not UTF-8 text",
    ),
    "key-wrong-version": HomeCase(
        lambda h: _file(h / "keys" / "user-al.json", '{"version": 2}'),
        "error: cannot use the home directory: {home}/keys/user-al.json is not a version 1 chat "
        "key file",
    ),
    "key-not-x25519": HomeCase(
        lambda h: _file(h / "keys" / "user-al.json", '{"version": 1, "type": "rsa"}'),
        "error: cannot use the home directory: {home}/keys/user-al.json: not an X25519 key",
    ),
    "key-no-private": HomeCase(
        lambda h: _file(h / "keys" / "user-al.json", '{"version": 1, "type": "x25519"}'),
        "error: cannot use the home directory: {home}/keys/user-al.json: private key missing",
    ),
    "key-of-another-user": HomeCase(
        _key_of("bob"),
        "error: cannot use the home directory: {home}/keys/user-al.json holds the key of 'bob', "
        "not of 'al'",
    ),
    "pin-file-a-list": HomeCase(
        lambda h: _file(h / "pins" / "al.json", "[]"),
        "error: cannot use the home directory: {home}/pins/al.json is not a version 1 or 2 chat "
        "pin file",
    ),
    "pin-file-unknown-version": HomeCase(
        lambda h: _file(h / "pins" / "al.json", '{"version": 9}'),
        "error: cannot use the home directory: {home}/pins/al.json is not a version 1 or 2 chat "
        "pin file",
    ),
    "pin-file-writable-by-others": HomeCase(
        lambda h: _file(h / "pins" / "al.json", '{"version": 1}', 0o666),
        "error: cannot use the home directory: {home}/pins/al.json is open to other users; "
        "run: chmod 600 {home}/pins/al.json",
    ),
    "pin-not-base64": HomeCase(
        lambda h: _file(h / "pins" / "al.json", '{"version": 1, "users": {"bob": "!"}}'),
        "error: cannot use the home directory: {home}/pins/al.json: the pin of 'bob' is not base64",
    ),
    "pins-not-a-table": HomeCase(
        lambda h: _file(h / "pins" / "al.json", '{"version": 1, "users": []}'),
        "error: cannot use the home directory: {home}/pins/al.json: 'users' is not a table of keys",
    ),
}


@pytest.mark.parametrize("case", HOME_CASES.values(), ids=HOME_CASES.keys())
def test_an_unusable_home_is_one_line(case: HomeCase, srv: ChatServer, tmp_path: Path) -> None:
    home = tmp_path / case.home
    case.prepare(home)
    r = run("chat-client", "-u", "al", "-sp", str(srv.port), "--home", str(home))
    assert r.returncode == ExitCode.USAGE, r.stderr
    assert r.stderr.splitlines() == [case.line.format(home=home).replace("/f/h/..", "/f")]
    assert r.stdout == ""


def test_a_key_file_is_never_regenerated(srv: ChatServer, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "user-al.json"
    _file(key, "x")
    run("chat-client", "-u", "al", "-sp", str(srv.port), "--home", str(tmp_path))
    assert key.read_text() == "x"


def test_a_world_writable_home_is_a_warning(srv: ChatServer, tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    home.chmod(0o777)
    r = run("chat-client", "-u", "ww", "-sp", str(srv.port), "--home", str(home), stdin="exit\n")
    assert r.returncode == ExitCode.OK, r.stderr
    assert r.stderr.splitlines() == [
        f"warning: {home} is writable by other users, who could replace your keys; "
        f"run: chmod 700 {home}"
    ]
    assert r.stdout.splitlines()[-1] == "signed out"


def test_a_pin_file_readable_by_others_is_accepted(srv: ChatServer, tmp_path: Path) -> None:
    """Pins hold public keys only (as ssh's known_hosts, 0644 by default); the next write
    leaves them 0600 like every file the client writes."""
    _file(tmp_path / "pins" / "pn.json", '{"version": 1}', 0o644)
    r = run(
        "chat-client", "-u", "pn", "-sp", str(srv.port), "--home", str(tmp_path), stdin="exit\n"
    )
    assert r.returncode == ExitCode.OK, r.stderr
    assert r.stderr == ""
    assert stat.S_IMODE((tmp_path / "pins" / "pn.json").stat().st_mode) == 0o600


# --- history files --------------------------------------------------------------------------


def test_a_history_in_a_missing_directory_is_refused_before_sign_in(
    srv: ChatServer, tmp_path: Path
) -> None:
    path = tmp_path / "no" / "h.jsonl"
    r = run(
        "chat-client",
        "-u",
        "hm",
        "-sp",
        str(srv.port),
        "--home",
        str(tmp_path),
        "--history",
        str(path),
    )
    assert r.returncode == ExitCode.HISTORY
    assert r.stderr.splitlines() == [
        f"error: cannot write the history file {path}: No such file or directory; "
        "nothing more is sent"
    ]
    assert r.stdout == ""


def test_a_history_that_cannot_be_written_stops_before_anything_is_sent(
    srv: ChatServer, tmp_path: Path
) -> None:
    """/dev/full opens, and fails the first write (the sign-in record): the client signs out
    and exits 9 before it reads a command."""
    r = run(
        "chat-client", "-u", "hf", "-sp", str(srv.port), "--home", str(tmp_path),
        "--history", "/dev/full", stdin="send hg x\nexit\n",
    )  # fmt: skip
    assert r.returncode == ExitCode.HISTORY, r.stderr
    assert r.stderr.splitlines() == [
        "error: cannot write the history file /dev/full: No space left on device; "
        "nothing more is sent"
    ]
    assert r.stdout.splitlines() == ["signed in as hf; type 'help' for commands", "signed out"]


def test_a_refused_name_with_an_unwritable_history_still_exits_3(
    srv: ChatServer, tmp_path: Path, reaper: Reaper
) -> None:
    """Another home's key asks for a name that is signed in (and so bound to the holder's key):
    the refusal, not the history, is what ends it."""
    holder = subprocess.Popen(
        [program("chat-client"), "-u", "ht", "-sp", str(srv.port), "--home", str(tmp_path / "a")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    reaper.track(holder, "holder", lambda: "")
    assert holder.stdout is not None
    ready, _, _ = select.select([holder.stdout], [], [], BOUND_S)
    assert ready and holder.stdout.readline().startswith(b"signed in as ht")
    r = run(
        "chat-client", "-u", "ht", "-sp", str(srv.port), "--home", str(tmp_path / "b"),
        "--history", "/dev/full",
    )  # fmt: skip
    assert r.returncode == ExitCode.REFUSED
    assert r.stderr.splitlines() == [
        "error: the name 'ht' belongs to another key; pick another name, or sign in with the "
        "home directory that holds its key (only the server's operator can release a name whose "
        "key was lost)"
    ]


# --- piped input ------------------------------------------------------------------------------


PIPED = {
    "unknown-command": ("foo\n", "error: unknown command 'foo'; type 'help' for the commands"),
    "send-alone": ("send\n", "error: usage: send USER MESSAGE"),
    "send-no-text": ("send bob\n", "error: usage: send USER MESSAGE (no message for bob)"),
    "send-blank": ("send bob    \n", "error: empty message, not sent"),
    "list-with-args": ("list x\n", "error: 'list' takes no arguments"),
    "whois-alone": ("whois\n", "error: usage: whois USER"),
    "no-such-user": ("send nobody hi\n", "error: no such user: nobody"),
    "bad-user-name": (
        "send b@d hi\n",
        f"error: invalid user name 'b@d': {NAME_RULE}",
    ),
    "not-utf8": (
        "\xff\xfe\n",
        "error: unknown command '\ufffd\ufffd'; type 'help' for the commands",
    ),
    "control-characters": (
        "\x1b[31mred\n",
        # (the command word is quoted as repr() does, and its backslash escaped when shown)
        "error: unknown command '\\\\x1b[31mred'; type 'help' for the commands",
    ),
}


@pytest.mark.parametrize(("text", "line"), PIPED.values(), ids=PIPED.keys())
def test_a_bad_piped_command_is_one_line_and_the_client_goes_on(
    text: str, line: str, srv: ChatServer, tmp_path: Path
) -> None:
    name = f"p{abs(hash(text)) % 10**6}"
    r = subprocess.run(
        [program("chat-client"), "-u", name, "-sp", str(srv.port), "--home", str(tmp_path)],
        input=text.encode("latin-1") + b"list\n",
        capture_output=True,
        timeout=BOUND_S,
    )
    assert r.returncode == ExitCode.OK
    assert r.stderr.decode().splitlines() == [line]
    out = r.stdout.decode().splitlines()
    assert out[-1] == "signed out" and any(ln.startswith("online (") for ln in out)


def test_a_piped_line_over_the_limit_is_one_error_and_its_rest_no_command(
    srv: ChatServer, tmp_path: Path
) -> None:
    r = subprocess.run(
        [program("chat-client"), "-u", "ol", "-sp", str(srv.port), "--home", str(tmp_path)],
        input=b"send nobody " + b"x" * (MAX_LINE_BYTES + 4096) + b"\nlist\n",
        capture_output=True,
        timeout=BOUND_S,
    )
    assert r.returncode == ExitCode.OK
    [line] = r.stderr.decode().splitlines()
    assert line == f"error: input line over {MAX_LINE_BYTES} bytes, ignored"
    assert r.stdout.decode().splitlines()[1].startswith("online (")


def test_a_closed_stdout_ends_the_client_at_once_and_quietly(
    srv: ChatServer, tmp_path: Path, reaper: Reaper
) -> None:
    """``chat-client ... | head -1``: the reader is gone; the client signs out and exits 141
    (as a shell reports ``cat`` ended by SIGPIPE), printing nothing more."""
    p = subprocess.Popen(
        [program("chat-client"), "-u", "hd", "-sp", str(srv.port), "--home", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    reaper.track(p, "client", lambda: "")
    assert p.stdout is not None and p.stdin is not None and p.stderr is not None
    ready, _, _ = select.select([p.stdout], [], [], BOUND_S)
    assert ready and p.stdout.readline().startswith(b"signed in as hd")
    p.stdout.close()
    p.stdin.write(b"list\nlist\nlist\n")
    p.stdin.flush()
    assert p.wait(BOUND_S) == ExitCode.READER_GONE
    assert p.stderr.read() == b""
    srv.wait_log(r"\bhd signed out\b")


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGTERM, ExitCode.OK), (signal.SIGINT, ExitCode.OK), (signal.SIGHUP, ExitCode.HANGUP)],
    ids=["sigterm", "sigint", "sighup"],
)
def test_a_signal_signs_out_with_its_exit_code(
    sig: signal.Signals, code: int, srv: ChatServer, tmp_path: Path, reaper: Reaper
) -> None:
    name = f"s{int(sig)}"
    p = subprocess.Popen(
        [program("chat-client"), "-u", name, "-sp", str(srv.port), "--home", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    reaper.track(p, "client", lambda: "")
    assert p.stdout is not None and p.stderr is not None
    ready, _, _ = select.select([p.stdout], [], [], BOUND_S)
    assert ready and p.stdout.readline().startswith(f"signed in as {name}".encode())
    p.send_signal(sig)
    assert p.wait(BOUND_S) == code
    assert p.stdout.read().decode().splitlines() == ["signed out"]
    assert p.stderr.read() == b""


def test_the_first_sigterm_ends_the_client_even_with_a_send_unanswered(
    srv: ChatServer, tmp_path: Path, reaper: Reaper
) -> None:
    """bob is stopped (SIGSTOP): alice's message to him waits for an acknowledgement (10 s).
    One SIGTERM still ends alice within the signal grace (2 s), saying what was cut short."""
    bob = subprocess.Popen(
        [program("chat-client"), "-u", "tb", "-sp", str(srv.port), "--home", str(tmp_path / "b")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    reaper.track(bob, "bob", lambda: "")
    alice = subprocess.Popen(
        [program("chat-client"), "-u", "ta", "-sp", str(srv.port), "--home", str(tmp_path / "a")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    reaper.track(alice, "alice", lambda: "")
    for p in (bob, alice):
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], BOUND_S)
        assert ready and p.stdout.readline().startswith(b"signed in as")
    bob_port = srv.client_addr("tb")[1]
    os.kill(bob.pid, signal.SIGSTOP)
    try:
        assert alice.stdin is not None and alice.stderr is not None
        alice.stdin.write(b"send tb hello\n")
        alice.stdin.flush()
        # Under way: alice's first datagram waits, unread, in stopped bob's socket.
        wait_until(lambda: udp_queued(bob_port) > 0, BOUND_S, "alice's datagram at bob")
        alice.send_signal(signal.SIGTERM)
        assert alice.wait(5.0) == ExitCode.OK
        assert alice.stderr.read().decode().splitlines() == [
            "error: a signal ended the client before every answer came (sends not confirmed, "
            "lists not answered)"
        ]
    finally:
        os.kill(bob.pid, signal.SIGCONT)


def udp_queued(port: int) -> int:
    """Bytes waiting unread in the UDP socket bound to ``port`` on 127.0.0.1 (/proc/net/udp)."""
    for row in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = row.split()
        if int(fields[1].split(":")[1], 16) == port:
            return int(fields[4].split(":")[1], 16)
    return 0


# --- terminal input -------------------------------------------------------------------------


@pytest.fixture
def tty(srv: ChatServer, reaper: Reaper, tmp_path: Path) -> Callable[[str], TtyClient]:
    def start(name: str) -> TtyClient:
        c = TtyClient.spawn(
            reaper,
            name,
            [program("chat-client"), "-u", name, "-sp", str(srv.port), "--home", str(tmp_path)],
            timeout=BOUND_S,
        )
        c.wait_signed_in()
        return c

    return start


def test_typed_control_characters_are_text_and_no_line_merges(
    tty: Callable[[str], TtyClient],
) -> None:
    """Ctrl-V Esc, ``[31mRED`` (a mouse report to prompt_toolkit's parser), Ctrl-V BEL: taken
    as text; no traceback, and the next line is a line of its own."""
    c = tty("tc")
    c.enter("send nobody A\x16\x1b[31mRED\x16\x07B")
    c.expect(r"✗ no such user: nobody\r?\n")
    c.enter("send nobody \x1b[5;7R")  # a cursor position report, typed
    c.expect(r"✗ no such user: nobody\r?\n")
    assert "tc" in c.list_names()
    c.enter("exit")
    assert c.wait_exit(BOUND_S) == ExitCode.OK
    assert "Traceback" not in c.transcript() and "unpack" not in c.transcript()


@pytest.mark.parametrize(
    ("chars", "answer"),
    [
        (64 * 1024 - 100, r"✗ no such user: nobody\r?\n"),
        (
            1 << 20,
            "error: "
            + too_long_text((1 << 20) + len("send nobody "))
            .replace("(", r"\(")
            .replace(")", r"\)"),
        ),
    ],
    ids=["64KiB-taken", "1MiB-refused"],
)
def test_a_long_paste_at_the_prompt_is_taken_or_refused_with_its_size(
    chars: int, answer: str, tty: Callable[[str], TtyClient]
) -> None:
    assert MAX_TYPED_CHARS == 64 * 1024
    c = tty(f"lp{chars % 1000}")
    c.enter("send nobody " + "x" * chars)
    c.expect(answer, timeout=60.0)
    c.expect(PROMPT_RE)
    assert c.name in c.list_names()


def test_sighup_on_a_terminal_signs_out_with_129(tty: Callable[[str], TtyClient]) -> None:
    c = tty("hu")
    os.kill(c.pid, signal.SIGHUP)
    c.expect(r"signed out\r?\n")
    assert c.wait_exit(BOUND_S) == ExitCode.HANGUP


# --- an unknown failure -----------------------------------------------------------------------


def test_an_unknown_failure_is_one_line_and_the_client_still_signs_out() -> None:
    """bob's output breaks on a message (a stand-in for any bug): one line pointing to
    ``--verbose``, a sign-out the server sees, exit 1; in process, on loopback sockets."""
    import asyncio
    import functools

    from chat_client.app import ClientShell
    from chat_client.ui import Output
    from chat_protocol.client.core import ClientCore
    from chat_protocol.secure.noise import KeyPair
    from chat_protocol.server.core import ServerCore
    from chat_server.app import ServerShell
    from chat_shell import aio

    class Lines(Output):
        def __init__(self, *, broken: bool) -> None:
            super().__init__(interactive=False)
            self.lines: list[str] = []
            self.broken = broken

        def _write(self, line: str, *, err: bool = False) -> None:
            self.lines.append(line)

        def message(self, sender: str, addr: tuple[str, int], text: str, **_: object) -> None:
            if self.broken:
                raise RuntimeError("a bug")
            super().message(sender, addr, text)

    async def scenario() -> tuple[int, list[str], set[str]]:
        server_core = ServerCore(identity=KeyPair.generate(os.urandom))
        server = await aio.open_endpoint(lambda: ServerShell(server_core), host="127.0.0.1", port=0)
        assert server.transport is not None
        port = server.transport.get_extra_info("sockname")[1]
        shells: list[ClientShell] = []
        try:
            for name in ("alice", "bob"):
                core = ClientCore(
                    name=name, server=("127.0.0.1", port), identity=KeyPair.generate(os.urandom)
                )
                out = Lines(broken=name == "bob")
                shell = await aio.open_endpoint(
                    functools.partial(ClientShell, core, out), host="127.0.0.1", port=0
                )
                core.connect(shell.now())
                shell.pump()
                async with asyncio.timeout(BOUND_S):
                    await shell.signed_in
                shells.append(shell)
            alice, bob = shells
            alice.core.send("bob", "hello", alice.now())
            alice.pump()
            async with asyncio.timeout(BOUND_S):
                code = await bob.finished
            bob_out = bob.out
            assert isinstance(bob_out, Lines)
            return int(code), bob_out.lines, set(server_core.users)
        finally:
            for shell in shells:
                shell.close()
            server.close()

    code, lines, users = aio.run(scenario())
    assert code == ExitCode.INTERNAL
    assert lines[1:] == ["error: internal error (RuntimeError); see --verbose", "signed out"]
    assert "bob" not in {u.lower() for u in users}
