"""Run inside a network namespace (as root): ``replay FILE`` sends every datagram of a capture
(``labkit/capture.py --interface lo --payload FILE``: JSON lines with "src" and "dst" as
"ip:port" and "data" in hex) again, once from a fresh port and once with its original source
address forged (a raw socket with our own IPv4 and UDP headers)."""

from __future__ import annotations

import json
import selectors
import socket
import struct
import sys

QUIET_S = 1.0  # a fresh port that has heard nothing for this long is taken to have its answer


def _endpoint(text: str) -> tuple[str, int]:
    ip, port = text.rsplit(":", 1)
    return ip, int(port)


def replay(path: str) -> None:
    """Each record goes once from its own fresh port (so every reply that port hears answers
    exactly that one datagram) and once with its source forged. ``excess`` is the most any fresh
    port heard beyond the size of the one datagram it sent: an amplification factor above 1
    shows as a positive number."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sent = 0
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    fresh: dict[socket.socket, int] = {}  # fresh port -> size of the one datagram it sent
    for rec in records:
        data = bytes.fromhex(rec["data"])
        sip, sport = _endpoint(rec["src"])
        dip, dport = _endpoint(rec["dst"])
        port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        port.bind(("127.0.0.1", 0))
        port.setblocking(False)
        port.sendto(data, (dip, dport))
        fresh[port] = len(data)
        udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
            socket.inet_aton(sip), socket.inet_aton(dip),
        )  # fmt: skip
        raw.sendto(ip + udp, (dip, 0))
        sent += 2
    heard = dict.fromkeys(fresh, 0)
    sel = selectors.DefaultSelector()  # epoll: more ports than select() can watch
    for port in fresh:
        sel.register(port, selectors.EVENT_READ, port)
    while ready := sel.select(QUIET_S):  # until every fresh port has been quiet for QUIET_S
        for key, _ in ready:
            port = key.data
            heard[port] += len(port.recv(65535))
    sel.close()
    excess = max((heard[p] - size for p, size in fresh.items()), default=0)
    answered = sum(1 for n in heard.values() if n)
    for port in fresh:
        port.close()
    print(
        json.dumps(
            {"replayed": sent, "records": len(records), "answered": answered, "excess": excess}
        )
    )


if __name__ == "__main__":
    {"replay": replay}[sys.argv[1]](sys.argv[2])
