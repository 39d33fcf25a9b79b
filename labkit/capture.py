"""Capture every UDP datagram in one network namespace: ``python labkit/capture.py [--interface
IF] [--payload] OUT``, run inside it (``nsenter -t PID -n``, root), prints ``capturing`` once its
socket is open and writes one JSON line per datagram to OUT until SIGTERM::

    {"t": 1764990000.1234, "dir": "out", "src": "172.18.0.3:40211",
     "dst": "172.18.0.2:5000", "size": 256, "type": 129}

An AF_PACKET socket (cooked: no link header) on every interface but the loopback, so a
container's own healthcheck and Docker's DNS (both on ``lo``) are left out; ``dir`` is ``out``
for what the namespace sent. ``t`` is the kernel's receive timestamp (SO_TIMESTAMP, the wall
clock; the time read at once if the kernel gives none), ``size`` the UDP payload's bytes,
``type`` its first byte (the secure layer's packet type, sent in the clear): nothing is
decrypted. IPv4 only, as the lab's networks are. ``--interface IF``: that interface only (on
``lo``, where each datagram is seen twice, the incoming copy); ``--payload``: each line also
carries the datagram itself, ``"data"`` in hex (tests/e2e/test_capture_netns.py replays them).

Standard library only: it runs with the host's Python in the container's namespace, so the
images need nothing for it (:func:`labkit.trace.start_capture`).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import struct
import time

ETH_P_ALL = 0x0003
"""Every protocol: only such a socket sees what the namespace sends, not just what it gets."""
ETH_P_IP = 0x0800
DNS_PORT = 53
SO_TIMESTAMP = 29
"""Linux's SO_TIMESTAMP (asm-generic/socket.h): not in Python's socket module."""
_TIMEVAL = struct.Struct("@ll")


def capture(path: str, *, interface: str | None = None, payload: bool = False) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    if interface is not None:
        sock.bind((interface, 0))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
    sock.settimeout(0.1)
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with open(path, "w", encoding="utf-8") as out:
        print("capturing", flush=True)
        while not stop:
            try:
                pkt, ancillary, _, meta = sock.recvmsg(65535, 64)
            except TimeoutError:
                continue
            ifname, proto, pkttype = meta[0], meta[1], meta[2]
            if interface is None and ifname == "lo":
                continue
            if interface == "lo" and pkttype == socket.PACKET_OUTGOING:
                continue  # on lo every datagram is seen going out and coming in: keep one
            if proto != ETH_P_IP or len(pkt) < 28 or pkt[9] != socket.IPPROTO_UDP:
                continue
            ihl = (pkt[0] & 0x0F) * 4
            sport, dport, length = struct.unpack_from("!HHH", pkt, ihl)
            if DNS_PORT in (sport, dport):
                continue
            stamp = time.time()
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP:
                    sec, usec = _TIMEVAL.unpack_from(data)
                    stamp = sec + usec / 1e6
            data = pkt[ihl + 8 : ihl + length]
            record: dict[str, object] = {
                "t": stamp,
                "dir": "out" if pkttype == socket.PACKET_OUTGOING else "in",
                "src": f"{socket.inet_ntoa(pkt[12:16])}:{sport}",
                "dst": f"{socket.inet_ntoa(pkt[16:20])}:{dport}",
                "size": len(data),
                "type": data[0] if data else None,
            }
            if payload:
                record["data"] = data.hex()
            out.write(json.dumps(record) + "\n")
            out.flush()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="capture.py", description=__doc__.split("\n")[0])
    p.add_argument("out", help="the JSON lines file to write")
    p.add_argument("--interface", help="only this interface (default: all but lo)")
    p.add_argument("--payload", action="store_true", help="also write each datagram, in hex")
    args = p.parse_args(argv)
    capture(args.out, interface=args.interface, payload=args.payload)


if __name__ == "__main__":
    main()
