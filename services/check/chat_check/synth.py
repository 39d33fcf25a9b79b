"""A simulated run: the histories correct clients would write, for testing the checker.

A discrete-event simulation of a few clients keeps the README's promise by construction: a
message is shown at most once, in order, with the text sent; "delivered" comes only after the
receiver showed it; everything else is reported not delivered, unless the sender crashed first.
It mixes in the cases the checker must accept: messages not delivered that were shown anyway
(their acknowledgement lost: "recovered"), sends to unknown names, case-variant names, a client
killed mid-run (its history ends without ``exit``, a shown message and an unshown one still
unresolved) and restarted into the same file, and a client that exits and starts again into a
second file. The records are made by :class:`~chat_history.RecordBuilder`, as the real
client's are.

Deterministic for a given seed and :class:`SimConfig`.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from chat_history import RawRecord, Reason, RecordBuilder, message_id, text_digest

DELIVERED = "delivered"
TIMEOUT = "timeout"
RECOVERED = "recovered"
NO_SUCH_USER = "no_such_user"


@dataclass(frozen=True, kw_only=True, slots=True)
class SimConfig:
    clients: tuple[str, ...] = ("alice", "Bob", "carol", "dave", "Erin", "frank")
    """At least four: the first two carry the scripted opening, the third crashes, the fourth
    restarts."""
    messages: int = 60
    """Random sends, besides the eight scripted ones."""
    mean_gap_s: float = 0.05
    p_timeout: float = 0.08
    """A send whose every datagram is lost: reported not delivered, never shown."""
    p_recovered: float = 0.08
    """Shown, but every acknowledgement lost: reported not delivered."""
    p_no_such_user: float = 0.04
    crash: bool = True
    """The third client is killed at 40 % of the run and restarted into the same file."""
    restart: bool = True
    """The fourth client exits at 50 % of the run and starts again, writing a second file."""
    timeout_s: float = 10.0


@dataclass(kw_only=True, slots=True)
class Run:
    files: dict[str, list[RawRecord]]
    """File name → its records in order."""
    crashed: list[tuple[str, str]] = field(default_factory=list)
    """(client, incarnation) of each incarnation killed."""

    @property
    def records(self) -> int:
        return sum(map(len, self.files.values()))


class _Client:
    __slots__ = ("alive", "builder", "exiting", "name", "online", "out", "pending",
                 "restart_file", "seq")  # fmt: skip

    def __init__(self, name: str, builder: RecordBuilder, out: list[RawRecord]) -> None:
        self.name = name
        self.builder = builder
        self.out = out
        self.alive = True
        self.online = False
        self.exiting = False
        self.pending = 0
        self.seq = 0
        self.restart_file = ""
        """Where the next incarnation writes, if this one is to exit mid-run and start again."""


class _Msg:
    __slots__ = ("ack_s", "id", "plan", "sender", "sent_at", "target", "text", "to")

    def __init__(self, sender: _Client, mid: str, to: str, text: str, plan: str, sent_at: float,
                 target: _Client | None, ack_s: float | None) -> None:  # fmt: skip
        self.ack_s = ack_s
        self.sender = sender
        self.id = mid
        self.to = to
        self.text = text
        self.plan = plan
        self.sent_at = sent_at
        self.target = target


@dataclass(frozen=True, kw_only=True, slots=True)
class _Scripted:
    sender: str
    to: str
    plan: str
    latency_s: float | None = None
    ack_s: float | None = None


class _Sim:
    def __init__(self, seed: int, cfg: SimConfig) -> None:
        if len(cfg.clients) < 4:
            raise ValueError("SimConfig.clients: at least four")
        self.rng = random.Random(seed)
        self.cfg = cfg
        self.now = 0.0
        self.wall0 = 1.7e9 + self.rng.uniform(0, 1e7)
        self.heap: list[tuple[float, int, str, object]] = []
        self.n = 0
        self.files: dict[str, list[RawRecord]] = {}
        self.directory: dict[str, _Client] = {}
        self.pair_last: dict[tuple[int, str], float] = {}
        self.clients: list[_Client] = []
        self.crashed: list[tuple[str, str]] = []
        self.end_s = (1.2 * cfg.messages + 20) * cfg.mean_gap_s
        self.leave_at = {n.casefold(): self.end_s * self.rng.uniform(0.9, 1.0) for n in cfg.clients}
        self.names = list(cfg.clients)

    def at(self, t: float, kind: str, obj: object) -> None:
        self.n += 1
        heapq.heappush(self.heap, (t, self.n, kind, obj))

    def new_client(self, name: str, file: str) -> _Client:
        base = self.rng.uniform(1e3, 1e5)
        skew = self.rng.uniform(-2e-4, 2e-4)
        wall0 = self.wall0 + skew
        builder = RecordBuilder(
            client=name,
            incarnation=format(self.rng.getrandbits(64), "016x"),
            clock=lambda: self.now + base,
            wall=lambda: self.now + wall0,
        )
        c = _Client(name, builder, self.files.setdefault(file, []))
        self.clients.append(c)
        return c

    def latency(self) -> float:
        lat = self.rng.lognormvariate(math.log(1e-3), 0.5)
        if self.rng.random() < 0.05:  # a retransmission or two
            lat += self.rng.uniform(0.2, 2.0)
        return min(lat, self.cfg.timeout_s / 2)

    def run(self) -> Run:
        cfg, rng = self.cfg, self.rng
        first, second, third, fourth = self.names[:4]
        for i, name in enumerate(self.names):
            c = self.new_client(name, f"{name.lower()}.jsonl")
            if cfg.restart and name == fourth:
                c.restart_file = f"{name.lower()}.2.jsonl"
            self.at(0.001 * i, "start", c)
        gap = cfg.mean_gap_s
        script = [
            _Scripted(sender=first, to=second, plan=DELIVERED),
            _Scripted(sender=first, to=second.upper(), plan=DELIVERED),
            _Scripted(sender=first, to=second, plan=RECOVERED),
            _Scripted(sender=first, to=second, plan=TIMEOUT),
            _Scripted(sender=first, to=second.lower(), plan=DELIVERED),
            _Scripted(sender=first, to="zed", plan=NO_SUCH_USER),
        ]
        for i, s in enumerate(script):
            self.at(0.02 + i * gap / 4, "send", s)
        t = 0.02 + len(script) * gap / 4
        for _ in range(cfg.messages):
            t += rng.expovariate(1 / gap)
            self.at(min(t, self.end_s * 0.9), "send", None)
        if cfg.crash:
            crash_t = self.end_s * 0.4
            # just before the kill: one message shown but not yet acknowledged, one lost
            shown = _Scripted(sender=third, to=first, plan=DELIVERED, latency_s=1e-3, ack_s=0.5)
            self.at(crash_t - 3e-3, "send", shown)
            self.at(crash_t - 2e-3, "send", _Scripted(sender=third, to=second, plan=TIMEOUT))
            self.at(crash_t, "crash", third.casefold())
        while self.heap:
            self.now, _, kind, obj = heapq.heappop(self.heap)
            getattr(self, "on_" + kind)(obj)
        return Run(files=self.files, crashed=self.crashed)

    def emit(self, c: _Client, record: RawRecord) -> None:
        c.out.append(record)

    def current(self, name_cf: str) -> _Client | None:
        for c in reversed(self.clients):
            if c.name.casefold() == name_cf:
                return c
        return None

    # --- events -------------------------------------------------------------------------------

    def on_start(self, c: _Client) -> None:
        c.online = True
        self.directory[c.name.casefold()] = c
        self.emit(c, c.builder.signed_in())
        if c.restart_file:
            self.at(max(self.now, self.end_s * 0.5), "leave", c)
        else:
            self.at(max(self.now + 0.05, self.leave_at[c.name.casefold()]), "leave", c)

    def on_crash(self, name_cf: str) -> None:
        c = self.current(name_cf)
        if c is None or not c.alive:
            return
        c.alive = False
        c.online = False
        self.crashed.append((c.name, c.builder.incarnation))
        again = self.new_client(c.name, f"{c.name.lower()}.jsonl")  # the same file
        self.at(self.now + 1.0, "start", again)

    def on_leave(self, c: _Client) -> None:
        if not c.alive or c.exiting:
            return
        c.exiting = True  # sends no more; signs out once every send has its outcome
        if c.pending == 0:
            self.finish(c)

    def finish(self, c: _Client) -> None:
        c.online = False
        if self.directory.get(c.name.casefold()) is c:
            del self.directory[c.name.casefold()]
        self.emit(c, c.builder.signed_out())
        self.emit(c, c.builder.exit(0))
        if c.restart_file:
            again = self.new_client(c.name, c.restart_file)
            self.at(self.now + 0.5, "start", again)

    def on_send(self, spec: _Scripted | None) -> None:
        rng, cfg = self.rng, self.cfg
        if spec is None:
            senders = [c for c in self.directory.values() if c.alive and c.online and not c.exiting]
            if not senders:
                return
            sender = rng.choice(senders)
            if rng.random() < cfg.p_no_such_user:
                to = rng.choice(("zed", "nobody", "Mallory"))
            else:
                to = rng.choice([n for n in self.names if n.casefold() != sender.name.casefold()])
                to = rng.choice((to, to, to.lower(), to.upper()))
            r = rng.random()
            plan = (
                TIMEOUT if r < cfg.p_timeout
                else RECOVERED if r < cfg.p_timeout + cfg.p_recovered
                else DELIVERED
            )  # fmt: skip
            latency = ack = None
        else:
            found = self.directory.get(spec.sender.casefold())
            if found is None or not found.alive or not found.online or found.exiting:
                return
            sender, to, plan = found, spec.to, spec.plan
            latency, ack = spec.latency_s, spec.ack_s
        sender.seq += 1
        mid = message_id(sender.builder.incarnation, sender.seq)
        text = f"{mid} " + "x" * rng.randrange(0, 40)
        target = self.directory.get(to.casefold())
        if target is None:
            plan = NO_SUCH_USER
        m = _Msg(sender, mid, to, text, plan, self.now, target, ack)
        self.emit(sender, sender.builder.send(mid, to, text))
        sender.pending += 1
        if plan == NO_SUCH_USER:
            self.at(self.now + 5e-4, "outcome", m)
        elif plan == TIMEOUT:
            self.at(self.now + cfg.timeout_s, "outcome", m)
        else:
            key = (id(sender), to.casefold())
            show_t = max(self.now + (latency or self.latency()), self.pair_last.get(key, 0) + 1e-6)
            self.pair_last[key] = show_t
            self.at(show_t, "show", m)
            if plan == RECOVERED:
                self.at(max(self.now + cfg.timeout_s, show_t + 1e-3), "outcome", m)

    def on_show(self, m: _Msg) -> None:
        target = m.target
        assert target is not None
        if target.alive and target.online:
            self.emit(target, target.builder.shown(m.sender.name, m.id, m.text))
            if m.plan == DELIVERED:
                self.at(self.now + (m.ack_s or self.latency()), "outcome", m)
        elif m.plan == DELIVERED:
            m.plan = TIMEOUT
            self.at(max(self.now, m.sent_at + self.cfg.timeout_s), "outcome", m)

    def on_outcome(self, m: _Msg) -> None:
        s = m.sender
        if not s.alive:
            return  # killed before it learnt the outcome
        b = s.builder
        if m.plan == DELIVERED:
            self.emit(s, b.delivered(m.id, m.to))
        elif m.plan == NO_SUCH_USER:
            self.emit(s, b.not_delivered(m.id, m.to, Reason.NO_SUCH_USER, f"no such user: {m.to}"))
        else:
            text = f"not delivered to {m.to} (no acknowledgement for {self.cfg.timeout_s:.0f} s)"
            self.emit(s, b.not_delivered(m.id, m.to, Reason.TIMEOUT, text))
        s.pending -= 1
        if s.exiting and s.pending == 0:
            self.finish(s)


def simulate(seed: int, config: SimConfig | None = None) -> Run:
    """The histories of one simulated run (see the module's docstring)."""
    return _Sim(seed, config or SimConfig()).run()


def bulk_lines(events: int, *, seed: int = 0, clients: int = 6) -> dict[str, list[bytes]]:
    """A large valid history, fast: ``events`` lines (or up to two more) over ``clients`` files.

    Simpler than :func:`simulate` (no crash, no restart; 90 % delivered, 5 % lost and reported,
    5 % recovered), for measuring the checker. Lines are formatted directly, not via ``json``.
    """
    rng = random.Random(seed)
    names = [f"user{i}" for i in range(clients)]
    incs = [format(rng.getrandbits(64), "016x") for _ in names]
    bases = [rng.uniform(1e3, 1e5) for _ in names]
    wall0 = 1.7e9
    texts = [f"message {k} " + "y" * k for k in range(64)]
    digests = [text_digest(t) for t in texts]
    files: dict[str, list[bytes]] = {f"{n}.jsonl": [] for n in names}
    outs = [files[f"{n}.jsonl"] for n in names]
    seqs = [0] * clients

    def head(i: int, event: str, t: float) -> str:
        return (
            f'{{"event":"{event}","client":"{names[i]}","incarnation":"{incs[i]}",'
            f'"mono":{bases[i] + t!r},"wall":{wall0 + t!r}'
        )

    for i in range(clients):
        outs[i].append((head(i, "signed_in", 0.0) + "}\n").encode())
    step = 1e-3
    written = clients
    k = 0
    while written < events - 2 * clients:
        k += 1
        t = 1.0 + k * step
        s = rng.randrange(clients)
        r = (s + 1 + rng.randrange(clients - 1)) % clients
        seqs[s] += 1
        mid = f"{incs[s]}.{seqs[s]}"
        x = k & 63
        outs[s].append(
            (
                head(s, "send", t) + f',"id":"{mid}","to":"{names[r]}","digest":"{digests[x]}",'
                f'"bytes":{len(texts[x])}}}\n'
            ).encode()
        )
        u = rng.random()
        lat = rng.uniform(1e-4, 4e-4)
        written += 3 if u >= 0.05 else 2
        if u >= 0.05:
            outs[r].append(
                (
                    head(r, "shown", t + lat)
                    + f',"from":"{names[s]}","id":"{mid}","digest":"{digests[x]}"}}\n'
                ).encode()
            )
        if u >= 0.1:
            line = head(s, "delivered", t + 2 * lat) + f',"id":"{mid}","to":"{names[r]}"}}\n'
        else:
            line = (
                head(s, "not_delivered", t + 2 * lat) + f',"id":"{mid}","to":"{names[r]}",'
                f'"reason":"timeout","text":"not delivered to {names[r]}"}}\n'
            )
        outs[s].append(line.encode())
    t_end = 2.0 + k * step
    for i in range(clients):
        outs[i].append((head(i, "signed_out", t_end) + "}\n").encode())
        outs[i].append((head(i, "exit", t_end) + ',"code":0}\n').encode())
    return files
