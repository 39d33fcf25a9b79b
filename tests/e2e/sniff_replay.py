"""Run inside a network namespace (as root): ``capture FILE`` records every UDP datagram on the
loopback until SIGTERM (AF_PACKET, cooked: no link header); ``replay FILE`` sends every recorded
datagram again, once from a fresh port and once with its original source address forged (a raw
socket with our own IPv4 and UDP headers). The capture file is JSON lines:
{"src": [ip, port], "dst": [ip, port], "data": hex}."""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys

ETH_P_IP = 0x0800


def capture(path: str) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sock.bind(("lo", 0))
    sock.settimeout(0.1)
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with open(path, "w") as out:
        print("capturing", flush=True)
        while not stop:
            try:
                pkt, meta = sock.recvfrom(65535)
            except TimeoutError:
                continue
            if meta[2] == socket.PACKET_OUTGOING:
                continue  # on lo every datagram is seen going out and coming in: keep one
            ihl = (pkt[0] & 0x0F) * 4
            if pkt[9] != socket.IPPROTO_UDP:
                continue
            src_ip, dst_ip = socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])
            sport, dport, length = struct.unpack("!HHH", pkt[ihl : ihl + 6])
            data = pkt[ihl + 8 : ihl + length]
            rec = {"src": [src_ip, sport], "dst": [dst_ip, dport], "data": data.hex()}
            out.write(json.dumps(rec) + "\n")
            out.flush()


def replay(path: str) -> None:
    fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fresh.bind(("127.0.0.1", 0))
    fresh.setblocking(False)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    biggest_reply = 0
    sent = 0
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    for rec in records:
        data = bytes.fromhex(rec["data"])
        (sip, sport), (dip, dport) = rec["src"], rec["dst"]
        fresh.sendto(data, (dip, dport))
        udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
            socket.inet_aton(sip), socket.inet_aton(dip),
        )  # fmt: skip
        raw.sendto(ip + udp, (dip, 0))
        sent += 2
        while True:  # what came back to the fresh port, against what it sent
            try:
                reply = fresh.recv(65535)
            except BlockingIOError:
                break
            biggest_reply = max(biggest_reply, len(reply) - len(data))
    print(json.dumps({"replayed": sent, "records": len(records), "excess": biggest_reply}))


if __name__ == "__main__":
    {"capture": capture, "replay": replay}[sys.argv[1]](sys.argv[2])
