"""Congestion control through a bottleneck (issue 24): two network namespaces joined by a veth
pair shaped with tbf (``RATE_MBIT`` Mbit/s, a ``QUEUE_MS`` ms queue, both directions; this
kernel has tbf, not netem). The chat-server and the receivers are on one side, the senders on
the other, so every DATA crosses the bottleneck.

* **goodput**: one 8 MiB message alone; its bits / the time from send() to delivered / the
  link rate (``bottleneck_goodput_ratio``); its retransmitted DATA / all DATA it sent
  (``bottleneck_retransmit_share``).
* **fairness**: two senders start one 8 MiB message each at once, to two receivers; Jain's index
  of their goodputs over the time both ran (``bottleneck_jain``).
* **TCP beside it**: a plain TCP transfer through the same link while one 8 MiB message goes;
  the TCP bytes received while both ran / what the link carries in that time
  (``bottleneck_tcp_share``).

``python -m bench.bottleneck`` (root) prints one JSON object; ``sender``, ``tcp-sink`` and
``tcp-source`` are the children it starts in the namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import procs
from labkit.local import ChatServer
from labkit.netns import Netns
from labkit.util import run

RATE_MBIT = 20
QUEUE_MS = 50
IP_SEND, IP_RECV = "10.77.0.1", "10.77.0.2"
TCP_PORT = 47000
MESSAGE_BYTES = 8 * 1024 * 1024


@contextlib.contextmanager
def shaped_pair() -> Iterator[tuple[Netns, Netns]]:
    """Two namespaces, a veth pair between them, tbf on both ends; deleted on exit."""
    with Netns.create("chatbn-s") as a, Netns.create("chatbn-r") as b:
        va, vb = f"bn{os.getpid() % 100000}a", f"bn{os.getpid() % 100000}b"
        run(["ip", "link", "add", va, "netns", a.name, "type", "veth", "peer", vb, "netns", b.name])
        for ns, dev, ip in ((a, va, IP_SEND), (b, vb, IP_RECV)):
            run([*ns.prefix, "ip", "addr", "add", f"{ip}/24", "dev", dev])
            run([*ns.prefix, "ip", "link", "set", dev, "up"])
            shape = ["rate", f"{RATE_MBIT}mbit", "burst", "32kb", "latency", f"{QUEUE_MS}ms"]
            run([*ns.prefix, "tc", "qdisc", "add", "dev", dev, "root", "tbf", *shape])
        yield a, b


def _is_outcome(handle: int) -> Callable[[object], bool]:
    from chat_protocol.events import MessageDelivered, SendFailed

    def done(e: object) -> bool:
        return isinstance(e, MessageDelivered | SendFailed) and e.handle == handle

    return done


def _sender_main(args: argparse.Namespace) -> int:
    """In the senders' namespace: sign in, say ready, send on 'go', print what happened."""
    from bench.peer import SyncPeer
    from chat_protocol.events import MessageDelivered

    host, _, port = args.server.rpartition(":")
    peer = SyncPeer(args.name, (host, int(port)), bind_host=args.bind)
    peer.sign_in(timeout_s=15)
    # A first small message: the handshake with the receiver and its check of our name.
    for text in ("warm-up", "warm-up"):
        warm = peer.core.send(args.to, text, peer.now())
        peer.pump()
        peer.run_until(_is_outcome(warm), 30)
    print("ready", flush=True)
    sys.stdin.readline()
    text = "x" * args.bytes
    rtx0 = peer.core.stats.retransmissions
    start = time.time()
    h = peer.core.send(args.to, text, peer.now())
    peer.pump()
    ev = peer.run_until(_is_outcome(h), 120)
    end = time.time()
    # DATA sent (an older core without the count: the chunks and their retransmissions).
    chunks = -(-args.bytes // 1200)
    sent = sum(
        getattr(ob, "datagrams_sent", chunks + ob.retransmissions)
        for ob in peer.core.sending.outbound.values()
    )
    out = {
        "start": start,
        "end": end,
        "bytes": args.bytes,
        "delivered": isinstance(ev, MessageDelivered),
        "retransmissions": peer.core.stats.retransmissions - rtx0,
        "datagrams": sent,
    }
    print(json.dumps(out), flush=True)
    peer.close()
    return 0


def _tcp_sink_main(args: argparse.Namespace) -> int:
    """In the receivers' namespace: accept one connection, print (time, bytes so far) lines."""
    srv = socket.create_server((args.bind, TCP_PORT))
    print("ready", flush=True)
    conn, _ = srv.accept()
    total = 0
    last = 0.0
    while True:
        data = conn.recv(1 << 16)
        if not data:
            break
        total += len(data)
        now = time.time()
        if now - last >= 0.02:
            print(f"{now} {total}", flush=True)
            last = now
    print(f"{time.time()} {total}", flush=True)
    return 0


def _tcp_source_main(args: argparse.Namespace) -> int:
    """In the senders' namespace: send zeros to the sink for ``--seconds`` (with the congestion
    control ``--cc``, if given: else the kernel's default)."""
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.cc:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, args.cc.encode())
    conn.connect((args.to, TCP_PORT))
    block = bytes(1 << 16)
    end = time.time() + args.seconds
    while time.time() < end:
        conn.sendall(block)
    conn.close()
    return 0


Child = tuple[Any, procs.LineReader]
"""A child process and the reader of its output."""


def _json_line(child: Child) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(child[1].wait_for("{", 180))
    return got


PARTS = ("goodput", "fairness", "tcp")
"""The measurements of the module docstring, in the order they run."""


def measure(
    reps: int,
    message_bytes: int,
    parts: tuple[str, ...] = PARTS,
    tcp_cc: str | None = None,
) -> dict[str, Any]:
    """The figures of the module docstring, ``reps`` times each, of those in ``parts`` (the TCP
    flow with congestion control ``tcp_cc``, else the kernel's default)."""
    out: dict[str, list[float]] = {}
    if "goodput" in parts:
        out["goodput_ratio"] = []
        out["retransmit_share"] = []
    if "fairness" in parts:
        out["jain"] = []
    if "tcp" in parts:
        out["tcp_share"] = []
    rate_bps = RATE_MBIT * 1e6
    env = procs.loop_env("uvloop")
    me = [procs.PY, "-m", "bench.bottleneck"]
    with shaped_pair() as (a, b), tempfile.TemporaryDirectory(prefix="chatbn-") as tmp:
        server = ChatServer.start(
            Path(tmp) / "server.log",
            host=IP_RECV,
            prefix=b.prefix,
            command=[procs.PY, "-m", "chat_server"],
            env=env,
        )
        try:
            target = f"{IP_RECV}:{server.port}"
            tag = os.urandom(3).hex()
            recv_names = [f"bn-r{i}-{tag}" for i in range(2)]
            with contextlib.ExitStack() as stack:
                for name in recv_names:
                    r = stack.enter_context(
                        procs.child(
                            [
                                *b.prefix,
                                procs.PY,
                                "-m",
                                "bench.peer",
                                "--server",
                                target,
                                "--name",
                                name,
                            ]
                        )
                    )
                    procs.LineReader(r.stdout).wait_for("ready", 30)

                def senders(n: int, rep: int) -> list[Child]:
                    started = []
                    for i in range(n):
                        s = stack.enter_context(
                            procs.child(
                                [
                                    *a.prefix,
                                    *me,
                                    "sender",
                                    "--server",
                                    target,
                                    "--bind",
                                    IP_SEND,
                                    "--name",
                                    f"bn-s{i}-{rep}-{tag}",
                                    "--to",
                                    recv_names[i],
                                    "--bytes",
                                    str(message_bytes),
                                ]
                            )
                        )
                        reader = procs.LineReader(s.stdout)
                        reader.wait_for("ready", 60)
                        started.append((s, reader))
                    return started

                def go(children: list[Child]) -> list[dict[str, Any]]:
                    for c, _ in children:
                        c.stdin.write("go\n")
                        c.stdin.flush()
                    return [_json_line(c) for c in children]

                bits = message_bytes * 8
                for rep in range(reps):
                    if "goodput" in parts:
                        [alone] = go(senders(1, 3 * rep))
                        span = alone["end"] - alone["start"]
                        out["goodput_ratio"].append(bits / span / rate_bps)
                        out["retransmit_share"].append(
                            alone["retransmissions"] / max(1, alone["datagrams"])
                        )
                    if "fairness" in parts:
                        pair = go(senders(2, 3 * rep + 1))
                        both_end = min(x["end"] for x in pair)
                        both_start = max(x["start"] for x in pair)
                        rates = [bits / (x["end"] - x["start"]) for x in pair]
                        if both_end <= both_start:  # (one finished before the other began)
                            rates = [1.0, 0.0]
                        out["jain"].append(sum(rates) ** 2 / (2 * sum(x * x for x in rates)))
                    if "tcp" not in parts:
                        continue
                    sink = stack.enter_context(
                        procs.child([*b.prefix, *me, "tcp-sink", "--bind", IP_RECV])
                    )
                    sink_lines = procs.LineReader(sink.stdout)
                    sink_lines.wait_for("ready", 30)
                    [ours] = senders(1, 3 * rep + 2)
                    source = stack.enter_context(
                        procs.child(
                            [
                                *a.prefix,
                                *me,
                                "tcp-source",
                                *("--to", IP_RECV, "--seconds", "60"),
                                *(("--cc", tcp_cc) if tcp_cc else ()),
                            ]
                        )
                    )
                    time.sleep(1.0)  # TCP first, so it holds the link when ours starts
                    [mine] = go([ours])
                    procs.stop(source)
                    with contextlib.suppress(Exception):
                        sink.wait(10)
                    samples = [
                        (float(t), int(n))
                        for _, line in sink_lines.stamped
                        if len(cols := line.split()) == 2
                        for t, n in [cols]
                    ]
                    inside = [n for t, n in samples if mine["start"] <= t <= mine["end"]]
                    span = mine["end"] - mine["start"]
                    tcp_bits = (max(inside) - min(inside)) * 8 if len(inside) >= 2 else 0
                    out["tcp_share"].append(tcp_bits / span / rate_bps)
        finally:
            server.stop()
    return dict(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("sender")
    s.add_argument("--server", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--to", required=True)
    s.add_argument("--bind", required=True)
    s.add_argument("--bytes", type=int, default=MESSAGE_BYTES)
    k = sub.add_parser("tcp-sink")
    k.add_argument("--bind", required=True)
    o = sub.add_parser("tcp-source")
    o.add_argument("--to", required=True)
    o.add_argument("--seconds", type=float, default=60)
    o.add_argument("--cc", help="the TCP congestion control (default: the kernel's)")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--bytes", type=int, default=MESSAGE_BYTES)
    p.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma-separated, of %(default)s: the measurements to run",
    )
    p.add_argument(
        "--tcp-cc",
        help="congestion control of the TCP flow beside ours (bbr, cubic, reno: "
        "/proc/sys/net/ipv4/tcp_available_congestion_control; default: the kernel's)",
    )
    args = p.parse_args(argv)
    if args.cmd == "sender":
        return _sender_main(args)
    if args.cmd == "tcp-sink":
        return _tcp_sink_main(args)
    if args.cmd == "tcp-source":
        return _tcp_source_main(args)
    parts = tuple(x for x in args.parts.split(",") if x)
    if unknown := set(parts) - set(PARTS):
        p.error(f"--parts: unknown {', '.join(sorted(unknown))} (of {', '.join(PARTS)})")
    print(json.dumps(measure(args.reps, args.bytes, parts, args.tcp_cc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
