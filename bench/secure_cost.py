"""CPU cost of the secure-session layer: ``python -m bench.secure_cost``.

Prints the median and the minimum (microseconds) over repeated batches of: a whole IK handshake
(both sides, with the keepalive that confirms it), its two halves, a cookie reply, and encrypt /
decrypt of a 1200-byte payload (a DATA chunk). Standalone: not part of ``bench.run``. On a shared
machine the minimum is the better estimate of the uncontended cost.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from chat_protocol.secure.endpoint import HandshakeRequested, SecureEndpoint, SessionEstablished
from chat_protocol.secure.noise import KeyPair
from chat_protocol.secure.packets import HandshakeInit, parse_packet
from chat_protocol.secure.session import SecureSession
from chat_protocol.wire.messages import Addr

A: Addr = ("10.0.0.1", 1)
B: Addr = ("10.0.0.2", 2)


def batches(fn: Callable[[], object], *, reps: int, inner: int) -> tuple[float, float]:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner * 1e6)
    return statistics.median(samples), min(samples)


def main() -> None:
    a = SecureEndpoint(static=KeyPair.generate(os.urandom), random_bytes=os.urandom)
    b = SecureEndpoint(static=KeyPair.generate(os.urandom), random_bytes=os.urandom)
    clock = [0]

    def handshake() -> SecureSession:
        clock[0] += 1
        init = a.connect(b.static.public, b"hello", 0.0, timestamp=clock[0])
        requested = b.receive(init, A, 0.0)
        assert isinstance(requested, HandshakeRequested)
        established = a.receive(b.accept(requested.incoming, b"", 0.0), B, 0.0)
        assert isinstance(established, SessionEstablished)
        b.receive(established.session.encrypt(b"", 0.0), A, 0.0)
        return established.session

    def initiation() -> None:
        clock[0] += 1
        a.connect(b.static.public, b"hello", 0.0, timestamp=clock[0])

    results = {"handshake, both sides": batches(handshake, reps=31, inner=10)}
    results["initiator: build INIT"] = batches(initiation, reps=31, inner=20)
    clock[0] += 1
    packet = parse_packet(a.connect(b.static.public, b"hello", 0.0, timestamp=clock[0]))
    assert isinstance(packet, HandshakeInit)
    results["responder: read INIT"] = batches(
        lambda: b.responder.handle_initiation(packet, A, 0.0, under_load=False), reps=31, inner=20
    )
    results["responder: cookie reply"] = batches(
        lambda: b.responder.handle_initiation(packet, A, 0.0, under_load=True), reps=31, inner=200
    )
    sender = handshake()
    receiver = b.session(a.static.public, 0.0)
    assert receiver is not None
    payload = os.urandom(1200)
    results["encrypt 1200 B"] = batches(lambda: sender.encrypt(payload, 0.0), reps=31, inner=2000)
    results["encrypt+decrypt 1200 B (session)"] = batches(
        lambda: receiver.decrypt(sender.encrypt(payload, 0.0), A, 0.0), reps=31, inner=2000
    )
    results["encrypt+decrypt 1200 B (endpoint)"] = batches(
        lambda: b.receive(sender.encrypt(payload, 0.0), A, 0.0), reps=31, inner=2000
    )
    for name, (median, low) in results.items():
        print(f"{name:36} median {median:8.1f} us   min {low:8.1f} us")


if __name__ == "__main__":
    main()
