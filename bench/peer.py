"""A :class:`ClientCore` driven by one real UDP socket in a tight loop (no event loop).

The benchmark's message sender (A) runs one in the measuring process; the receiver (B) runs
``python -m bench.peer`` in a process of its own: it signs in, prints ``ready HOST:PORT``, answers
DATA with ACKs until its stdin closes, then signs out and prints its counters as JSON. Each has a
key pair of its own and learns the server's key on first contact; everything between them and
with the server rides their secure sessions, as between two chat-clients.

The loop is the same for both: wait on the socket (``poll``) until a datagram arrives or the
core's next timer is due, feed every waiting datagram to the core, fire the timer if due, send
what the core queued. The first datagram of a wake-up is answered before the next is read (as
the asyncio shell answers each datagram: a lone DATA's ACK leaves without waiting for a read
that finds nothing); the rest of a burst get one answer together (one ACK for a batch of DATA).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import socket
import sys
import time
from collections import deque
from collections.abc import Callable

from chat_protocol.client.core import ClientCore
from chat_protocol.events import (
    ClientEvent,
    MessageReceived,
    SignedIn,
    SignInFailed,
    SignInFailure,
)
from chat_protocol.secure.noise import KeyPair
from chat_protocol.wire.messages import Addr

RCVBUF_BYTES = 1 << 20
SIGN_IN_ATTEMPTS = 3
"""Sign-ins started afresh when the server never answered one (bench.p2p's lossy namespaces)."""


class SyncPeer:
    def __init__(
        self, name: str, server: Addr, bind_host: str = "127.0.0.1", *, relay: bool = True
    ) -> None:
        """``relay=False``: never reach a peer through the directory's relay (a peer that
        stops answering stays at its address instead of moving to a pseudo-address)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((bind_host, 0))
        self.sock.setblocking(False)
        self.addr: Addr = self.sock.getsockname()
        # A fresh identity each run; the server's key is learned on first contact (KEY_REQUEST)
        # and pinned, as chat-client does with an empty key store.
        self.identity = KeyPair.generate(os.urandom)
        self.relay = relay
        self.core = self._new_core(name, server)
        self.server = server
        self.events: deque[ClientEvent] = deque()
        self._poll = select.poll()
        self._poll.register(self.sock.fileno(), select.POLLIN)
        self.first_peer_send_at: float | None = None
        """When the core first sent a datagram to anyone but the server since the last reset."""
        self.datagrams_in = 0
        self.datagrams_out = 0

    def _new_core(self, name: str, server: Addr) -> ClientCore:
        return ClientCore(
            name=name,
            server=server,
            identity=self.identity,
            clock_offset_s=time.time() - time.monotonic(),
            relay=self.relay,
        )

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def pump(self) -> None:
        now = self.now()
        for data, addr in self.core.datagrams_to_send(now):
            if self.first_peer_send_at is None and addr != self.server:
                self.first_peer_send_at = now
            try:
                self.sock.sendto(data, addr)
                self.datagrams_out += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass  # like a datagram lost on the way: the protocol's timers recover
        self.events.extend(self.core.events())

    def step(self, max_wait_s: float) -> None:
        """Wait up to ``max_wait_s`` (less if a timer is due sooner), then process what came."""
        now = self.now()
        wait = max_wait_s
        at = self.core.next_timer()
        if at is not None:
            wait = min(wait, at - now)
        if wait > 0:
            self._poll.poll(math.ceil(wait * 1000))
        # The first datagram of a wake-up is answered at once (a lone DATA's ACK, a lone ACK's
        # event: the round trip waits on them); the rest of a burst are answered together, one
        # ACK for them all. Stop at the first new event, as run_until waits for one.
        received = 0
        queued = len(self.events)
        while len(self.events) == queued:
            try:
                data, src = self.sock.recvfrom(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
            received += 1
            self.core.receive_datagram(data, (src[0], src[1]), self.now())
            if received == 1:
                self.pump()
        self.datagrams_in += received
        at = self.core.next_timer()
        due = at is not None and at <= self.now()
        if due:
            self.core.handle_timer(self.now())
        if received > 1 or due:
            self.pump()

    def run_until(self, done: Callable[[ClientEvent], bool], timeout_s: float) -> ClientEvent:
        """Step until an event satisfies ``done``; other events are dropped."""
        deadline = self.now() + timeout_s
        while True:
            while self.events:
                ev = self.events.popleft()
                if done(ev):
                    return ev
            left = deadline - self.now()
            if left <= 0:
                raise TimeoutError(f"{self.core.name}: no matching event within {timeout_s} s")
            self.step(min(left, 0.05))

    def sign_in(self, timeout_s: float = 5.0, attempts: int = SIGN_IN_ATTEMPTS) -> None:
        """Sign in; a sign-in the server never answered (every retry of the core lost, as at
        20 % loss each way) is started again with a fresh core and the same key, ``attempts``
        times in all."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        for attempt in range(attempts):
            if attempt:
                self.core = self._new_core(self.core.name, self.server)
            self.core.connect(self.now())
            self.pump()
            ev = self.run_until(lambda e: isinstance(e, SignedIn | SignInFailed), timeout_s)
            if not isinstance(ev, SignInFailed):
                return
            if ev.failure is not SignInFailure.NO_ANSWER or attempt == attempts - 1:
                raise RuntimeError(f"sign-in failed: {ev.failure.value}")

    def close(self, timeout_s: float = 2.0) -> None:
        try:
            if self.core.online:
                self.core.close(self.now())
                self.pump()
                deadline = self.now() + timeout_s
                while self.core.next_timer() is not None and self.now() < deadline:
                    self.step(0.05)
        finally:
            self.sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The receiving peer of the message benchmarks.")
    p.add_argument("--server", required=True, help="HOST:PORT of the chat-server")
    p.add_argument("--name", default="bench-b")
    args = p.parse_args(argv)
    host, _, port = args.server.rpartition(":")
    peer = SyncPeer(args.name, (host, int(port)), bind_host=host, relay=False)
    stdin_poll = select.poll()
    stdin_poll.register(sys.stdin.fileno(), select.POLLIN | select.POLLHUP)
    received = 0
    received_bytes = 0
    try:
        peer.sign_in()
        print(f"ready {peer.addr[0]}:{peer.addr[1]}", flush=True)
        last_stdin_check = 0.0
        while True:
            peer.step(0.05)
            for ev in peer.events:
                if isinstance(ev, MessageReceived):
                    received += 1
                    received_bytes += len(ev.text)
            peer.events.clear()
            now = peer.now()
            if now - last_stdin_check > 0.05:
                last_stdin_check = now
                if stdin_poll.poll(0) and not sys.stdin.readline():
                    break  # stdin closed: the benchmark is over
    finally:
        peer.close()
    stats = {"received": received, "received_bytes": received_bytes, **peer.core.stats.as_dict()}
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
