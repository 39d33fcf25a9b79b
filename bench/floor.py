"""The encrypted Python floor of the message benchmarks: what any program pays that drives a UDP
socket from Python and seals every datagram with the chat's AEAD, with no protocol at all.

Issue 24 judges the transport against ENet, a C library whose whole transfer runs in C and
encrypts nothing. This baseline shows how much of the gap no Python transport can close: two
processes pinned as bench.p2p's peers are (``procs.NEAR`` / ``procs.FAR``), each a ``poll`` loop
like bench.peer's, every datagram sealed and opened with ``chat_protocol.secure.cipher``'s
``encrypt_at`` / ``decrypt_at`` (ChaCha20-Poly1305 from ``cryptography``, a context per
direction, as a client's session keeps), of the sizes the chat's own datagrams have:

* ``rtt_us``: a ping-pong of a short message's DATA plaintext, answered by an ACK's plaintext;
* ``bulk_ms``: ``--bulk-bytes`` as the chat cuts them (``CHUNK_PAYLOAD_BYTES`` a datagram, plus
  the DATA header and the sender's name), at most ``SEND_WINDOW_CHUNKS`` unacknowledged; the
  receiver copies each payload into place and answers the first datagram of a wake-up at once
  and the rest of the burst with one cumulative ACK (the chat's policy); the message is decoded
  whole at the end, then acknowledged as complete.

No loss recovery, no congestion control, no replay window, no name, no ordering checks: a floor,
not a transport (it runs at 0 % loss only). ``python -m bench.floor`` prints one JSON object;
the ``server`` role is its child.
"""

from __future__ import annotations

import argparse
import json
import math
import select
import socket
import struct
import sys
import time
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bench import procs
from chat_protocol.const import CHUNK_PAYLOAD_BYTES, SEND_WINDOW_CHUNKS
from chat_protocol.secure.cipher import decrypt_at, encrypt_at
from chat_protocol.secure.packets import TRANSPORT_HEAD
from chat_protocol.wire.build import encode
from chat_protocol.wire.messages import Ack, Data

KEY_TO_SERVER = bytes(range(32))
KEY_TO_CLIENT = bytes(range(32, 64))
"""Fixed keys: a floor measures work, not secrecy (both ends must agree without a handshake)."""

HEAD = TRANSPORT_HEAD
"""A TRANSPORT datagram's head: kind (in the type byte, the associated data), 0, nonce; then
the sealed plaintext. A floor datagram is as long as the chat's carrying the same plaintext."""
PING, PONG, CHUNK, ACK, QUIT = 1, 2, 3, 4, 5
ACKED = struct.Struct("!II")
"""A chunk's first plaintext bytes: its index, the message's chunks; an ACK's: the chunks held,
the message's chunks."""
SENDER = "bench-a-00000000"
"""A sender's name as bench.p2p's has it."""


def _data_plaintext(payload: bytes) -> int:
    """The bytes of the chat's DATA plaintext carrying ``payload`` (built by the chat's codec)."""
    data = Data(
        session=0, stream=0, base=0, seq=0, pn=0, msg_id=0, offset=0, total=len(payload),
        sender=SENDER, payload=payload,
    )  # fmt: skip
    return len(encode(data))


DATA_OVERHEAD = _data_plaintext(b"x") - 1
"""A DATA plaintext's bytes besides its payload."""
PING_PLAINTEXT = _data_plaintext(b"ping 000000")
ACK_PLAINTEXT = len(
    encode(Ack(session=0, stream=0, seq=0, complete=False, ranges=((0, 1),), pns=((0, 1),)))
)
"""An ACK with one byte range and one packet-number range, as most of the chat's are."""


class Sealer:
    """One direction's AEAD context and nonce counter."""

    def __init__(self, key: bytes) -> None:
        self.aead = ChaCha20Poly1305(key)
        self.n = 0

    def seal(self, kind: int, plaintext: bytes) -> bytes:
        self.n += 1
        head = HEAD.pack(kind, 0, self.n)
        return head + encrypt_at(self.aead, self.n, head[:1], plaintext)


def open_datagram(aead: ChaCha20Poly1305, data: bytes) -> tuple[int, bytes]:
    kind, _, n = HEAD.unpack_from(data)
    return kind, decrypt_at(aead, n, data[:1], data[HEAD.size :])


def _wait(poll: select.poll, timeout_s: float) -> None:
    poll.poll(max(0, math.ceil(timeout_s * 1000)))


def server(host: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((host, 0))
    s.setblocking(False)
    print(f"ready {s.getsockname()[1]}", flush=True)
    opener = ChaCha20Poly1305(KEY_TO_SERVER)
    out = Sealer(KEY_TO_CLIENT)
    poll = select.poll()
    poll.register(s.fileno(), select.POLLIN)
    pad = bytes(ACK_PLAINTEXT - ACKED.size)
    buf = bytearray()
    held = total = 0

    def ack(addr: Any) -> None:
        """The chunks held so far, of the message's ``total``, to ``addr``."""
        s.sendto(out.seal(ACK, ACKED.pack(held, total) + pad), addr)

    while True:
        _wait(poll, 1.0)
        received = 0
        addr: Any = None
        while True:
            try:
                data, addr = s.recvfrom(2048)
            except BlockingIOError:
                break
            kind, plain = open_datagram(opener, data)
            if kind == QUIT:
                return 0
            if kind == PING:
                s.sendto(out.seal(PONG, bytes(ACK_PLAINTEXT)), addr)
                continue
            idx, count = ACKED.unpack_from(plain)  # a chunk: its index, the message's chunks
            if held == 0:
                total = count
                buf = bytearray(count * CHUNK_PAYLOAD_BYTES)
            payload = plain[DATA_OVERHEAD:]
            start = idx * CHUNK_PAYLOAD_BYTES
            buf[start : start + len(payload)] = payload
            held += 1
            received += 1
            if held == total:
                bytes(buf).decode()  # the whole message, as the chat hands it over
                ack(addr)
                held = received = 0
            elif received == 1:  # the first of a wake-up at once, the rest of it together
                ack(addr)
        if received > 1:
            ack(addr)


def client(host: str, pings: int, warmup: int, bulk_bytes: int, bulk_reps: int) -> dict[str, Any]:
    with procs.far_server("bench.floor", "server", host) as port:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.connect((host, port))
        s.setblocking(False)
        out = Sealer(KEY_TO_SERVER)
        opener = ChaCha20Poly1305(KEY_TO_CLIENT)
        poll = select.poll()
        poll.register(s.fileno(), select.POLLIN)
        clock = time.perf_counter

        def answer(deadline: float) -> tuple[int, bytes]:
            while True:
                try:
                    return open_datagram(opener, s.recv(2048))
                except BlockingIOError:
                    left = deadline - clock()
                    if left <= 0:
                        raise TimeoutError("the floor's server did not answer") from None
                    _wait(poll, left)

        ping = bytes(PING_PLAINTEXT)

        def round_trip() -> float:
            t0 = clock()
            s.send(out.seal(PING, ping))
            answer(t0 + 5)
            return clock() - t0

        def bulk() -> float:
            text = "x" * bulk_bytes
            t0 = clock()
            data = text.encode()  # as the chat's send() takes a str
            count = -(-len(data) // CHUNK_PAYLOAD_BYTES)
            head = bytes(DATA_OVERHEAD - ACKED.size)
            sent = acked = 0
            while acked < count:
                while sent < count and sent - acked < SEND_WINDOW_CHUNKS:
                    chunk = data[sent * CHUNK_PAYLOAD_BYTES : (sent + 1) * CHUNK_PAYLOAD_BYTES]
                    s.send(out.seal(CHUNK, ACKED.pack(sent, count) + head + chunk))
                    sent += 1
                kind, plain = answer(t0 + 30)
                if kind == ACK:
                    acked = max(acked, ACKED.unpack_from(plain)[0])
            return clock() - t0

        try:
            for _ in range(warmup):
                round_trip()
            rtt_us = [round_trip() * 1e6 for _ in range(pings)]
            bulk()  # a warm-up transfer
            bulk_ms = [bulk() * 1e3 for _ in range(bulk_reps)]
        finally:
            s.send(out.seal(QUIT, b""))
            s.close()
    return {"rtt_us": rtt_us, "bulk_ms": bulk_ms, "bulk_bytes": bulk_bytes}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("role", nargs="?", choices=("client", "server"), default="client")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--pings", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--bulk-bytes", type=int, default=1 << 20)
    p.add_argument("--bulk-reps", type=int, default=5)
    args = p.parse_args(argv)
    if args.role == "server":
        return server(args.host)
    result = client(args.host, args.pings, args.warmup, args.bulk_bytes, args.bulk_reps)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
