"""A short scripted conversation between two client containers, printed as it happens, so a
newcomer sees the chat work: alice and bob sign in, list, message each other, hit an error, and
sign out. The clients read piped stdin (``docker compose run -T``: no terminal, no prompt).
Runs in a compose project of its own, removed at the end whatever happens. Needs the images
(``make demo`` builds them first).
"""

from __future__ import annotations

import shutil
import sys

from labkit.compose import SERVER_PORT, Compose
from labkit.terminal import PipedClient
from labkit.util import ROOT, LabError, wait_until


class Screen:
    """What one client printed, shown a piece at a time (only what is new)."""

    def __init__(self, client: PipedClient) -> None:
        self.client = client
        self.shown = {"stdout": 0, "stderr": 0}

    def show(self) -> None:
        for stream, text in (("stdout", self.client.stdout()), ("stderr", self.client.stderr())):
            new = text[self.shown[stream] :]
            complete = new[: new.rfind("\n") + 1]
            for line in complete.splitlines():
                print(f"    [{self.client.name}'s screen] {line}")
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
        self.client.feed(f"{line}\n".encode())

    def finish(self, wait_s: float) -> None:
        """End the input; the client signs out and must exit 0."""
        self.client.close_input()
        rc = self.client.wait_exit(wait_s)
        self.show()
        print(f"  -- {self.client.name}'s client exited with status {rc}")
        if rc != 0:
            raise LabError(f"{self.client.name}'s client exited with status {rc}")


def demo(project: str, wait_s: float = 20.0) -> int:
    lab = Compose(project)
    work = ROOT / ".lab" / "demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    def start(name: str) -> Screen:
        print(f"  -- {name} starts a client: docker compose run --rm -T client -u {name}")
        return Screen(lab.piped_client(name, work))

    try:
        print(f"== starting the server (compose project {project})")
        lab.up()
        print(f"  -- server healthy at {lab.container_ip('server')}:{SERVER_PORT}/udp")

        print("== two clients sign in")
        bob = start("bob")
        bob.expect("signed in as bob", wait_s)
        alice = start("alice")
        alice.expect("signed in as alice", wait_s)

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
        print("== demo finished; removing the demo project")
        return 0
    except (LabError, AssertionError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        lab.close()
