"""The chaos run's traffic: every client sends a message to a random other client at a steady
rate, as ``send PEER TEXT`` lines on its stdin.

The texts are drawn from the seed: ``m<n> <from>><to>`` and a body of words, mostly short, some
of several chunks (1-8 KiB), a few of many (16-64 KiB), with 2- and 3-byte UTF-8 characters among
them. A client that is not up at its turn (killed, starting again) skips it: the run's message
count is what the clients' histories say was sent, which the checker counts.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Sequence

from labkit.chaos.fleet import Fleet

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?-éüßжλ☃€"
SIZES: tuple[tuple[float, int, int], ...] = (
    (0.90, 8, 160),
    (0.09, 1024, 8 * 1024),
    (0.01, 16 * 1024, 64 * 1024),
)
"""(share, shortest, longest) of the body, in characters."""
LATE_S = 1.0
"""A client this far behind its schedule (it was down) starts afresh instead of catching up."""


class Traffic:
    def __init__(
        self, fleet: Fleet, names: Sequence[str], rate_per_client: float, seed: int
    ) -> None:
        if rate_per_client <= 0:
            raise ValueError(f"rate {rate_per_client} must be > 0")
        self.fleet = fleet
        self.names = list(names)
        self.period_s = 1.0 / rate_per_client
        self.rng = random.Random(f"traffic/{seed}")
        self.queued: Counter[str] = Counter()
        """Lines given to each client's stdin."""
        self.skipped: Counter[str] = Counter()
        """Turns a client missed because it was not up."""
        self.n = 0

    def body(self) -> str:
        r = self.rng.random()
        lo, hi = SIZES[-1][1:]
        for share, a, b in SIZES:
            if r < share:
                lo, hi = a, b
                break
            r -= share
        size = self.rng.randint(lo, hi)
        chars = self.rng.choices(ALPHABET, k=size)
        # A space now and then (never two in a row, never at either end).
        for i in range(3, size - 2, self.rng.randint(4, 12)):
            chars[i] = " "
        return "".join(chars)

    def line(self, sender: str) -> str:
        peer = self.rng.choice([n for n in self.names if n != sender])
        self.n += 1
        return f"send {peer} m{self.n} {sender}>{peer} {self.body()}"

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: each client's turn comes every ``1 / rate`` s, the clients'
        turns spread evenly over that period."""
        start = time.monotonic()
        step = self.period_s / len(self.names)
        next_at = {n: start + i * step for i, n in enumerate(self.names)}
        while not stop.is_set():
            name = min(next_at, key=next_at.__getitem__)
            wait = next_at[name] - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
            if self.fleet.send(name, self.line(name)):
                self.queued[name] += 1
            else:
                self.skipped[name] += 1
            now = time.monotonic()
            next_at[name] += self.period_s
            if next_at[name] < now - LATE_S:
                next_at[name] = now + self.period_s
