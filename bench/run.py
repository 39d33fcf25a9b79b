"""Run the benchmarks: ``python -m bench.run --quick`` (``make bench``) or ``--full``.

Every figure is measured beside its baseline in the same run, and the goals are judged on ratios,
never on absolute times (they move from run to run). Everything of ours is end-to-end encrypted
(issue 10): every load generator signs its users in with real Noise IK handshakes and sends
encrypted requests (bench.signin); the baselines stay plaintext (they are the ceilings), and the
figures' notes say so.

1. Directory lookups per second (real chat-server, N signed-in clients in a load process, a fixed
   number of LOOKUPs outstanding each) against the echo ceiling: a minimal UDP echo server on the
   same event loop, hit by the same load process.
2. Reliable direct message round trip between two clients (send -> every chunk acknowledged),
   p50 and p99, against blocking Python UDP ping-pong and ENet reliable ping-pong; and a first
   send (a sender signed in afresh: LOOKUP + handshake + DATA -> ACK). Beside it, the secure
   layer's CPU per message (``crypto_us_per_message``) and the three cores' work per message
   (``core_message_us``).
3. A 1 MiB message at 0, 1, 5, 10 and 20 % loss (iptables in a network namespace), against ENet
   sending 1 MiB reliably; and a tbf bottleneck (bench.bottleneck): goodput, retransmissions,
   fairness between two senders, a TCP flow's share.
4. 100 000 signed-in users on one server: its resident memory, and the CPU their heartbeats cost
   at the interval the server advertises (beside an echo server fed the same datagram rate).
   A chat-server holds at most
   SERVER_CAPACITY (60 000) users, and every sign-in is a handshake: ``--quick`` signs in 30 000
   (who heartbeat at the server's cap already), ``--full`` 60 000, and the memory figure is
   projected to 100 000 from the bytes per user.
5. Liveness: kill -9 of a client -> gone from the directory; kill -9 of the server -> clients exit.

The goals (issues 13 and 24) are one table, bench/goals.py, each a ratio to a baseline of the
same run (or a size); README.md lists them. ``make bench-series`` judges three ``--full`` runs
together (bench.series).

summary.json holds every figure, its notes, the goals as booleans, and ``spread``: the min /
median / max of each figure's repetitions (issue 13). Writes bench/results/summary.json,
summary.md, rtt_distribution.png, lookup_throughput.png and loss_curve.png, and prints the
Markdown table. Exit status 1 if a measurement could not be made (the summary is written anyway,
with null and a reason for what is missing).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chat_protocol
from bench import against, baselines, bottleneck, goals, liveness, procs, report, users
from chat_protocol.const import DEFAULT_TIMINGS, MAX_HEARTBEAT_INTERVAL_S

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1 << 20
LOSS_LEVELS = (0.01, 0.05, 0.10, 0.20)
"""Random loss levels of the 1 MiB figures (issue 24)."""
ENET_ATTEMPTS = 3
"""Runs of the ENet baseline at one loss level before it counts as unavailable: at 20 % loss
ENet sometimes gives its peer up (pyenet cannot raise ENet's peer timeout)."""
FULL_USERS = 100_000
"""The user count of goal 4; a mode that signs in fewer projects the memory figure to it."""
SERVER_CAPACITY = int(
    DEFAULT_TIMINGS.max_heartbeats_per_s
    * max(DEFAULT_TIMINGS.heartbeat_interval_s, MAX_HEARTBEAT_INTERVAL_S)
)
"""Users a chat-server holds at most (60 000): beyond heartbeats at its cap rate and its
longest interval, it refuses sign-ins SERVER_FULL rather than stretch the liveness timers."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    mode: str
    reps: int
    clients: tuple[int, ...]
    clients_other_loop: tuple[int, ...]
    window: int
    lookup_s: float
    pings: int
    bulk_reps: int
    bulk_bytes: int
    first_sends: int
    """First sends timed per run (each by a sender signed in afresh: LOOKUP + handshake)."""
    loss_bulk_reps: int
    bottleneck_reps: int
    bottleneck_bytes: int
    users: int
    users_window_s: float
    victims: int
    core_users: int


PLANS = {
    "quick": Plan(
        mode="quick",
        reps=3,
        clients=(1, 4, 16, 64),
        clients_other_loop=(16,),
        window=4,
        lookup_s=1.0,
        pings=1000,
        bulk_reps=3,
        bulk_bytes=MIB,
        first_sends=20,
        loss_bulk_reps=3,
        bottleneck_reps=2,
        bottleneck_bytes=8 * MIB,
        # Every sign-in is a handshake (about 0.8 ms of CPU, the two sides together): 30 000
        # take about 40 s here. They already heartbeat at the server's cap (20 000 /s, every
        # 1.5 s); the memory figure is projected to 100 000 from the bytes per user. --full
        # signs in as many as a server takes (SERVER_CAPACITY).
        users=30_000,
        users_window_s=15.0,
        victims=3,
        core_users=10_000,
    ),
    "full": Plan(
        mode="full",
        reps=5,
        clients=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        clients_other_loop=(1, 4, 16, 64, 256),
        window=4,
        lookup_s=2.0,
        pings=5000,
        bulk_reps=5,
        bulk_bytes=MIB,
        first_sends=40,
        loss_bulk_reps=5,
        bottleneck_reps=3,
        bottleneck_bytes=8 * MIB,
        users=min(FULL_USERS, SERVER_CAPACITY),
        users_window_s=30.0,
        victims=8,
        core_users=30_000,
    ),
    # A miniature of everything, for tests/bench/test_bench_smoke.py: seconds, not minutes.
    "smoke": Plan(
        mode="smoke",
        reps=1,
        clients=(2,),
        clients_other_loop=(),
        window=2,
        lookup_s=0.2,
        pings=50,
        bulk_reps=1,
        bulk_bytes=64 * 1024,
        first_sends=2,
        loss_bulk_reps=1,
        bottleneck_reps=1,
        bottleneck_bytes=256 * 1024,
        users=300,
        users_window_s=0.6,
        victims=1,
        core_users=300,
    ),
}


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def spread(xs: list[float]) -> dict[str, float]:
    return {"min": min(xs), "median": median(xs), "max": max(xs), "n": float(len(xs))}


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return float(s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))])


def per_run(runs: list[dict[str, Any]], key: str, q: float) -> list[float]:
    """Each run's ``q`` percentile of its samples under ``key``."""
    return [pct(r[key], q) for r in runs]


def run_medians(runs: list[dict[str, Any]], key: str) -> list[float]:
    """Each run's median of its samples under ``key``."""
    return [median(r[key]) for r in runs]


def ratios(a: list[float], b: list[float]) -> list[float]:
    """Run for run, ``a``'s figure over ``b``'s."""
    return [x / y for x, y in zip(a, b, strict=True)]


def loops_available() -> list[str]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return ["asyncio"]
    return ["uvloop", "asyncio"]


class Bench:
    def __init__(self, plan: Plan, out: Path) -> None:
        self.plan = plan
        self.out = out
        self.loops = loops_available()
        self.loop = self.loops[0]
        self.summary: dict[str, Any] = {}
        self.notes: dict[str, str] = {}
        self.unavailable: dict[str, str] = {}
        self.errors: list[str] = []
        self.details: dict[str, Any] = {}
        self.samples: dict[str, list[float]] = {}
        self.spread: dict[str, dict[str, float]] = {}
        """min / median / max (and n) of each figure's repetitions (issue 13)."""

    # -- bookkeeping --

    def put(
        self,
        key: str,
        value: float | int | None,
        note: str = "",
        *,
        samples: list[float] | None = None,
    ) -> None:
        """Record a figure; ``samples`` (its repetitions) give its spread, and its value when
        ``value`` is None (their median)."""
        if samples is not None:
            xs = [float(x) for x in samples if x is not None and math.isfinite(x)]
            if xs:
                self.spread[key] = spread(xs)
                if value is None:
                    value = median(xs)
        if value is not None and not math.isfinite(value):
            self.unavailable[key] = f"not a finite number ({value})"
            value = None
        self.summary[key] = None if value is None else float(value)
        if note:
            self.notes[key] = note

    def missing(self, keys: list[str], reason: str) -> None:
        for k in keys:
            self.summary.setdefault(k, None)
            if self.summary[k] is None:
                self.unavailable[k] = reason

    def section(self, name: str, keys: list[str], fn: Callable[[], None]) -> None:
        t0 = time.monotonic()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            fn()
        except Exception as exc:  # one failed measurement must not lose the others
            msg = f"{name}: {type(exc).__name__}: {exc}"
            self.errors.append(msg)
            traceback.print_exc(file=sys.stderr)
            self.missing(keys, f"measurement failed: {msg[:300]}")
        print(f"== {name}: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)

    # -- 1. lookups vs echo --

    def lookups(self) -> None:
        p = self.plan
        curves: dict[str, Any] = {}
        for loop in self.loops:
            ns = p.clients if loop == self.loop else p.clients_other_loop
            if not ns:
                continue
            runs: dict[str, dict[int, list[dict[str, Any]]]] = {"lookup": {}, "echo": {}}
            best = 0.0  # the best lookup rate so far: the load encrypts for twice that ahead
            with (
                procs.chat_server(loop, cpu=procs.FAR) as srv,
                procs.echo_server(loop, cpu=procs.FAR) as echo,
            ):
                if srv.loop != loop or echo.loop != loop:
                    raise RuntimeError(f"asked for {loop}, servers run {srv.loop}/{echo.loop}")
                for _ in range(p.reps):
                    for n in ns:  # interleaved: drift on this machine hits both alike
                        for mode, target in (("lookup", srv), ("echo", echo)):
                            rate = ["--max-rate", str(max(20_000, 2 * best))] if best else []
                            r = procs.run_json(
                                [
                                    procs.PY,
                                    "-m",
                                    "bench.loadgen",
                                    "--target",
                                    target.target,
                                    "--mode",
                                    mode,
                                    "--clients",
                                    str(n),
                                    "--window",
                                    str(p.window),
                                    "--warmup",
                                    "0.3",
                                    "--duration",
                                    str(p.lookup_s),
                                    "--server-pid",
                                    str(target.proc.pid),
                                    *rate,
                                ],
                                timeout_s=60 + p.lookup_s,
                                loop=loop,
                                cpu=procs.NEAR,
                            )
                            runs[mode].setdefault(n, []).append(r)
                            if mode == "lookup":
                                best = max(best, r["per_s"])
            curve = {}
            for mode in ("lookup", "echo"):
                curve[mode] = [
                    {
                        "clients": n,
                        "per_s": median([r["per_s"] for r in rs]),
                        "min": min(r["per_s"] for r in rs),
                        "max": max(r["per_s"] for r in rs),
                        "server_cpu_frac": median(
                            [r["server_cpu_frac"] for r in rs if r["server_cpu_frac"] is not None]
                            or [float("nan")]
                        ),
                        "loadgen_cpu_frac": median([r["loadgen_cpu_frac"] for r in rs]),
                        "stalls": sum(r["stalls"] for r in rs),
                        "encrypted_live": sum(r.get("encrypted_live", 0) for r in rs),
                    }
                    for n, rs in sorted(runs[mode].items())
                ]
            curves[loop] = curve
            best_l = max(curve["lookup"], key=lambda c: c["per_s"])
            best_e = max(curve["echo"], key=lambda c: c["per_s"])
            # The repetitions at each peak, in order (they were interleaved: rep i of one
            # beside rep i of the other).
            reps_l = runs["lookup"][best_l["clients"]]
            reps_e = runs["echo"][best_e["clients"]]

            def per_cpu(r: dict[str, Any]) -> float:
                frac = r["server_cpu_frac"]
                return float(r["per_s"] / frac) if frac else float("nan")

            suffix = "" if loop == self.loop else f"_{loop}"
            self.put(f"lookup_per_s{suffix}", None, samples=[r["per_s"] for r in reps_l])
            self.put(f"echo_ceiling_per_s{suffix}", None, samples=[r["per_s"] for r in reps_e])
            self.put(
                f"lookup_vs_echo{suffix}",
                best_l["per_s"] / best_e["per_s"],
                samples=[lr["per_s"] / er["per_s"] for lr, er in zip(reps_l, reps_e, strict=True)],
            )
            # Who was the limit at each peak: the server's and the load process's CPU shares
            # (1.0 = one core busy). A load process near 1.0 with a server well below it means
            # the generator, not the server, set the rate; per-CPU figures are judged for that.
            for mode, best_c, reps in (("lookup", best_l, reps_l), ("echo", best_e, reps_e)):
                self.put(
                    f"{mode}_loadgen_cpu_share{suffix}",
                    best_c["loadgen_cpu_frac"],
                    samples=[r["loadgen_cpu_frac"] for r in reps],
                )
                self.put(
                    f"{mode}_server_cpu_share{suffix}",
                    best_c["server_cpu_frac"],
                    samples=[r["server_cpu_frac"] for r in reps if r["server_cpu_frac"]],
                )
            per_cpu_l = best_l["per_s"] / best_l["server_cpu_frac"]
            per_cpu_e = best_e["per_s"] / best_e["server_cpu_frac"]
            self.put(f"lookup_per_cpu_s{suffix}", per_cpu_l, samples=[per_cpu(r) for r in reps_l])
            self.put(f"echo_per_cpu_s{suffix}", per_cpu_e, samples=[per_cpu(r) for r in reps_e])
            self.put(
                f"lookup_vs_echo_per_cpu{suffix}",
                per_cpu_l / per_cpu_e,
                samples=[per_cpu(lr) / per_cpu(er) for lr, er in zip(reps_l, reps_e, strict=True)],
            )
        self.notes["lookup_per_s"] = (
            f"peak over {list(p.clients)} clients x {p.window} LOOKUPs outstanding, median of "
            f"{p.reps} x {p.lookup_s} s, {self.loop}; each client signed in by a handshake "
            "first, every LOOKUP encrypted and every answer encrypted by the server (the load "
            "process encrypts its requests before the measured phase and counts answers without "
            "decrypting them); the load process is one Python process on the other core"
        )
        self.notes["echo_ceiling_per_s"] = (
            "a plaintext UDP echo server on the same loop (no crypto: the ceiling), fed "
            "datagrams of the size of our encrypted LOOKUPs by the same load process; our side "
            "now also decrypts every request and encrypts every answer"
        )
        self.notes["lookup_vs_echo_per_cpu"] = (
            "replies per second of server CPU time, ours / echo: the same comparison when the "
            "load generator, not the server, is the limit"
        )
        self.details["lookup_curves"] = curves

    # -- 2 and 3. messages --

    def p2p(
        self,
        prefix: list[str],
        *,
        pings: int,
        bulk_reps: int,
        warmup: int = 50,
        first_sends: int = 0,
    ) -> dict[str, Any]:
        argv = [*prefix, procs.PY, "-m", "bench.p2p", "--loop", self.loop]
        argv += ["--first-sends", str(first_sends)]
        return self._pings_and_bulk(argv, pings, bulk_reps, warmup, loop=self.loop)

    def enet(
        self, prefix: list[str], *, pings: int, bulk_reps: int, warmup: int = 50
    ) -> dict[str, Any]:
        argv = [*prefix, procs.PY, "-m", "bench.baselines", "enet"]
        return self._pings_and_bulk(argv, pings, bulk_reps, warmup)

    def _pings_and_bulk(
        self, argv: list[str], pings: int, bulk_reps: int, warmup: int, loop: str = "uvloop"
    ) -> dict[str, Any]:
        """``argv`` (bench.p2p or the ENet baseline) with the options both take."""
        return procs.run_json(
            [
                *argv,
                "--pings",
                str(pings),
                "--warmup",
                str(warmup),
                "--bulk-bytes",
                str(self.plan.bulk_bytes),
                "--bulk-reps",
                str(bulk_reps),
            ],
            timeout_s=120 + bulk_reps * 30,
            loop=loop,
        )

    def messages(self) -> None:
        p = self.plan
        enet_missing = baselines.enet_unavailable()
        ours: list[dict[str, Any]] = []
        raw: list[dict[str, Any]] = []
        floor: list[dict[str, Any]] = []
        enet: list[dict[str, Any]] = []
        for _ in range(p.reps):  # interleaved repetitions
            ours.append(
                self.p2p([], pings=p.pings, bulk_reps=p.bulk_reps, first_sends=p.first_sends)
            )
            raw.append(
                procs.run_json(
                    [procs.PY, "-m", "bench.baselines", "udp", "--pings", str(p.pings)],
                    timeout_s=120,
                )
            )
            floor_argv = [procs.PY, "-m", "bench.floor", "--pings", str(p.pings)]
            floor_argv += ["--bulk-bytes", str(p.bulk_bytes), "--bulk-reps", str(p.bulk_reps)]
            floor.append(procs.run_json(floor_argv, timeout_s=120 + p.bulk_reps * 30))
            if not enet_missing:
                enet.append(self.enet([], pings=p.pings, bulk_reps=p.bulk_reps))

        # The goal compares like with like: the direct round trip between the two clients (first
        # DATA sent -> its ACK back), as the raw UDP and ENet ping-pongs are. A whole send() also
        # asks the directory for the receiver's address first: reported beside it. Each figure
        # is the median of the runs' percentiles; its spread, theirs.
        ours50 = per_run(ours, "data_ack_us", 0.5)
        raw50 = per_run(raw, "rtt_us", 0.5)
        send50 = per_run(ours, "rtt_us", 0.5)
        self.put("p2p_rtt_p50_us", None, samples=ours50)
        self.put("p2p_rtt_p99_us", None, samples=per_run(ours, "data_ack_us", 0.99))
        self.put("send_rtt_p50_us", None, samples=send50)
        self.put("send_rtt_p99_us", None, samples=per_run(ours, "rtt_us", 0.99))
        first50 = per_run(ours, "first_send_us", 0.5)
        self.put("first_send_p50_us", None, samples=first50)
        self.notes["first_send_p50_us"] = (
            f"a first send: ClientCore.send() -> MessageDelivered by a sender signed in afresh "
            f"(new keys, no session, nothing cached): its LOOKUP, the Noise handshake with the "
            f"receiver, the receiver's LOOKUP of the new sender's name, DATA -> ACK; "
            f"{p.first_sends} senders x {p.reps} runs"
        )
        self.put("raw_udp_rtt_p50_us", None, samples=raw50)
        self.put("raw_udp_rtt_p99_us", None, samples=per_run(raw, "rtt_us", 0.99))
        self.put("p2p_vs_raw", median(ours50) / median(raw50), samples=ratios(ours50, raw50))
        self.put("send_vs_raw", median(send50) / median(raw50), samples=ratios(send50, raw50))
        self.notes["p2p_rtt_p50_us"] = (
            f"direct round trip between two clients: the first DATA of a message sent -> its ACK "
            f"back (MessageDelivered), {p.pings} messages x {p.reps} runs (median of per-run "
            "percentiles); both ride the clients' secure session (encrypted, decrypted on each "
            "side: crypto_us_per_message)"
        )
        self.notes["send_rtt_p50_us"] = (
            "ClientCore.send() -> MessageDelivered: the sender's directory LOOKUP of the receiver "
            "(encrypted both ways; skipped while a cached answer younger than the directory's "
            "liveness bound, 5 s, is good and the receiver's session is live: issue 24), then "
            "the direct DATA -> ACK"
        )
        self.notes["raw_udp_rtt_p50_us"] = (
            "blocking Python sendto/recv ping-pong, 48 bytes, plaintext (no crypto: the baseline); "
            "ours now also encrypts and decrypts every datagram"
        )
        bulk = [x for r in ours for x in r["bulk_ms"]]
        self.put(
            "bulk_1mib_ms",
            None,
            f"{p.bulk_bytes} bytes, send() -> delivered, median of {len(bulk)}; "
            f"retransmissions: {sum(r['bulk_retransmissions'] for r in ours)}; every chunk "
            "encrypted",
            samples=bulk,
        )
        self._floor(floor, ours, enet)
        self.samples["ours"] = [x for r in ours for x in r["data_ack_us"]]
        self.samples["ours_send"] = [x for r in ours for x in r["rtt_us"]]
        self.samples["raw_udp"] = [x for r in raw for x in r["rtt_us"]]
        self.details["bulk_ms"] = bulk
        if enet_missing:
            self.missing(
                [
                    "enet_rtt_p50_us",
                    "enet_rtt_p99_us",
                    "enet_bulk_1mib_ms",
                    "bulk_vs_enet",
                    "p2p_vs_enet",
                    "p2p_p99_vs_enet",
                    "first_send_vs_enet",
                    "floor_rtt_vs_enet",
                    "floor_bulk_vs_enet",
                ],
                enet_missing,
            )
            return
        enet50 = per_run(enet, "rtt_us", 0.5)
        self.put("enet_rtt_p50_us", None, samples=enet50)
        self.put("enet_rtt_p99_us", None, samples=per_run(enet, "rtt_us", 0.99))
        self.put("p2p_vs_enet", median(ours50) / median(enet50), samples=ratios(ours50, enet50))
        ours99, enet99 = per_run(ours, "data_ack_us", 0.99), per_run(enet, "rtt_us", 0.99)
        self.put("p2p_p99_vs_enet", median(ours99) / median(enet99), samples=ratios(ours99, enet99))
        self.put(
            "first_send_vs_enet",
            median(first50) / median(enet50),
            "a first send's p50 (LOOKUP + handshake + DATA -> ACK) / ENet's ping-pong p50",
            samples=ratios(first50, enet50),
        )
        enet_bulk = [x for r in enet for x in r["bulk_ms"]]
        self.put("enet_bulk_1mib_ms", None, samples=enet_bulk)
        self.put(
            "bulk_vs_enet",
            median(bulk) / median(enet_bulk),
            samples=ratios(run_medians(ours, "bulk_ms"), run_medians(enet, "bulk_ms")),
        )
        self.samples["enet"] = [x for r in enet for x in r["rtt_us"]]
        self.notes["enet_rtt_p50_us"] = (
            "pyenet reliable packets on one channel, service(1) loop; plaintext (ENet has no "
            "encryption)"
        )

    def _floor(
        self,
        floor: list[dict[str, Any]],
        ours: list[dict[str, Any]],
        enet: list[dict[str, Any]],
    ) -> None:
        """The encrypted Python floor (bench.floor) beside our figures and ENet's (none when
        pyenet is missing), run for run: what of the gap to ENet no Python transport that
        encrypts closes, and what is the protocol's own. Its ratios are the medians of the runs'
        own ratios, so each lies within its spread."""
        floor50, floor_bulk = per_run(floor, "rtt_us", 0.5), run_medians(floor, "bulk_ms")
        self.put("floor_rtt_p50_us", None, samples=floor50)
        self.put("floor_rtt_p99_us", None, samples=per_run(floor, "rtt_us", 0.99))
        self.put("floor_bulk_1mib_ms", None, samples=[x for r in floor for x in r["bulk_ms"]])
        ours50 = per_run(ours, "data_ack_us", 0.5)
        self.put("p2p_vs_floor", None, samples=ratios(ours50, floor50))
        self.put("bulk_vs_floor", None, samples=ratios(run_medians(ours, "bulk_ms"), floor_bulk))
        if enet:
            enet50 = per_run(enet, "rtt_us", 0.5)
            self.put("floor_rtt_vs_enet", None, samples=ratios(floor50, enet50))
            self.put(
                "floor_bulk_vs_enet", None, samples=ratios(floor_bulk, run_medians(enet, "bulk_ms"))
            )
        self.notes["floor_rtt_p50_us"] = (
            "bench.floor: two Python processes pinned as the peers are, each a poll loop, every "
            "datagram sealed and opened with the chat's AEAD (chat_protocol.secure.cipher), of "
            "the chat's sizes, with the chat's window and ACK policy; no protocol work at all"
        )

    def loss(self) -> None:
        """1 MiB at each of ``LOSS_LEVELS`` (issue 24: 1, 5, 10, 20 %), ours and ENet's, each
        level in a fresh namespace; the 10 % keys are those of issue 13."""
        p = self.plan
        why = procs.netns_unavailable()
        for level in LOSS_LEVELS:
            pct = round(level * 100)
            keys = [
                f"bulk_1mib_loss{pct}_ms",
                f"enet_bulk_1mib_loss{pct}_ms",
                f"bulk_loss{pct}_vs_enet",
            ]
            if why:
                self.missing(keys, why)
                continue
            enet_why = baselines.enet_unavailable()
            with procs.lossy_netns(level) as ns:
                # Two warm-up messages: the receiver's LOOKUP of the sender happens on the first.
                r = self.p2p(ns, pings=0, bulk_reps=p.loss_bulk_reps, warmup=2)
                e = None
                enet_dropped = 0
                while not enet_why and e is None:
                    try:
                        e = self.enet(ns, pings=0, bulk_reps=p.loss_bulk_reps, warmup=2)
                    except RuntimeError as exc:  # at high loss ENet may drop its own peer
                        enet_dropped += 1
                        if enet_dropped >= ENET_ATTEMPTS:
                            last = str(exc).splitlines()[-1]
                            enet_why = f"the ENet baseline failed {enet_dropped} times: {last}"
                if enet_dropped and e is not None:
                    self.notes[keys[1]] = (
                        f"ENet dropped its own peer (its retransmission limit) in {enet_dropped} "
                        "run(s) at this loss before one completed (a fresh connection each)"
                    )
            self.put(
                keys[0],
                None,
                f"{p.bulk_bytes} bytes, {level:.0%} of UDP datagrams dropped at random (iptables "
                f"statistic, every datagram of the server and both peers), median of "
                f"{len(r['bulk_ms'])}; retransmissions {r['bulk_retransmissions']}; includes "
                "the sender's LOOKUP (a lost one is retried after 0.4 s)",
                samples=r["bulk_ms"],
            )
            self.details[f"bulk_loss{pct}_ms"] = r["bulk_ms"]
            self.details[f"bulk_loss{pct}_retransmissions"] = r["bulk_retransmissions"]
            if e is None:
                self.missing(keys[1:], enet_why or "")
                continue
            self.put(keys[1], None, samples=e["bulk_ms"])
            self.put(
                keys[2],
                median(r["bulk_ms"]) / median(e["bulk_ms"]),
                "ratio of the medians; its spread pairs the i-th transfer of each",
                samples=[x / y for x, y in zip(r["bulk_ms"], e["bulk_ms"], strict=False)],
            )
            self.details[f"enet_bulk_loss{pct}_ms"] = e["bulk_ms"]

    def bottleneck(self) -> None:
        """Issue 24's congestion figures through a tbf bottleneck (bench.bottleneck)."""
        p = self.plan
        keys = [
            "bottleneck_goodput_ratio",
            "bottleneck_retransmit_share",
            "bottleneck_jain",
            "bottleneck_tcp_share",
        ]
        why = procs.netns_unavailable()
        if why:
            self.missing(keys, why)
            return
        r = procs.run_json(
            [
                *(procs.PY, "-m", "bench.bottleneck"),
                *("--reps", str(p.bottleneck_reps), "--bytes", str(p.bottleneck_bytes)),
            ],
            timeout_s=120 + 240 * p.bottleneck_reps,
        )
        link = f"{bottleneck.RATE_MBIT} Mbit/s, tbf queue {bottleneck.QUEUE_MS} ms, both ways"
        size = f"{p.bottleneck_bytes / MIB:g} MiB"
        self.put(
            keys[0],
            None,
            f"one {size} message alone through {link}: its bits / (send() -> delivered) / the "
            f"link rate; median of {len(r['goodput_ratio'])}",
            samples=r["goodput_ratio"],
        )
        self.put(
            keys[1],
            None,
            "of that message: DATA retransmitted / DATA sent",
            samples=r["retransmit_share"],
        )
        self.put(
            keys[2],
            None,
            f"two senders, one {size} message each, started at once: Jain's index of their "
            "goodputs",
            samples=r["jain"],
        )
        self.put(
            keys[3],
            None,
            f"a TCP transfer through the same link while one {size} message goes: TCP bits "
            "received in that time / what the link carries in it",
            samples=r["tcp_share"],
        )

    # -- what the cores alone cost --

    def cores(self) -> None:
        p = self.plan
        r = procs.run_json(
            [
                procs.PY,
                "-m",
                "bench.corecost",
                "--users",
                str(p.core_users),
                "--messages",
                str(p.pings),
                "--bulk-bytes",
                str(p.bulk_bytes),
                "--bulk-reps",
                str(p.bulk_reps),
            ],
            timeout_s=300 + p.core_users / 200,
        )
        sp = r["spread"]
        for k in (
            "core_message_us",
            "crypto_us_per_message",
            "crypto_send_us",
            "crypto_server_lookup_us",
            "crypto_server_heartbeat_us",
            "core_heartbeat_us",
            "core_lookup_us",
            "core_expiry_repush_us",
            "core_endpoint_sweep_us",
            "core_sign_in_us",
            "core_handshake_us",
        ):
            self.put(k, r[k])
            self.spread[k] = sp[k]
        self.put("core_bulk_1mib_ms", r["core_bulk_ms"])
        self.spread["core_bulk_1mib_ms"] = sp["core_bulk_ms"]
        b = r["plaintext_bytes"]
        self.notes["core_handshake_us"] = (
            "one whole Noise IK handshake between two SecureEndpoints in memory (its X25519 "
            "operations, its keys made, its two messages built and read; median of 21 x 20): "
            "what a first send pays on its critical path before any I/O, its floor"
        )
        self.notes["core_message_us"] = (
            "Python work of the three cores (sender, server, receiver) per small message, "
            "send() -> LOOKUP -> reply -> DATA -> ACK -> delivered, encryption included, in one "
            "process without sockets (median of 5 batches): a floor under send_rtt_p50_us"
        )
        self.notes["crypto_us_per_message"] = (
            f"the secure layer's CPU per direct message: encrypt + decrypt (SecureSession.encrypt, "
            f"SecureEndpoint.receive, as the cores call them) of the DATA ({b['data']} bytes of "
            f"plaintext for an 11-character message) and of its ACK ({b['ack']} bytes), median "
            "of 21 x 500; crypto_send_us adds the LOOKUP and its reply "
            f"({b['lookup']} and {b['reply']} bytes): the whole send"
        )
        self.notes["crypto_server_lookup_us"] = (
            "the server's side of the secure layer for one LOOKUP: SecureEndpoint.receive of "
            "the request and SecureEndpoint.send of the reply (median of 21 x 500); "
            "crypto_server_heartbeat_us: the same for a HEARTBEAT and its ACK. With the echo "
            "server's CPU per reply, they give the ceilings lookup_ceiling_crypto and "
            "hb_ceiling_crypto: the best ratios any server that decrypts each request and "
            "encrypts its answer could reach, its other work and its shell costing nothing"
        )
        self.notes["core_heartbeat_us"] = (
            f"ServerCore per encrypted HEARTBEAT with {r['users']} users signed in by "
            "handshakes (decrypt, feed, drain, encrypt the ACK, next_timer), no socket or "
            "event loop; core_expiry_repush_us: per user, each time its expiry entry comes due "
            f"(every {r['timeout_s']:.1f} s) and is pushed back; core_endpoint_sweep_us: per "
            "session, the secure endpoint's sweep for expired sessions (every second); "
            "core_sign_in_us: the server's side of one sign-in (the INIT read and answered, "
            "the keepalive that registers the user)"
        )

    # -- 4. many users --

    def users(self) -> None:
        p = self.plan
        cmd = [
            procs.PY,
            "-m",
            "bench.users",
            "--measure",
            "--users",
            str(p.users),
            "--seconds",
            str(p.users_window_s),
            "--reps",
            str(p.reps),
            "--loop",
            self.loop,
        ]
        if p.mode == "smoke":
            cmd += ["--settle", "0.5"]
        timeout = 180 + p.users / 200 + 3 * p.users_window_s
        where = "a network namespace of its own (loopback only)"
        if procs.netns_unavailable() is None:
            with procs.lossy_netns(0) as ns:
                r = procs.run_json([*ns, *cmd], timeout_s=timeout, loop=self.loop)
        else:
            where = "the host's loopback"
            r = procs.run_json(cmd, timeout_s=timeout, loop=self.loop)
        n = r["users"]
        load = r["load"]
        idle_mb = r["idle_rss_mb"]
        self.put("users_count", n)
        self.put("users_rss_mb", None, samples=r["rss_mb_windows"])
        per_user = r["bytes_per_user"]
        per_user_w = [(mb - idle_mb) * MIB / n for mb in r["rss_mb_windows"]]
        if n >= FULL_USERS:
            rss_100k = self.summary["users_rss_mb"]
            rss_100k_w = r["rss_mb_windows"]
            how = f"VmRSS of chat-server with {n} users signed in"
        else:
            rss_100k = idle_mb + FULL_USERS * per_user / MIB
            rss_100k_w = [idle_mb + FULL_USERS * b / MIB for b in per_user_w]
            how = (
                f"projected to {FULL_USERS} users from the VmRSS with {n} signed in "
                f"({self.summary['users_rss_mb']:.0f} MB, users_rss_mb): idle + "
                f"{FULL_USERS} x bytes per user ({p.mode} mode signs in {n}; a chat-server "
                f"holds at most {SERVER_CAPACITY}: beyond, it refuses sign-ins SERVER_FULL "
                "rather than stretch its heartbeat interval past MAX_HEARTBEAT_INTERVAL_S)"
            )
        self.put(
            "users_100k_rss_mb",
            rss_100k,
            f"{how} (idle server {idle_mb:.1f} MB, {per_user:.0f} bytes per user); "
            f"{r['online_at_end']} online at the end; {load['users_lost']} dropped by the "
            f"server and signed in again; run in {where}",
            samples=rss_100k_w,
        )
        self.notes["users_rss_mb"] = (
            f"VmRSS of chat-server with the {n} users of this run, at the end of each window"
        )
        self.put("users_idle_rss_mb", idle_mb)
        self.put("users_bytes_per_user", per_user, samples=per_user_w)
        self.put("users_online_at_end", r["online_at_end"])
        self.put("users_sign_in_s", r["sign_in_s"])
        self.notes["users_sign_in_s"] = (
            f"{n} sign-ins, one Noise IK handshake each ({load['initiations']} initiations, "
            f"{load['initiations_resent']} started over after {users.SIGN_IN_RETRY_S:.1f} s, "
            f"{load['cookie_replies']} answered by a cookie first), by {r['load_processes']} "
            "load process(es) on every CPU but the server's, before anything is measured; "
            f"load CPU {load['sign_in_cpu_s']:.1f} s"
        )
        self.put("heartbeat_interval_s", r["heartbeat_interval_s"])
        self.put("heartbeats_per_s", r["heartbeats_per_s"])
        hb = [100 * x for x in r["heartbeat_cpu_frac_windows"]]
        echo = [100 * x for x in r["echo_cpu_frac_windows"]]
        self.put("users_100k_hb_cpu_pct", 100 * r["heartbeat_cpu_frac"], samples=hb)
        self.put("users_100k_echo_cpu_pct", 100 * r["echo_cpu_frac"], samples=echo)
        if r["echo_cpu_frac"] > 0.005:  # else below what /proc's clock ticks resolve
            self.put(
                "hb_vs_echo_cpu",
                r["heartbeat_cpu_frac"] / r["echo_cpu_frac"],
                samples=[x / y for x, y in zip(hb, echo, strict=True) if y > 0.5],
            )
        rate = r["heartbeats_per_s"]
        self.put(
            "heartbeat_cpu_us",
            1e6 * r["heartbeat_cpu_frac"] / rate,
            samples=[1e4 * x / rate for x in hb],
        )
        self.notes["users_100k_hb_cpu_pct"] = (
            f"chat-server CPU time (/proc/PID/stat) over {r['window_s']:.0f} s cut in {p.reps} "
            f"windows (median), from one client timeout after the last sign-in (the first "
            f"expiry of every user, a one-off, has passed), while every one of {n} users "
            f"heartbeats (encrypted) at the advertised "
            f"{r['heartbeat_interval_s']:.2f} s ({rate:.0f}/s, resent after "
            f"0.4 s if unanswered as ClientCore does; {load['heartbeats_resent']} resent, "
            f"{r['server_drops_in_window']} dropped by the server's full socket buffer in the "
            "window); users_100k_echo_cpu_pct: a plaintext echo server (no crypto) fed the same "
            "datagram rate from as many addresses, the same encrypted datagrams; ours now also "
            "decrypts every heartbeat and encrypts its answer"
            + ("" if n >= FULL_USERS else f"; {n} users in {p.mode} mode, at the same rate")
        )
        self.details["users"] = r

    # -- 2b. against earlier commits, in this run --

    def history(self) -> None:
        """Issue 10: encryption adds at most 0.3 to the DATA -> ACK ratio to raw UDP; issue 13:
        the cores' work per message at least 2x faster than at its start. Both judged against
        the earlier commit run beside this checkout, in this run (bench.against)."""
        p = self.plan
        r = against.p2p(against.PRE_ENCRYPTION, reps=p.reps, pings=p.pings)
        self.put("p2p_vs_raw_before_encryption", None, samples=r["before_vs_raw"])
        self.put("p2p_vs_raw_beside_it", None, samples=r["now_vs_raw"])
        added = [n - b for n, b in zip(r["now_vs_raw"], r["before_vs_raw"], strict=True)]
        self.put("encryption_adds_to_p2p_vs_raw", None, samples=added)
        self.details["against_p2p"] = r
        self.notes["encryption_adds_to_p2p_vs_raw"] = (
            f"DATA -> ACK p50 / raw UDP p50 of this checkout minus that of {r['rev']} (the last "
            "commit without encryption, its own bench.p2p and pure-Python core, from a git "
            "worktree), each repetition's raw UDP ping-pong taken between the two; median of "
            f"{p.reps} interleaved repetitions (details.against_p2p)"
        )
        c = against.core(against.ISSUE_13_START, reps=p.reps, messages=max(p.pings, 200))
        self.put("core_message_us_issue_start", None, samples=c["before_us"])
        self.put("core_message_us_beside_it", None, samples=c["now_us"])
        self.put("core_speedup_vs_issue_start", None, samples=c["speedup"])
        self.details["against_core"] = c
        self.notes["core_speedup_vs_issue_start"] = (
            f"core_message_us of {c['rev']} (where issue 13 was measured; its own "
            "bench.corecost, pure-Python core, from a git worktree) divided by this "
            f"checkout's, run alternately; median of {p.reps} repetitions (details.against_core)"
        )

    # -- 5. liveness --

    def liveness(self) -> None:
        p = self.plan
        with concurrent.futures.ThreadPoolExecutor(2) as ex:  # both wait on timers, not CPU
            c = ex.submit(liveness.client_crash, p.victims, self.loop)
            s = ex.submit(liveness.server_crash, p.victims, self.loop)
            cr, sr = c.result(), s.result()
        self.put(
            "client_crash_detect_s",
            None,
            f"kill -9 of a chat-client -> its LOOKUP answers 'not found' (polled every "
            f"{cr['poll_s'] * 1000:.0f} ms, by an observer signed in over a secure session); "
            f"median of {len(cr['samples_s'])}, max {max(cr['samples_s']):.2f} s",
            samples=cr["samples_s"],
        )
        self.put(
            "server_crash_detect_s",
            None,
            f"kill -9 of chat-server -> chat-client processes exit by themselves (exit codes "
            f"{sorted(set(sr['exit_codes']))}); median of {len(sr['samples_s'])}, "
            f"max {max(sr['samples_s']):.2f} s",
            samples=sr["samples_s"],
        )
        self.details["client_crash_s"] = cr["samples_s"]
        self.details["server_crash_s"] = sr["samples_s"]
        noticed = [x for x in sr["noticed_s"] if x is not None]
        if noticed:
            self.put(
                "server_crash_notice_s",
                None,
                "kill -9 of chat-server -> the client prints 'lost contact with the server'",
                samples=noticed,
            )
        self.details["server_crash_exit_codes"] = sr["exit_codes"]

    # -- all --

    def goals(self) -> dict[str, bool | None]:
        self.summary.update(goals.derived(self.summary))
        for key in goals.DERIVED:  # every derived key present: null with a reason if its parts
            if self.summary.get(key) is None:  # were not measured (or below resolution)
                self.summary[key] = None
                self.unavailable.setdefault(key, "a figure it is computed from is missing")
        return goals.judge(self.summary)

    def run(self, only: set[str] | None) -> dict[str, Any]:
        t0 = time.monotonic()
        sections: list[tuple[str, list[str], Callable[[], None]]] = [
            ("lookup", ["lookup_per_s", "echo_ceiling_per_s", "lookup_vs_echo"], self.lookups),
            (
                "rtt",
                [
                    "p2p_rtt_p50_us",
                    "p2p_rtt_p99_us",
                    "raw_udp_rtt_p50_us",
                    "bulk_1mib_ms",
                    "enet_bulk_1mib_ms",
                    "p2p_vs_raw",
                    "bulk_vs_enet",
                ],
                self.messages,
            ),
            ("loss", ["bulk_1mib_loss10_ms"], self.loss),
            ("bottleneck", ["bottleneck_goodput_ratio", "bottleneck_jain"], self.bottleneck),
            ("users", ["users_100k_rss_mb", "users_100k_hb_cpu_pct"], self.users),
            (
                "cores",
                ["core_message_us", "crypto_us_per_message", "core_heartbeat_us"],
                self.cores,
            ),
            ("liveness", ["client_crash_detect_s", "server_crash_detect_s"], self.liveness),
            (
                "history",
                ["encryption_adds_to_p2p_vs_raw", "core_speedup_vs_issue_start"],
                self.history,
            ),
        ]
        for name, keys, fn in sections:
            if only is None or name in only:
                self.section(name, keys, fn)
        judged = self.goals()  # (adds the derived ratios to the summary first)
        out: dict[str, Any] = {
            "mode": self.plan.mode,
            "loop": self.loop,
            "loops_measured": self.loops,
            **dict(sorted(self.summary.items())),
            "goals": judged,
            "spread": dict(sorted(self.spread.items())),
            "notes": self.notes,
            "unavailable": self.unavailable,
            "errors": self.errors,
            "environment": environment(),
            "elapsed_s": round(time.monotonic() - t0, 1),
            "details": finite(self.details),
        }
        return out


def finite(x: Any) -> Any:
    """``x`` with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return x


def environment() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, cwd=procs.ROOT, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "enet": baselines.enet_unavailable() or "pyenet",
        "core": chat_protocol.core_kind(),
    }


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--quick",
        action="store_const",
        dest="mode",
        const="quick",
        help="a few minutes on 2 cores (the default; `make bench`)",
    )
    g.add_argument(
        "--full",
        action="store_const",
        dest="mode",
        const="full",
        help="more repetitions, longer windows, more points (`make bench-full`)",
    )
    g.add_argument(
        "--smoke",
        action="store_const",
        dest="mode",
        const="smoke",
        help="a miniature of every measurement, for the smoke test",
    )
    p.add_argument(
        "--out", type=Path, default=RESULTS, help="where to write (default: %(default)s)"
    )
    p.add_argument(
        "--only", help="comma-separated: lookup,rtt,loss,bottleneck,users,cores,liveness,history"
    )
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops its children and deletes its
    # network namespace.
    signal.signal(signal.SIGTERM, _terminate)
    plan = PLANS[args.mode or "quick"]
    only = set(args.only.split(",")) if args.only else None
    bench = Bench(plan, args.out)
    summary = bench.run(only)
    args.out.mkdir(parents=True, exist_ok=True)
    table = report.table(summary)
    summary_path = args.out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    (args.out / "summary.md").write_text(table)
    plots = report.plots(summary, bench.samples, args.out)
    print(table)
    print(
        f"wrote {summary_path}, {args.out / 'summary.md'}" + "".join(f", {p}" for p in plots),
        file=sys.stderr,
    )
    if bench.errors:
        print("some measurements failed:\n  " + "\n  ".join(bench.errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
