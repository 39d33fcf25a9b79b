"""``make trace`` (``python -m labkit.trace``): two client containers exchange one message,
first contact included, while every datagram is captured in each container's network
namespace; the result is drawn as a sequence diagram in ``traces/`` (PNG, SVG, text).

How a datagram is known:

- **Captured**: :mod:`labkit.capture` (AF_PACKET, the host's Python run in each container's
  namespace through ``nsenter``: nothing is installed in the images) records every UDP
  datagram leaving or entering the server, alice and bob.
- **Labelled by its sender**: each program runs with ``CHAT_WIRE_LOG`` (``chat_shell.wirelog``)
  and logs every datagram it sends with its kind (the secure packet type, or the kind of the
  message a TRANSPORT datagram carries, from the core as it seals it). A captured datagram
  leaving host H takes the kind of the line of H's log with the same peer and size, closest
  in time (within :data:`MATCH_WINDOW_S`). Nothing is decrypted.
- **Arrival**: the same datagram (addresses and size) captured entering its receiver.

So that the capture sees a client's very first datagram, each client container starts a shell
that waits (bounded) for a file, created once the capture of its namespace runs; then it
``exec``s ``chat-client``.

Exit status 1 if any DATA datagram left or reached the server, if a datagram the server's
namespace saw has no sender's label, or if no DATA went from alice to bob at all (a check
that could not fail is no check).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit import pictures
from labkit.compose import Compose
from labkit.pictures import Datagram, Host
from labkit.procs import Reaper
from labkit.terminal import PipedClient
from labkit.util import ROOT, LabError, wait_until

CAPTURER = Path(__file__).with_name("capture.py")
TRACES = ROOT / "traces"
MATCH_WINDOW_S = 1.0
"""A captured datagram and its sender's log line are at most this far apart."""
WIRE_LOG = "/tmp/wire.jsonl"
"""Where each program in the lab writes its wire log (inside its container)."""
GO_FILE = "/tmp/capture-running"
GATE_WAIT_S = 60
"""How long a client's start waits for its capture (then it exits 97)."""
GATE = (
    f'i=0; while [ ! -e {GO_FILE} ]; do i=$((i+1)); [ "$i" -gt {GATE_WAIT_S * 20} ] && exit 97; '
    'sleep 0.05; done; exec chat-client "$@"'
)
MESSAGE = "hello bob, this is alice"
IN_FLIGHT_S = 0.5
"""A datagram sent this close to the captures' end and not seen arriving is left out."""
SERVER_ENV = "CHAT_SERVER_WIRE_LOG"
"""compose.yaml passes it to the server as CHAT_WIRE_LOG."""


class Capture:
    """The capturer running in one container's network namespace."""

    def __init__(self, lab: Compose, ref: str, workdir: Path, reaper: Reaper) -> None:
        self.ref = ref
        self.path = workdir / f"capture-{ref}.jsonl"
        pid = lab.container_pid(ref)
        self.proc = subprocess.Popen(
            ["nsenter", "-t", str(pid), "-n", sys.executable, str(CAPTURER), str(self.path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        reaper.track(self.proc, f"capture of {ref}", lambda: "")
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # bounded: the capturer prints or exits
        if line != "capturing":
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise LabError(f"the capture in {ref}'s namespace did not start: {line!r} {err}")

    def records(self) -> list[dict[str, object]]:
        return json_lines(self.path.read_text(encoding="utf-8") if self.path.exists() else "")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


def read_file(lab: Compose, ref: str, path: str) -> str:
    """A file of a container, running or stopped (the docker SDK's archive)."""
    import docker.errors

    try:
        stream, _ = lab.container(ref).get_archive(path)
    except docker.errors.NotFound:
        return ""
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        return member.read().decode("utf-8", "replace") if member else ""


def json_lines(text: str) -> list[dict[str, object]]:
    """The complete lines of a JSON-lines file that may be being written (a last line without
    its newline is left for the next read)."""
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


@dataclass
class Matched:
    datagrams: list[Datagram]
    unlabelled: list[str]
    """Datagrams captured leaving a host whose own log has no line for them."""


def match(
    hosts: Sequence[Host],
    captures: dict[str, list[dict[str, object]]],
    logs: dict[str, list[dict[str, object]]],
) -> Matched:
    """Pair each datagram captured leaving a host with its sender's log line (peer, size,
    nearest time) and with its capture entering the receiver (addresses, size, first after)."""
    by_ip = {h.addr: h.name for h in hosts}
    used_log: set[tuple[str, int]] = set()
    used_in: set[tuple[str, int]] = set()
    out: list[Datagram] = []
    unlabelled: list[str] = []
    for h in hosts:
        for rec in captures.get(h.name, []):
            if rec["dir"] != "out":
                continue
            t, size = float(str(rec["t"])), int(str(rec["size"]))
            dst_ip = str(rec["dst"]).rsplit(":", 1)[0]
            best: tuple[float, int] | None = None
            for i, line in enumerate(logs.get(h.name, [])):
                if line["dir"] != "out" or (h.name, i) in used_log:
                    continue
                if line["peer"] != rec["dst"] or int(str(line["size"])) != size:
                    continue
                gap = abs(float(str(line["t"])) - t)
                if gap <= MATCH_WINDOW_S and (best is None or gap < best[0]):
                    best = (gap, i)
            detail = ""
            if best is None:
                kind = f"unlabelled-0x{int(str(rec['type'] or 0)):02x}"  # one word: a column
                unlabelled.append(f"{h.name} -> {rec['dst']} {size} B at {t:.3f}")
            else:
                used_log.add((h.name, best[1]))
                kind = str(logs[h.name][best[1]]["kind"])
                detail = str(logs[h.name][best[1]].get("detail", ""))
            receiver = by_ip.get(dst_ip, dst_ip)
            arrived = None
            for j, got in enumerate(captures.get(receiver, [])):
                if (receiver, j) in used_in or got["dir"] != "in":
                    continue
                same = got["src"] == rec["src"] and got["dst"] == rec["dst"] and got["size"] == size
                if same and float(str(got["t"])) >= t - 0.05:
                    used_in.add((receiver, j))
                    arrived = float(str(got["t"]))
                    break
            out.append(
                Datagram(
                    sent=t, arrived=arrived, src=h.name, dst=receiver, kind=kind, size=size,
                    detail=detail,
                )
            )  # fmt: skip
    out.sort(key=lambda d: d.sent)
    return Matched(out, unlabelled)


def verdict(hosts: Sequence[Host], matched: Matched, server: str = "server") -> list[str]:
    """What is wrong with the trace (empty: DATA went only between clients, and some did)."""
    problems = []
    for d in matched.datagrams:
        if d.kind == "DATA" and server in (d.src, d.dst):
            problems.append(f"a DATA datagram touched the server: {d.src} -> {d.dst}")
        if d.kind.startswith("unlabelled") and server in (d.src, d.dst):
            problems.append(f"the server's datagram {d.src} -> {d.dst} has no sender's label")
    clients = {h.name for h in hosts if h.role == "client"}
    if not any(d.kind == "DATA" and {d.src, d.dst} <= clients for d in matched.datagrams):
        problems.append("no DATA datagram went between the clients")
    return problems


def start_gated(lab: Compose, name: str, workdir: Path) -> PipedClient:
    """``docker compose run`` of a client whose ``chat-client`` waits for :data:`GO_FILE`."""
    # The server's address, not its name: no DNS on the wire, and no start that fails when
    # Docker's resolver is slow on a loaded machine.
    argv = lab.argv(
        "run", "--rm", "--name", lab.client_container_name(name), "-T",
        "-e", f"CHAT_WIRE_LOG={WIRE_LOG}", "-e", f"CHAT_SERVER={lab.container_ip('server')}",
        "--entrypoint", "sh", "client", "-c", GATE, "gate", "-u", name,
    )  # fmt: skip
    return PipedClient.spawn(
        lab.reaper, name, argv, workdir, env=lab.env, cwd=ROOT, timeout=20, start_timeout=60
    )


def running(lab: Compose, name: str) -> bool:
    try:
        return lab.container(name).status == "running" and lab.container_pid(name) > 0
    except LookupError:
        return False


def trace(project: str, out_dir: Path, wait_s: float = 30.0) -> int:
    if os.geteuid() != 0:
        print(
            "trace: capturing needs root (nsenter into each container's network namespace); "
            "run make trace as root",
            file=sys.stderr,
        )
        return 1
    lab = Compose(project, env={SERVER_ENV: WIRE_LOG})
    work = ROOT / ".lab" / "trace"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    captures: dict[str, Capture] = {}
    try:
        print(f"== the server (compose project {project}), its namespace captured")
        lab.up()
        captures["server"] = Capture(lab, "server", work, lab.reaper)
        clients: dict[str, PipedClient] = {}
        names = ("bob", "alice")
        print("== alice's and bob's containers start; each namespace is captured first")
        for name in names:
            clients[name] = start_gated(lab, name, work)
        for name in names:
            wait_until(lambda n=name: running(lab, n), wait_s, f"{name}'s container to run")  # type: ignore[misc]
            captures[name] = Capture(lab, name, work, lab.reaper)
        for name in names:  # bob first: he is online when alice looks him up
            code, output = lab.exec(name, ["touch", GO_FILE])
            if code != 0:
                raise LabError(f"touch {GO_FILE} in {name}: {output}")
            clients[name].wait_signed_in(wait_s)
        print("== alice sends bob one message (first contact: LOOKUP, handshake, DATA, ACK)")
        clients["alice"].feed(f"send bob {MESSAGE}\n".encode())
        clients["bob"].wait_stdout(MESSAGE, wait_s)
        hosts = [
            Host(name=n, role="server" if n == "server" else "client", addr=lab.container_ip(n))
            for n in ("server", "alice", "bob")
        ]

        def current() -> Matched:
            logs = {n: json_lines(read_file(lab, n, WIRE_LOG)) for n in captures}
            return match(hosts, {n: c.records() for n, c in captures.items()}, logs)

        def acked(m: Matched) -> bool:
            acks = [d for d in m.datagrams if d.kind == "ACK" and d.src == "bob"]
            return bool(acks) and all(d.arrived is not None for d in acks)

        # Bob's ACK reached alice: the exchange is complete on the wire. If it never does, the
        # picture is drawn all the same (it shows what happened), and the trace fails.
        late: list[str] = []
        try:
            wait_until(lambda: acked(current()), wait_s, "bob's ACK to reach alice", interval=0.3)
        except AssertionError as exc:
            late.append(str(exc).splitlines()[0])
        stopped_at = time.time()
        for c in captures.values():
            c.stop()
        matched = current()
        # What left just before the captures stopped may have arrived after: not "lost".
        matched.datagrams = [
            d
            for d in matched.datagrams
            if d.arrived is not None or d.sent < stopped_at - IN_FLIGHT_S
        ]
        problems = late + verdict(hosts, matched)
        data = [d for d in matched.datagrams if d.kind == "DATA"]
        between = sum(1 for d in data if {d.src, d.dst} == {"alice", "bob"})
        via_server = sum(1 for d in data if "server" in (d.src, d.dst))
        footer = (
            f"{len(matched.datagrams)} datagrams captured in 3 network namespaces, each labelled "
            f"from its sender's own log; {len(data)} DATA, {between} of them between alice and "
            f"bob; DATA that touched the server: {via_server}"
        )
        title = "make trace: alice sends bob one message, first contact included"
        written = pictures.write(out_dir / "trace", title, hosts, matched.datagrams, footer=footer)
        print(f"== {footer}")
        for path in written:
            print(f"   wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        for problem in problems + [f"unlabelled: {u}" for u in matched.unlabelled]:
            print(f"trace: {problem}", file=sys.stderr)
        return 1 if problems else 0
    except (LabError, AssertionError) as exc:
        print(f"trace: error: {exc}", file=sys.stderr)
        print(f"trace: the captures so far are in {work}", file=sys.stderr)
        return 1
    finally:
        for c in captures.values():
            try:
                c.stop()
            except subprocess.TimeoutExpired:
                c.proc.kill()
        lab.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.trace", description=__doc__)
    parser.add_argument("-p", "--project", default=f"p2p-chat-trace-{uuid.uuid4().hex[:6]}")
    parser.add_argument("-o", "--out", type=Path, default=TRACES, help="directory (%(default)s)")
    parser.add_argument("--wait", type=float, default=30.0, help="bound of each step, seconds")
    args = parser.parse_args(argv)
    return trace(args.project, args.out, args.wait)


if __name__ == "__main__":
    sys.exit(main())
