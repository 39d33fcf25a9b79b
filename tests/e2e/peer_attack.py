"""A hostile peer, run inside the test's network namespace: ``peer_attack.py [--claim NAME]
MODE HOST PORT [ARGS]``. It signs in as ``mallory`` (a real user: bob's address and key are one
LOOKUP away) and sends bob one ordinary message, so a secure session with bob is up and bob has
shown mallory's hello (bob now counts mallory's key as vouched for). With ``--claim NAME`` its
handshakes with peers claim NAME instead, as the unit tests' attacker does: the hello is
refused and nothing it sends is ever shown. Then it writes raw DATA to bob on that one
authenticated session, under the name bob has for it:

* ``sessions N``: N made-up sender sessions, each the first chunk of a 2-chunk message that
  never completes (``phase flood`` on stdout when it starts);
* ``repeat RATE SECONDS``: one 8 MiB message, every other chunk but the first (thousands of
  separate ranges held), then that message's chunk 1 again and again, both at RATE/s; stdout
  gets ``phase fresh``, ``phase repeat`` and ``phase done`` (flushed) as it goes, so the test
  can sample bob's CPU time at the boundaries;
* ``hoard BYTES SECONDS``: 4 MiB partial messages (never their first chunk), each under a
  fresh sender session, until BYTES of payload are sent or SECONDS have passed (``phase
  half`` on stdout at half of either).

``sessions`` and ``hoard`` send as fast as bob's socket takes them: the rate is cut when this
namespace's kernel counted datagrams dropped for a full socket buffer (``RcvbufErrors`` in
/proc/net/snmp) and raised while it counted none. Progress goes to stderr, one JSON line of
figures to stdout at the end. Needs the repository root on ``PYTHONPATH`` (for bench.peer).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator

from bench.peer import SyncPeer
from chat_protocol.const import CHUNK_PAYLOAD_BYTES
from chat_protocol.events import ClientEvent, MessageDelivered, SendFailed, ServerGone
from chat_protocol.secure.packets import PacketType
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Data, Hello

NAME = "mallory"
VICTIM = "bob"
TRANSPORT = bytes([PacketType.TRANSPORT.value])
DRAIN_EVERY = 256
"""Datagrams sent between two looks at our own socket (heartbeats, bob's ACKs)."""
ADAPT_EVERY_S = 0.05
BURST = 32
"""Datagrams sent back to back at most (bob's 1 MiB socket buffer holds hundreds)."""
ZEROS = b"\x00" * CHUNK_PAYLOAD_BYTES


def log(text: str) -> None:
    print(f"peer_attack: {text}", file=sys.stderr, flush=True)


def phase(name: str) -> None:
    print(f"phase {name}", flush=True)


def kernel_drops() -> int:
    """UDP datagrams this network namespace dropped because a socket's buffer was full."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    header, values = rows[0], rows[1]
    return int(values[header.index("RcvbufErrors")])


def chunk(
    sender: str, session: int, offset: int, total: int, *, seq: int = 0, msg_id: int = 1
) -> Data:
    size = min(CHUNK_PAYLOAD_BYTES, total - offset)
    payload = ZEROS if size == CHUNK_PAYLOAD_BYTES else ZEROS[:size]
    return Data(
        session=session, stream=1, base=0, seq=seq, msg_id=msg_id, offset=offset, total=total,
        sender=sender, payload=payload,
    )  # fmt: skip


class Pacer:
    """A token bucket at ``rate`` datagrams/s. ``adaptive``: every 50 ms the rate is cut by 30 %
    if the kernel dropped datagrams for a full socket buffer since the last look, else raised by
    10 % (between ``floor`` and ``ceiling``): the fastest rate bob's socket sustains."""

    def __init__(
        self, rate: float, *, adaptive: bool, floor: float = 1000, ceiling: float = 400_000
    ) -> None:
        self.rate = rate
        self.adaptive = adaptive
        self.floor, self.ceiling = floor, ceiling
        self.tokens = 0.0
        self.last = time.monotonic()
        self.next_adapt = self.last + ADAPT_EVERY_S
        self.drops_at_start = kernel_drops()
        self.drops_seen = self.drops_at_start

    def take(self) -> None:
        """Wait until one datagram may go."""
        while True:
            now = time.monotonic()
            self.tokens = min(float(BURST), self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.adaptive and now >= self.next_adapt:
                self.next_adapt = now + ADAPT_EVERY_S
                drops = kernel_drops()
                factor = 0.7 if drops > self.drops_seen else 1.1
                self.rate = min(self.ceiling, max(self.floor, self.rate * factor))
                self.drops_seen = drops
            if self.tokens >= 1:
                self.tokens -= 1
                return
            time.sleep(max(0.0002, (1 - self.tokens) / self.rate))

    def dropped(self) -> int:
        return kernel_drops() - self.drops_at_start


class Attacker:
    """mallory, signed in, with a secure session to bob that raw DATA is written on."""

    def __init__(self, host: str, port: int, claim: str | None) -> None:
        # No relay: bob, busy under the flood, may miss a keepalive, and the core would then
        # move the session to a relay pseudo-address that a raw sendto cannot reach.
        self.peer = SyncPeer(NAME, (host, port), bind_host=host, relay=False)
        self.peer.sign_in(10)
        core = self.peer.core
        self.sender = claim or NAME
        """The name bob has for our key (its handshake's claim), so the one our DATA carries:
        bob drops DATA naming anyone else before buffering anything."""
        if claim is not None:
            # What the unit tests' attacker does: the handshake claims a name that is not ours,
            # so nothing we send is ever shown and bob never counts our key as vouched for.
            core.links.intro = encode(Hello(req_id=core.session, name=claim))
        handle = core.send(VICTIM, "hello", self.peer.now())
        self.peer.pump()
        if claim is None:

            def answered(e: ClientEvent) -> bool:
                return isinstance(e, MessageDelivered | SendFailed) and e.handle == handle

            ev = self.peer.run_until(answered, 15)
            if isinstance(ev, SendFailed):
                raise SystemExit(f"peer_attack: bob did not take the hello: {ev.reason.name}")
        key = self._session_key(15)
        self.victim_key = key
        self.sent = 0
        self.payload_bytes = 0
        self.from_victim = 0
        """bob's TRANSPORT datagrams (its ACKs of our DATA): counted, not processed."""
        used = {core.session}
        self._fresh = (s for s in range(1, 2**32) if s not in used)
        shown = "shown" if claim is None else f"refused: we claimed {claim!r}"
        log(f"signed in as {NAME}, session with bob up (our hello {shown})")

    def _session_key(self, timeout_s: float) -> bytes:
        """bob's key, as the directory gave it (pinned on first use), once a session is up."""
        peer = self.peer
        deadline = peer.now() + timeout_s
        while True:
            key = peer.core.pins.get(VICTIM)
            if key is not None and peer.core.secure.session(key, peer.now()) is not None:
                return key
            if peer.now() > deadline:
                raise SystemExit("peer_attack: no secure session with bob")
            peer.step(0.05)

    def made_up_session(self) -> int:
        return next(self._fresh)

    def drain(self) -> None:
        """What came in: the server's datagrams and bob's handshakes go to the core (so
        heartbeats keep mallory signed in), bob's TRANSPORT datagrams are only counted. Then
        timers, and what the core queued goes out."""
        peer, core = self.peer, self.peer.core
        now = peer.now()
        while True:
            try:
                data, src = peer.sock.recvfrom(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
            addr = (src[0], src[1])
            if addr != peer.server and data[:1] == TRANSPORT:
                self.from_victim += 1
                continue
            core.receive_datagram(data, addr, now)
        at = core.next_timer()
        if at is not None and at <= peer.now():
            core.handle_timer(peer.now())
        peer.pump()
        for ev in peer.events:
            if isinstance(ev, ServerGone):
                raise SystemExit(f"peer_attack: mallory lost the server: {ev}")
        peer.events.clear()

    def send(self, d: Data) -> None:
        """One DATA, encrypted on the session with bob, straight to bob's address."""
        now = time.monotonic()
        session = self.peer.core.secure.session(self.victim_key, now)
        if session is None:
            raise SystemExit("peer_attack: the session with bob is gone")
        datagram = session.encrypt(encode(d), now)
        while True:
            try:
                self.peer.sock.sendto(datagram, session.remote_addr)
                break
            except BlockingIOError:
                time.sleep(0.0005)  # our own send buffer is full: wait, do not drop
        self.sent += 1
        self.payload_bytes += len(d.payload)
        if self.sent % DRAIN_EVERY == 0:
            self.drain()

    def run(self, datagrams: Iterator[Data], pacer: Pacer, until: float = float("inf")) -> float:
        """Send ``datagrams`` paced by ``pacer`` (stopping at monotonic time ``until``); the
        seconds it took."""
        start = time.monotonic()
        for d in datagrams:
            pacer.take()
            self.send(d)
            if self.sent % 10_000 == 0:
                log(f"{self.sent} sent, {pacer.rate:.0f}/s, kernel dropped {pacer.dropped()}")
                if time.monotonic() >= until:
                    break
        self.drain()
        return time.monotonic() - start

    def close(self) -> None:
        self.peer.close()


def sessions(attacker: Attacker, n: int) -> dict[str, object]:
    total = 2 * CHUNK_PAYLOAD_BYTES
    pacer = Pacer(20_000, adaptive=True)
    phase("flood")
    seconds = attacker.run(
        (chunk(attacker.sender, attacker.made_up_session(), 0, total) for _ in range(n)), pacer
    )
    phase("done")
    return {"sent": attacker.sent, "seconds": seconds, "kernel_dropped": pacer.dropped()}


def repeat(attacker: Attacker, rate: float, seconds: float) -> dict[str, object]:
    total = 8 * 1024 * 1024
    n = -(-total // CHUNK_PAYLOAD_BYTES)
    session = attacker.made_up_session()
    pacer = Pacer(rate, adaptive=False)
    phase("fresh")
    odd = (chunk(attacker.sender, session, i * CHUNK_PAYLOAD_BYTES, total) for i in range(1, n, 2))
    fresh_s = attacker.run(odd, pacer)
    fresh_sent = attacker.sent
    phase("repeat")
    again = chunk(attacker.sender, session, CHUNK_PAYLOAD_BYTES, total)
    end = time.monotonic() + seconds
    pacer = Pacer(rate, adaptive=False)

    def repeats() -> Iterator[Data]:
        while time.monotonic() < end:
            yield again

    repeat_s = attacker.run(repeats(), pacer)
    phase("done")
    return {
        "fresh_sent": fresh_sent,
        "fresh_seconds": fresh_s,
        "repeat_sent": attacker.sent - fresh_sent,
        "repeat_seconds": repeat_s,
        "kernel_dropped": kernel_drops() - pacer.drops_at_start,
    }


def hoard(attacker: Attacker, limit: int, seconds: float) -> dict[str, object]:
    total = 4 * 1024 * 1024
    n = -(-total // CHUNK_PAYLOAD_BYTES)
    pacer = Pacer(20_000, adaptive=True)
    start = time.monotonic()
    until = start + seconds
    messages = 0
    halfway = False

    def partials() -> Iterator[Data]:
        nonlocal messages, halfway
        while True:
            session = attacker.made_up_session()
            messages += 1
            for i in range(1, n):  # never the first chunk: the message never completes
                yield chunk(
                    attacker.sender, session, i * CHUNK_PAYLOAD_BYTES, total, msg_id=messages
                )
                now = time.monotonic()
                if attacker.payload_bytes >= limit or now >= until:
                    return
                if not halfway and (
                    2 * attacker.payload_bytes >= limit or now >= start + seconds / 2
                ):
                    halfway = True
                    phase("half")

    phase("hoard")
    took = attacker.run(partials(), pacer, until)
    phase("done")
    return {
        "sent": attacker.sent,
        "bytes": attacker.payload_bytes,
        "messages": messages,
        "seconds": took,
        "kernel_dropped": pacer.dropped(),
    }


def main(argv: list[str]) -> int:
    claim = None
    if argv[:1] == ["--claim"]:
        claim, argv = argv[1], argv[2:]
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    mode, host, port, *args = argv
    attacker = Attacker(host, int(port), claim)
    try:
        if mode == "sessions":
            figures = sessions(attacker, int(args[0]))
        elif mode == "repeat":
            figures = repeat(attacker, float(args[0]), float(args[1]))
        elif mode == "hoard":
            figures = hoard(attacker, int(args[0]), float(args[1]))
        else:
            print(f"unknown mode {mode!r}\n{__doc__}", file=sys.stderr)
            return 2
        figures["from_victim"] = attacker.from_victim
        figures["online"] = attacker.peer.core.online
    finally:
        attacker.close()
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
