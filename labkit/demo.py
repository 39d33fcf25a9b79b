"""A short scripted conversation between two client containers, printed as it happens, so a
newcomer sees the chat work: alice and bob sign in, list, message each other, hit an error, and
sign out. The clients read piped stdin (``docker compose run -T``: no terminal, no prompt).
Runs in a compose project of its own, removed at the end whatever happens. Needs the images
(``make demo`` builds them first).

Then a fault scenario (:func:`fault_demo`): bob is killed while alice writes to him, then the
server is stopped. Each run ends by drawing its timeline (:mod:`labkit.timeline`): every
datagram from the programs' own logs, every line each client printed or was typed, and where
each fault struck, in ``traces/demo.*`` and ``traces/faults.*`` (PNG, SVG, text).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from labkit import faults
from labkit.compose import SERVER_PORT, Compose
from labkit.pictures import Note
from labkit.terminal import PipedClient
from labkit.timeline import Timeline
from labkit.trace import SERVER_ENV, TRACES, WIRE_LOG
from labkit.util import ROOT, LabError, wait_until


class Screen:
    """What one client printed, shown a piece at a time (only what is new)."""

    def __init__(self, client: PipedClient, timeline: Timeline | None = None) -> None:
        self.client = client
        self.timeline = timeline
        self.shown = {"stdout": 0, "stderr": 0}

    def show(self) -> None:
        for stream, text in (("stdout", self.client.stdout()), ("stderr", self.client.stderr())):
            new = text[self.shown[stream] :]
            complete = new[: new.rfind("\n") + 1]
            for line in complete.splitlines():
                print(f"    [{self.client.name}'s screen] {line}")
                if self.timeline is not None and line.strip():
                    self.timeline.note(self.client.name, line)
            self.shown[stream] += len(complete)

    def expect(self, text: str, wait_s: float) -> None:
        """Wait (bounded) until the client has printed ``text``, then show its screen."""
        c = self.client
        try:
            wait_until(
                lambda: text in c.stdout() or text in c.stderr() or c.proc.poll() is not None,
                wait_s,
                f"{c.name}'s client to print {text!r}",
            )
        finally:
            self.show()
        if text not in c.stdout() + c.stderr():
            raise LabError(f"{c.name}'s client exited ({c.proc.returncode}) before {text!r}")

    def type(self, line: str) -> None:
        print(f"  {self.client.name}> {line}")
        if self.timeline is not None:
            self.timeline.notes.append(
                Note(t=time.time(), host=self.client.name, text=line, what="typed")
            )
        self.client.feed(f"{line}\n".encode())

    def finish(self, wait_s: float) -> None:
        """End the input; the client signs out and must exit 0."""
        self.client.close_input()
        rc = self.client.wait_exit(wait_s)
        self.show()
        print(f"  -- {self.client.name}'s client exited with status {rc}")
        if rc != 0:
            raise LabError(f"{self.client.name}'s client exited with status {rc}")


def _lab(project: str, name: str) -> tuple[Compose, Path, Timeline]:
    """A compose project whose server keeps a wire log, a fresh work directory, a timeline."""
    lab = Compose(project, env={SERVER_ENV: WIRE_LOG})
    work = ROOT / ".lab" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return lab, work, Timeline(lab, work)


def _start(lab: Compose, work: Path, timeline: Timeline, name: str, wait_s: float) -> Screen:
    """A client signed in (its wire log kept), on the timeline."""
    print(f"  -- {name} starts a client: docker compose run --rm -T client -u {name}")
    screen = Screen(lab.piped_client(name, work, options=timeline.client_options(name)), timeline)
    screen.expect(f"signed in as {name}", wait_s)
    timeline.add_host(name, "client")
    return screen


def _draw(timeline: Timeline, out_dir: Path, stem: str, title: str) -> None:
    for path in timeline.write(out_dir / stem, title):
        print(f"  -- wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def demo(project: str, wait_s: float = 20.0, out_dir: Path = TRACES) -> int:
    lab, work, timeline = _lab(project, "demo")
    try:
        print(f"== starting the server (compose project {project})")
        lab.up()
        timeline.add_host("server", "server")
        print(f"  -- server healthy at {lab.container_ip('server')}:{SERVER_PORT}/udp")

        print("== two clients sign in")
        bob = _start(lab, work, timeline, "bob", wait_s)
        alice = _start(lab, work, timeline, "alice", wait_s)

        print("== alice looks who is online and writes to bob, who answers")
        alice.type("list")
        alice.expect("online (2)", wait_s)
        alice.type("send bob hi bob, this is alice")
        bob.expect(": hi bob, this is alice", wait_s)
        bob.type("send alice hello alice, got it")
        alice.expect(": hello alice, got it", wait_s)

        print("== mistakes get one-line errors, and the client keeps running")
        alice.type("send carol are you there?")
        alice.expect("no such user: carol", wait_s)
        alice.type("shout hello")
        alice.expect("unknown command 'shout'", wait_s)

        print("== both sign out")
        alice.type("exit")
        alice.finish(wait_s)
        bob.type("exit")
        bob.finish(wait_s)

        print("== what the server logged")
        for line in lab.logs("server").splitlines():
            print(f"    [server] {line}")
        print("== the conversation's timeline")
        _draw(timeline, out_dir, "demo", "make demo: the scripted conversation")
        print("== demo finished; removing the demo project")
        return 0
    except (LabError, AssertionError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        lab.close()


def fault_demo(project: str, wait_s: float = 20.0, out_dir: Path = TRACES) -> int:
    """bob is killed while alice writes to him; then the server is stopped. The timeline shows
    where each fault struck and what each client printed after it."""
    lab, work, timeline = _lab(project, "faults")
    try:
        print(f"== faults: the server (compose project {project}), alice and bob")
        lab.up()
        timeline.add_host("server", "server")
        bob = _start(lab, work, timeline, "bob", wait_s)
        alice = _start(lab, work, timeline, "alice", wait_s)
        alice.type("send bob are you there?")
        bob.expect(": are you there?", wait_s)

        print("== FAULT: bob's container is killed (docker kill); alice writes to him again")
        timeline.fault("bob", "bob's container killed (docker kill)")
        faults.kill(lab.container("bob"))
        # At once: the directory still lists bob for its client timeout (5 s), so the message
        # goes out and is reported not delivered. (Waiting for `docker compose run --rm` to
        # end first can take longer than that on a loaded machine, and then the answer is
        # "no such user".)
        alice.type("send bob still there?")
        alice.expect("not delivered to bob", wait_s)
        bob.client.wait_exit(wait_s)

        print("== FAULT: the server is stopped (docker stop: SIGTERM)")
        timeline.fault("server", "server stopped (docker stop)")
        lab.container("server").stop(timeout=5)
        alice.expect("the server shut down", wait_s)
        alice.client.wait_exit(wait_s)
        alice.show()
        print("== the faults' timeline")
        _draw(timeline, out_dir, "faults", "make demo: bob killed, then the server stopped")
        return 0
    except (LabError, AssertionError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        lab.close()
