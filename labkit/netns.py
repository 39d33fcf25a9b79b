"""Network namespaces on this machine: a loopback of their own, where faults can be injected
(:mod:`labkit.faults`) without touching the host's network.

``with Netns.create("chat-e2e") as ns:`` gives a namespace with ``lo`` up; ``ns.prefix`` runs a
command inside it (``ip netns exec NAME``), ``ns.place`` is where :mod:`labkit.faults` puts
its rules. On exit, whatever still runs in it is killed and it is deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from types import TracebackType

from labkit.faults import Place
from labkit.procs import Reaper
from labkit.util import LabError, run
from labkit.util import unavailable as skip_or_fail


def unavailable() -> str | None:
    """None if this process can make a network namespace with iptables rules, else why not."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    for tool in ("ip", "iptables", "nsenter"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install -y iproute2 iptables util-linux)"
    return None


class Netns:
    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def create(cls, stem: str = "chat") -> Netns:
        """A new namespace ``STEM-<random>`` with its loopback up. Raises
        :class:`~labkit.util.LabError` if ``ip`` refuses."""
        ns = cls(f"{stem}-{uuid.uuid4().hex[:8]}")
        run(["ip", "netns", "add", ns.name])
        try:
            run(["ip", "-n", ns.name, "link", "set", "lo", "up"])
        except BaseException:
            ns.close()
            raise
        return ns

    @property
    def prefix(self) -> list[str]:
        """Prepend to a command to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    @property
    def place(self) -> Place:
        """Where :mod:`labkit.faults` rules go; duplicates are sent back over the loopback."""
        return Place(tuple(self.prefix), gateway="127.0.0.1", label=f"netns {self.name}")

    def close(self) -> None:
        """Kill what still runs in the namespace (only its owner ran anything there), delete
        it."""
        left = run(["ip", "netns", "pids", self.name], check=False)
        for pid in left.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "del", self.name])

    def __enter__(self) -> Netns:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def for_test(reaper: Reaper, name: str, what: str) -> Iterator[Netns]:
    """The body of a test's netns fixture: a fresh namespace ``name``, skipped (failed under
    CI=true) with the reason when none can be made; on the way out the test's processes
    (``reaper``) are stopped first, then the namespace is deleted. ``what`` names the test for
    that message. Use as ``yield from netns.for_test(reaper, "chat-x", "the x test")``."""
    why = unavailable()
    if why:
        skip_or_fail(why, what)
    try:
        space = Netns.create(name)
    except LabError as exc:
        skip_or_fail(str(exc), what)
    try:
        yield space
    finally:
        reaper.stop_all()
        space.close()
