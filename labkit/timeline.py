"""Timelines of a scripted lab run (``make demo``): the same sequence diagram as ``make trace``
(:mod:`labkit.pictures`), drawn from what the run recorded rather than from a capture:

- every datagram, from the programs' own wire logs (``CHAT_WIRE_LOG``, :mod:`chat_shell.wirelog`):
  each line a sender logged going out, paired with the receiver's line of it coming in (same
  addresses and size, the first after it); the kind is the sender's;
- every line each client printed, at the time the harness saw it;
- every fault the script did (server stopped, client killed), at the time it did it.

Clients write their logs into a directory of the host mounted into their containers (they run
with ``--rm``); the server writes inside its container, read back through the docker SDK (it
works on a stopped container too).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from labkit import pictures
from labkit.compose import Compose
from labkit.pictures import Datagram, Event, Fault, Host, Note
from labkit.trace import WIRE_LOG, json_lines, read_file

ARRIVAL_SLACK_S = 0.05
"""A receiver's line may carry a time this much before its sender's (two clocks read)."""


def from_logs(hosts: Sequence[Host], logs: dict[str, list[dict[str, object]]]) -> list[Datagram]:
    """One :class:`Datagram` per line a host logged going out to another host of ``hosts``,
    with its arrival from the receiver's log (None: the receiver never logged it)."""
    by_ip = {h.addr: h.name for h in hosts}
    addr_of = {h.name: h.addr for h in hosts}
    used: set[tuple[str, int]] = set()
    out: list[Datagram] = []
    for h in hosts:
        for line in logs.get(h.name, []):
            if line["dir"] != "out":
                continue
            receiver = by_ip.get(str(line["peer"]).rsplit(":", 1)[0])
            if receiver is None:
                continue  # the healthcheck's probe on the loopback, and the like
            t, size = float(str(line["t"])), int(str(line["size"]))
            arrived = None
            for j, got in enumerate(logs.get(receiver, [])):
                if (receiver, j) in used or got["dir"] != "in" or int(str(got["size"])) != size:
                    continue
                came_from = str(got["peer"]).rsplit(":", 1)[0]
                if came_from == addr_of[h.name] and float(str(got["t"])) >= t - ARRIVAL_SLACK_S:
                    used.add((receiver, j))
                    arrived = float(str(got["t"]))
                    break
            kind = str(line["kind"])
            detail = str(line.get("detail", ""))
            out.append(
                Datagram(
                    sent=t, arrived=arrived, src=h.name, dst=receiver, kind=kind, size=size,
                    detail=detail,
                )
            )  # fmt: skip
    return out


class Timeline:
    """What one scripted run recorded: hosts, printed lines, faults, and the wire logs."""

    def __init__(self, lab: Compose, work: Path) -> None:
        self.lab = lab
        self.wire_dir = work / "wire"
        self.wire_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.wire_dir, 0o777)  # the clients run as their image's user, not root
        self.hosts: list[Host] = []
        self.notes: list[Note] = []
        self.faults: list[Fault] = []

    def client_options(self, name: str) -> list[str]:
        """``docker compose run`` options that make client ``name`` keep a wire log here, and
        give it the server's address rather than its name (no start that fails when Docker's
        resolver is slow on a loaded machine)."""
        return [
            "-e", f"CHAT_WIRE_LOG=/wire/{name}.jsonl", "-v", f"{self.wire_dir}:/wire",
            "-e", f"CHAT_SERVER={self.lab.container_ip('server')}",
        ]  # fmt: skip

    def add_host(self, name: str, role: str) -> None:
        """``name`` (a service or a client's user name), with its address, while it runs."""
        self.hosts.append(Host(name=name, role=role, addr=self.lab.container_ip(name)))

    def note(self, host: str, text: str) -> None:
        self.notes.append(Note(t=time.time(), host=host, text=text))

    def fault(self, host: str, text: str) -> None:
        self.faults.append(Fault(t=time.time(), host=host, text=text))

    def events(self) -> list[Event]:
        logs: dict[str, list[dict[str, object]]] = {}
        for h in self.hosts:
            path = self.wire_dir / f"{h.name}.jsonl"
            if h.role == "server":
                logs[h.name] = json_lines(read_file(self.lab, h.name, WIRE_LOG))
            elif path.exists():
                logs[h.name] = json_lines(path.read_text(encoding="utf-8"))
        return [*from_logs(self.hosts, logs), *self.notes, *self.faults]

    def write(self, stem: Path, title: str) -> list[Path]:
        events = self.events()
        datagrams = [e for e in events if isinstance(e, Datagram)]
        data = [d for d in datagrams if d.kind == "DATA"]
        via_server = sum(1 for d in data if "server" in (d.src, d.dst))
        footer = (
            f"{len(datagrams)} datagrams from the programs' own logs, {len(data)} DATA "
            f"({via_server} through the server); {len(self.notes)} lines printed; "
            f"{len(self.faults)} faults"
        )
        return pictures.write(stem, title, self.hosts, events, footer=footer)
