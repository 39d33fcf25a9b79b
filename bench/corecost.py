"""What the sans-I/O cores alone cost: no sockets, no event loop, one process, a clock set by hand.

These numbers explain the socket benchmarks: the part of a round trip or of a heartbeat that is
the protocol's own Python work (the secure layer's encryption included), as opposed to system
calls and wake-ups. The cores are driven the way the shells drive them (feed one datagram, drain
datagrams and events, ask for the timer). Each figure is measured in several repetitions; the
result gives the median of them and, in ``spread``, their min / median / max.

* ServerCore: ``users`` users signed in by real handshakes (bench.signin: the client's own
  sign-in, HELLO in the initiation, then the HEARTBEAT that registers the user; the handshakes
  are spread over the fake clock, below the rate at which the server would answer cookies), then in
  each of ``--rounds`` rounds: every user's encrypted HEARTBEAT, LOOKUPs, the secure endpoint's
  sweep of its sessions, and the expiry sweep in which every user's entry comes due and is pushed
  back.
* The three cores of a direct message (sender, server, receiver; the clients know the server's
  key): ``send() -> LOOKUP -> reply -> DATA -> ACK -> delivered``; and a 1 MiB message.
* The secure layer per direct message: encrypt + decrypt (through ``SecureEndpoint.receive``, as
  the cores do) of a DATA and of its ACK at the sizes the cores produce for a small message.

``python -m bench.corecost`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.signin import SignIns
from chat_protocol.client.core import ClientCore
from chat_protocol.const import HANDSHAKES_PER_S_UNDER_LOAD, TOKEN_BYTES
from chat_protocol.events import MessageDelivered, SendFailed
from chat_protocol.secure.endpoint import HandshakeRequested, SecureEndpoint, SessionEstablished
from chat_protocol.secure.noise import KeyPair
from chat_protocol.secure.packets import TRANSPORT_OVERHEAD_BYTES
from chat_protocol.secure.session import SecureSession
from chat_protocol.server.core import ServerCore
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Addr, Heartbeat, HeartbeatAck, Lookup

SERVER: Addr = ("127.0.0.1", 5000)
SIGN_INS_PER_S = 0.75 * HANDSHAKES_PER_S_UNDER_LOAD
"""Sign-ins per second of the fake clock: below the rate at which the server answers cookies."""
CLOCK_OFFSET_S = 1.7e9
"""Fake clock -> wall clock, for the clients' handshake timestamps."""

Spread = dict[str, float]


def spread(samples: list[float]) -> Spread:
    return {
        "min": min(samples),
        "median": float(statistics.median(samples)),
        "max": max(samples),
        "n": float(len(samples)),
    }


def _addr(i: int) -> Addr:
    n = (1 << 24) + i
    return (f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", 40000)


def _feed(core: ServerCore, data: bytes, addr: Addr, now: float) -> list[tuple[bytes, Addr]]:
    core.receive_datagram(data, addr, now)
    core.events()
    out = core.datagrams_to_send(now)
    core.next_timer()
    return out


def _per_datagram(core: ServerCore, datagrams: list[bytes], now: float) -> float:
    """Seconds per datagram to feed each (the i-th from user i's address) and drain the core."""
    t0 = time.perf_counter()
    for i, data in enumerate(datagrams):
        core.receive_datagram(data, _addr(i), now)
        core.events()
        core.datagrams_to_send(now)
        core.next_timer()
    return (time.perf_counter() - t0) / len(datagrams)


def _timed(fn: Callable[[float], object], at: float) -> float:
    t0 = time.perf_counter()
    fn(at)
    return time.perf_counter() - t0


def server_costs(users: int, rounds: int) -> dict[str, Any]:
    core = ServerCore(identity=KeyPair.generate(os.urandom))
    key = core.identity.public
    sessions: list[SecureSession] = []
    tokens: list[bytes] = []
    chunk = max(1, users // 5)
    sign_in: list[float] = []  # server seconds per sign-in, per chunk of users
    spent = 0.0
    now = 0.0
    # The clients' own sign-in (bench.signin: the core's), one user at a time.
    signins = SignIns(server=SERVER, key=key, window=1, clock_offset_s=CLOCK_OFFSET_S)
    for i in range(users):
        now = i / SIGN_INS_PER_S
        signins.add(i, f"u{i}")
        out = signins.step(now)  # the initiation carrying the HELLO
        while out:
            answers: list[tuple[bytes, Addr]] = []
            for datagram, k in out:
                t0 = time.perf_counter()
                answers += _feed(core, datagram, _addr(k), now)
                spent += time.perf_counter() - t0
            out = []
            for datagram, _ in answers:  # the WELCOME, then the answer to the HEARTBEAT
                out += signins.receive(datagram, SERVER, now)  # that registers the user
        ((_, got),) = signins.signed_in()
        sessions.append(got.session)
        tokens.append(got.token)
        if (i + 1) % chunk == 0:
            sign_in.append(spent / chunk)
            spent = 0.0
    assert len(core.users) == users, (len(core.users), core.stats)
    last = now
    timeout_s = (
        core.heartbeat_interval_s()
        * core.timings.client_timeout_s
        / core.timings.heartbeat_interval_s
    )
    plain_hb = [encode(Heartbeat(token=t)) for t in tokens]
    n = min(users, 20_000)
    plain_lookup = [
        encode(Lookup(token=tokens[i], req_id=i, name=f"u{(i + 1) % users}")) for i in range(n)
    ]

    def heartbeats(at: float) -> float:
        datagrams = [s.encrypt(p, at) for s, p in zip(sessions, plain_hb, strict=True)]
        return _per_datagram(core, datagrams, at)

    def lookups(at: float) -> float:
        datagrams = [sessions[i].encrypt(plain_lookup[i], at) for i in range(n)]
        return _per_datagram(core, datagrams, at)

    # Line the expiry entries up (they were filed at sign-in, spread over the clock): every user
    # heartbeats, then one sweep pushes every entry back to the same moment `due`.
    heartbeats(last + 2.0)
    core.handle_timer(last + timeout_s + 0.05)  # (also the endpoint's first sweep)
    due = last + 2.0 + timeout_s
    hb: list[float] = []
    lk: list[float] = []
    sweep: list[float] = []
    repush: list[float] = []
    for _ in range(rounds):
        # Every round: heartbeats and lookups just before `due` (so every user's expiry moves
        # on), the endpoint's sweep alone (no expiry entry is due yet), then the expiry sweep
        # alone (every entry due, every user alive: each is pushed back), less than
        # ENDPOINT_SWEEP_S after the endpoint's sweep, so that does not run again in it.
        hb.append(heartbeats(due - 0.6))
        lk.append(lookups(due - 0.6))
        sweep.append(_timed(core.handle_timer, due - 0.5) / len(sessions))
        repush.append(_timed(core.handle_timer, due + 0.05) / users)
        assert len(core.users) == users
        due = due - 0.6 + timeout_s
    us = {
        "core_sign_in_us": [x * 1e6 for x in sign_in],
        "core_heartbeat_us": [x * 1e6 for x in hb],
        "core_lookup_us": [x * 1e6 for x in lk],
        "core_endpoint_sweep_us": [x * 1e6 for x in sweep],
        "core_expiry_repush_us": [x * 1e6 for x in repush],
    }
    return {
        **{k: statistics.median(v) for k, v in us.items()},
        "spread": {k: spread(v) for k, v in us.items()},
        "timeout_s": timeout_s,
        "users": users,
    }


class _Net:
    """Delivers every datagram at once, in order, between the three cores (one process); records
    the size of each datagram it moves."""

    def __init__(self) -> None:
        self.server = ServerCore(identity=KeyPair.generate(os.urandom))
        key = self.server.identity.public

        def client(name: str) -> ClientCore:
            return ClientCore(
                name=name,
                server=SERVER,
                identity=KeyPair.generate(os.urandom),
                server_key=key,
                clock_offset_s=CLOCK_OFFSET_S,
            )

        self.a_addr: Addr = ("127.0.0.2", 1)
        self.b_addr: Addr = ("127.0.0.3", 1)
        self.a = client("a")
        self.b = client("b")
        self.clients: dict[Addr, ClientCore] = {self.a_addr: self.a, self.b_addr: self.b}
        self.now = 0.0
        self.sizes: list[tuple[Addr, Addr, int]] = []
        self._wall0 = time.perf_counter()

    def tick(self) -> None:
        """Between two messages the fake clock moves on by the wall time the cores took since
        the last tick, as a shell's clock would (a frozen clock would make every message leave
        in the same instant, and the pacer, issue 24, hold them back: a wait no user sees)."""
        wall = time.perf_counter()
        self.now += wall - self._wall0
        self._wall0 = wall

    def _deliver(self, out: list[tuple[bytes, Addr]], src: Addr) -> None:
        for data, dst in out:
            self.sizes.append((src, dst, len(data)))
            if dst == SERVER:
                self.server.receive_datagram(data, src, self.now)
            else:
                self.clients[dst].receive_datagram(data, src, self.now)

    def settle(self) -> list[Any]:
        """Move datagrams until none is left; the clients' events, in order. A client timer
        due within ``_PACING_HORIZON_S`` (the pacer's: issue 24) is fired, the clock moved to
        it: a paced sender's wait is not work."""
        events: list[Any] = []
        moved = True
        while moved:
            out = self.server.datagrams_to_send(self.now)
            self.server.events()
            moved = bool(out)
            self._deliver(out, SERVER)
            for src, core in self.clients.items():
                out = core.datagrams_to_send(self.now)
                events.extend(core.events())
                moved = moved or bool(out)
                self._deliver(out, src)
            if not moved:
                for core in self.clients.values():
                    at = core.next_timer()
                    if at is not None and at <= self.now + _PACING_HORIZON_S:
                        self.now = max(self.now, at)
                        core.handle_timer(self.now)
                        moved = True
        return events


_PACING_HORIZON_S = 0.01


def _endpoints(now: float) -> tuple[SecureSession, SecureEndpoint, Addr, bytes]:
    """A session (sender side) and the endpoint that receives on it, from a handshake in
    memory; the sender's address and static public key."""
    a_addr: Addr = ("127.0.0.2", 1)
    a = SecureEndpoint(static=KeyPair.generate(os.urandom), random_bytes=os.urandom)
    b = SecureEndpoint(static=KeyPair.generate(os.urandom), random_bytes=os.urandom)
    requested = b.receive(a.connect(b.static.public, b"", now, timestamp=1), a_addr, now)
    assert isinstance(requested, HandshakeRequested)
    established = a.receive(b.accept(requested.incoming, b"", now), SERVER, now)
    assert isinstance(established, SessionEstablished)
    b.receive(established.session.encrypt(b"", now), a_addr, now)
    return established.session, b, a_addr, a.static.public


def handshake_costs(reps: int = 21, inner: int = 20) -> list[float]:
    """Microseconds, per repetition, of one whole Noise IK handshake between two endpoints in
    memory (the initiation built, read and answered, the answer read: every X25519 operation
    on a first send's critical path, and nothing else; the endpoints and their static keys are
    made beforehand, untimed): the floor under any first send."""
    a_addr: Addr = ("127.0.0.2", 1)
    samples = []
    for _ in range(reps):
        pairs = [
            (
                SecureEndpoint(static=KeyPair.generate(os.urandom), random_bytes=os.urandom),
                SecureEndpoint(static=KeyPair.generate(os.urandom), random_bytes=os.urandom),
            )
            for _ in range(inner)
        ]
        t0 = time.perf_counter()
        for a, b in pairs:
            requested = b.receive(a.connect(b.static.public, b"", 0.0, timestamp=1), a_addr, 0.0)
            assert isinstance(requested, HandshakeRequested)
            a.receive(b.accept(requested.incoming, b"", 0.0), SERVER, 0.0)
        samples.append((time.perf_counter() - t0) / inner * 1e6)
    return samples


def crypto_costs(plaintext_sizes: list[int], reps: int = 21, inner: int = 500) -> list[float]:
    """Microseconds, per repetition, to encrypt and decrypt (``SecureEndpoint.receive``) one
    datagram of each of ``plaintext_sizes``, summed."""
    sender, receiver, addr, _ = _endpoints(0.0)
    payloads = [os.urandom(n) for n in plaintext_sizes]
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            for p in payloads:
                receiver.receive(sender.encrypt(p, 0.0), addr, 0.0)
        samples.append((time.perf_counter() - t0) / inner * 1e6)
    return samples


def server_crypto_costs(
    request_bytes: int, reply_bytes: int, reps: int = 21, inner: int = 500
) -> list[float]:
    """Microseconds, per repetition, of the server's side of the secure layer for one request:
    ``SecureEndpoint.receive`` of the request (encrypted beforehand, untimed) and
    ``SecureEndpoint.send`` of the reply: the least any answer to an encrypted request costs."""
    client, server, addr, client_key = _endpoints(0.0)
    reply = os.urandom(reply_bytes)
    samples = []
    for _ in range(reps):
        requests = [client.encrypt(os.urandom(request_bytes), 0.0) for _ in range(inner)]
        t0 = time.perf_counter()
        for datagram in requests:
            server.receive(datagram, addr, 0.0)
            server.send(client_key, reply, 0.0)
        samples.append((time.perf_counter() - t0) / inner * 1e6)
    return samples


def client_costs(messages: int, bulk_bytes: int, bulk_reps: int) -> dict[str, Any]:
    net = _Net()
    net.a.connect(0.0)
    net.b.connect(0.0)
    net.settle()
    assert net.a.online and net.b.online

    def one(text: str) -> None:
        # A whole send, LOOKUP included (the figure issue 13 compares with earlier commits): no
        # cached answer (issue 24 lets a send to a live peer skip it).
        net.a.forget_answers()
        net.tick()
        h = net.a.send("b", text, net.now)
        for ev in net.settle():
            if isinstance(ev, MessageDelivered) and ev.handle == h:
                return
            if isinstance(ev, SendFailed):
                raise RuntimeError(ev.reason.value)
        raise RuntimeError("not delivered in one pass")

    for i in range(20):  # the handshake between the two clients, the receiver's lookup, ...
        one(f"warm-up {i}")
    # The datagrams of one small message, as the cores make them.
    net.sizes.clear()
    one("ping 000000")
    plain = {
        (src, dst): size - TRANSPORT_OVERHEAD_BYTES for src, dst, size in net.sizes
    }  # one datagram each way on each path for a small message
    if len(net.sizes) != 4 or len(plain) != 4:
        raise RuntimeError(f"a small message took other datagrams than expected: {net.sizes}")
    data_b, ack_b = plain[(net.a_addr, net.b_addr)], plain[(net.b_addr, net.a_addr)]
    lookup_b, reply_b = plain[(net.a_addr, SERVER)], plain[(SERVER, net.a_addr)]
    batches = 5
    per_batch = max(1, messages // batches)
    message: list[float] = []
    for b in range(batches):
        t0 = time.perf_counter()
        for i in range(per_batch):
            one(f"ping {b * per_batch + i:06d}")
        message.append((time.perf_counter() - t0) / per_batch * 1e6)
    big = "x" * bulk_bytes
    bulk = []
    for _ in range(bulk_reps):
        t0 = time.perf_counter()
        one(big)
        bulk.append((time.perf_counter() - t0) * 1e3)
    crypto = crypto_costs([data_b, ack_b])
    crypto_send = crypto_costs([lookup_b, reply_b, data_b, ack_b])
    hb_b = len(encode(Heartbeat(token=bytes(TOKEN_BYTES))))
    hb_ack_b = len(encode(HeartbeatAck(token=bytes(TOKEN_BYTES), heartbeat_ms=1500)))
    figures = {
        "core_message_us": message,
        "core_bulk_ms": bulk,
        "crypto_us_per_message": crypto,
        "crypto_send_us": crypto_send,
        "crypto_server_lookup_us": server_crypto_costs(lookup_b, reply_b),
        "crypto_server_heartbeat_us": server_crypto_costs(hb_b, hb_ack_b),
        "core_handshake_us": handshake_costs(),
    }
    return {
        **{k: statistics.median(v) for k, v in figures.items()},
        "spread": {k: spread(v) for k, v in figures.items()},
        "plaintext_bytes": {"data": data_b, "ack": ack_b, "lookup": lookup_b, "reply": reply_b},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--bulk-bytes", type=int, default=1 << 20)
    p.add_argument("--bulk-reps", type=int, default=3)
    args = p.parse_args(argv)
    server = server_costs(args.users, args.rounds)
    client = client_costs(args.messages, args.bulk_bytes, args.bulk_reps)
    result = {**server, **client, "spread": {**server["spread"], **client["spread"]}}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
