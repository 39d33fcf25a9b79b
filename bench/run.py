"""Run the benchmarks: ``python -m bench.run --quick`` (``make bench``) or ``--full``.

Every figure is measured beside its baseline in the same run, and the goals are judged on ratios,
never on absolute times (they move from run to run):

1. Directory lookups per second (real chat-server, N signed-in clients in a load process, a fixed
   number of LOOKUPs outstanding each) against the echo ceiling: a minimal UDP echo server on the
   same event loop, hit by the same load process. Goal: lookups >= 50 % of the echo ceiling.
2. Reliable direct message round trip between two clients (send -> every chunk acknowledged),
   p50 and p99, against blocking Python UDP ping-pong and ENet reliable ping-pong.
   Goal: p50 <= 2x raw UDP.
3. A 1 MiB message at 0 % and 10 % loss (iptables in a network namespace), against ENet sending
   1 MiB reliably. Goal: <= 10x ENet at 0 % loss, and it completes at 10 % loss.
4. 100 000 signed-in users on one server: its resident memory, and the CPU their heartbeats cost
   at the interval the server advertises (beside an echo server fed the same datagram rate).
   Goals: <= 200 MB, heartbeats <= 50 % of one core.
5. Liveness: kill -9 of a client -> gone from the directory; kill -9 of the server -> clients exit.

Writes bench/results/summary.json, summary.md, rtt_distribution.png and lookup_throughput.png,
and prints the Markdown table. Exit status 1 if a measurement could not be made (the summary is
written anyway, with null and a reason for what is missing).
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

from bench import baselines, liveness, procs, report

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1 << 20
LOSS = 0.10


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
    loss_bulk_reps: int
    users: int
    users_window_s: float
    victims: int


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
        loss_bulk_reps=3,
        users=100_000,
        users_window_s=15.0,
        victims=3,
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
        loss_bulk_reps=5,
        users=100_000,
        users_window_s=30.0,
        victims=8,
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
        loss_bulk_reps=1,
        users=300,
        users_window_s=0.6,
        victims=1,
    ),
}


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return float(s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))])


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

    # -- bookkeeping --

    def put(self, key: str, value: float | int | None, note: str = "") -> None:
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
            with (
                procs.chat_server(loop, cpu=procs.FAR) as srv,
                procs.echo_server(loop, cpu=procs.FAR) as echo,
            ):
                if srv.loop != loop or echo.loop != loop:
                    raise RuntimeError(f"asked for {loop}, servers run {srv.loop}/{echo.loop}")
                for _ in range(p.reps):
                    for n in ns:  # interleaved: drift on this machine hits both alike
                        for mode, target in (("lookup", srv), ("echo", echo)):
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
                                ],
                                timeout_s=60 + p.lookup_s,
                                loop=loop,
                                cpu=procs.NEAR,
                            )
                            runs[mode].setdefault(n, []).append(r)
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
                    }
                    for n, rs in sorted(runs[mode].items())
                ]
            curves[loop] = curve
            best_l = max(curve["lookup"], key=lambda c: c["per_s"])
            best_e = max(curve["echo"], key=lambda c: c["per_s"])
            suffix = "" if loop == self.loop else f"_{loop}"
            self.put(f"lookup_per_s{suffix}", best_l["per_s"])
            self.put(f"echo_ceiling_per_s{suffix}", best_e["per_s"])
            self.put(f"lookup_vs_echo{suffix}", best_l["per_s"] / best_e["per_s"])
            per_cpu_l = best_l["per_s"] / best_l["server_cpu_frac"]
            per_cpu_e = best_e["per_s"] / best_e["server_cpu_frac"]
            self.put(f"lookup_per_cpu_s{suffix}", per_cpu_l)
            self.put(f"echo_per_cpu_s{suffix}", per_cpu_e)
            self.put(f"lookup_vs_echo_per_cpu{suffix}", per_cpu_l / per_cpu_e)
        self.notes["lookup_per_s"] = (
            f"peak over {list(p.clients)} clients x {p.window} LOOKUPs outstanding, median of "
            f"{p.reps} x {p.lookup_s} s, {self.loop}; the load process is one Python process "
            "on the other core"
        )
        self.notes["lookup_vs_echo_per_cpu"] = (
            "replies per second of server CPU time, ours / echo: the same comparison when the "
            "load generator, not the server, is the limit"
        )
        self.details["lookup_curves"] = curves

    # -- 2 and 3. messages --

    def p2p(
        self, prefix: list[str], *, pings: int, bulk_reps: int, warmup: int = 50
    ) -> dict[str, Any]:
        argv = [*prefix, procs.PY, "-m", "bench.p2p", "--loop", self.loop]
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
        enet: list[dict[str, Any]] = []
        for _ in range(p.reps):  # interleaved repetitions
            ours.append(self.p2p([], pings=p.pings, bulk_reps=p.bulk_reps))
            raw.append(
                procs.run_json(
                    [procs.PY, "-m", "bench.baselines", "udp", "--pings", str(p.pings)],
                    timeout_s=120,
                )
            )
            if not enet_missing:
                enet.append(self.enet([], pings=p.pings, bulk_reps=p.bulk_reps))

        def stat(runs: list[dict[str, Any]], key: str, q: float) -> float:
            return median([pct(r[key], q) for r in runs])

        # The goal compares like with like: the direct round trip between the two clients (first
        # DATA sent -> its ACK back), as the raw UDP and ENet ping-pongs are. A whole send() also
        # asks the directory for the receiver's address first: reported beside it.
        rtt50 = stat(ours, "data_ack_us", 0.5)
        raw50 = stat(raw, "rtt_us", 0.5)
        self.put("p2p_rtt_p50_us", rtt50)
        self.put("p2p_rtt_p99_us", stat(ours, "data_ack_us", 0.99))
        self.put("send_rtt_p50_us", stat(ours, "rtt_us", 0.5))
        self.put("send_rtt_p99_us", stat(ours, "rtt_us", 0.99))
        self.put("raw_udp_rtt_p50_us", raw50)
        self.put("raw_udp_rtt_p99_us", stat(raw, "rtt_us", 0.99))
        self.put("p2p_vs_raw", rtt50 / raw50)
        self.put("send_vs_raw", self.summary["send_rtt_p50_us"] / raw50)
        self.notes["p2p_rtt_p50_us"] = (
            f"direct round trip between two clients: the first DATA of a message sent -> its ACK "
            f"back (MessageDelivered), {p.pings} messages x {p.reps} runs (median of per-run "
            "percentiles)"
        )
        self.notes["send_rtt_p50_us"] = (
            "ClientCore.send() -> MessageDelivered: the sender's directory LOOKUP of the receiver "
            "(which every send makes), then the direct DATA -> ACK"
        )
        self.notes["raw_udp_rtt_p50_us"] = "blocking Python sendto/recv ping-pong, 48 bytes"
        bulk = [x for r in ours for x in r["bulk_ms"]]
        self.put("bulk_1mib_ms", median(bulk))
        self.notes["bulk_1mib_ms"] = (
            f"{p.bulk_bytes} bytes, send() -> delivered, median of {len(bulk)}; "
            f"retransmissions: {sum(r['bulk_retransmissions'] for r in ours)}"
        )
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
                ],
                enet_missing,
            )
            return
        e50 = stat(enet, "rtt_us", 0.5)
        self.put("enet_rtt_p50_us", e50)
        self.put("enet_rtt_p99_us", stat(enet, "rtt_us", 0.99))
        self.put("p2p_vs_enet", rtt50 / e50)
        enet_bulk = [x for r in enet for x in r["bulk_ms"]]
        self.put("enet_bulk_1mib_ms", median(enet_bulk))
        self.put("bulk_vs_enet", self.summary["bulk_1mib_ms"] / self.summary["enet_bulk_1mib_ms"])
        self.samples["enet"] = [x for r in enet for x in r["rtt_us"]]
        self.notes["enet_rtt_p50_us"] = "pyenet reliable packets on one channel, service(1) loop"

    def loss(self) -> None:
        p = self.plan
        why = procs.netns_unavailable()
        keys = ["bulk_1mib_loss10_ms", "enet_bulk_1mib_loss10_ms", "bulk_loss10_vs_enet"]
        if why:
            self.missing(keys, why)
            return
        with procs.lossy_netns(LOSS) as ns:
            # Two warm-up messages: the receiver's LOOKUP of the sender happens on the first.
            r = self.p2p(ns, pings=0, bulk_reps=p.loss_bulk_reps, warmup=2)
            e = (
                None
                if baselines.enet_unavailable()
                else self.enet(ns, pings=0, bulk_reps=p.loss_bulk_reps, warmup=2)
            )
        self.put(
            "bulk_1mib_loss10_ms",
            median(r["bulk_ms"]),
            f"{p.bulk_bytes} bytes, {LOSS:.0%} of UDP datagrams dropped at random (iptables "
            f"statistic, every datagram of the server and both peers), median of "
            f"{len(r['bulk_ms'])}; retransmissions {r['bulk_retransmissions']}; includes the "
            "sender's LOOKUP (a lost one is retried after 0.4 s)",
        )
        self.details["bulk_loss10_ms"] = r["bulk_ms"]
        if e is None:
            self.missing(keys[1:], baselines.enet_unavailable() or "")
            return
        self.put("enet_bulk_1mib_loss10_ms", median(e["bulk_ms"]))
        self.put("bulk_loss10_vs_enet", self.summary["bulk_1mib_loss10_ms"] / median(e["bulk_ms"]))
        self.details["enet_bulk_loss10_ms"] = e["bulk_ms"]

    # -- what the cores alone cost --

    def cores(self) -> None:
        p = self.plan
        r = procs.run_json(
            [
                procs.PY,
                "-m",
                "bench.corecost",
                "--users",
                str(p.users),
                "--messages",
                str(p.pings),
                "--bulk-bytes",
                str(p.bulk_bytes),
                "--bulk-reps",
                str(p.bulk_reps),
            ],
            timeout_s=300,
        )
        for k in (
            "core_message_us",
            "core_heartbeat_us",
            "core_lookup_us",
            "core_expiry_repush_us",
            "core_sign_in_us",
        ):
            self.put(k, r[k])
        self.put("core_bulk_1mib_ms", r["core_bulk_ms"])
        self.notes["core_message_us"] = (
            "Python work of the three cores (sender, server, receiver) per small message, "
            "send() -> delivered, in one process without sockets: a floor under p2p_rtt_p50_us"
        )
        self.notes["core_heartbeat_us"] = (
            f"ServerCore per HEARTBEAT with {r['users']} users (feed, drain, next_timer), no "
            "socket or event loop; core_expiry_repush_us: per user, each time its expiry entry "
            f"comes due (every {r['timeout_s']:.1f} s) and is pushed back"
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
        timeout = 180 + p.users / 500 + 3 * p.users_window_s
        where = "a network namespace of its own (loopback only)"
        if procs.netns_unavailable() is None:
            with procs.lossy_netns(0) as ns:
                r = procs.run_json([*ns, *cmd], timeout_s=timeout, loop=self.loop)
        else:
            where = "the host's loopback"
            r = procs.run_json(cmd, timeout_s=timeout, loop=self.loop)
        n = r["users"]
        self.put("users_count", n)
        self.put(
            "users_100k_rss_mb",
            r["rss_mb"],
            f"VmRSS of chat-server with {n} users signed in (idle server {r['idle_rss_mb']:.1f} "
            f"MB, {r['bytes_per_user']:.0f} bytes per user); {r['online_at_end']} online at the "
            f"end; run in {where}" + ("" if n >= 100_000 else f"; only {n} users in this mode"),
        )
        self.put("users_idle_rss_mb", r["idle_rss_mb"])
        self.put("users_bytes_per_user", r["bytes_per_user"])
        self.put("users_online_at_end", r["online_at_end"])
        self.put("heartbeat_interval_s", r["heartbeat_interval_s"])
        self.put("heartbeats_per_s", r["heartbeats_per_s"])
        self.put("users_100k_hb_cpu_pct", 100 * r["heartbeat_cpu_frac"])
        self.put("users_100k_echo_cpu_pct", 100 * r["echo_cpu_frac"])
        if r["echo_cpu_frac"] > 0.005:  # else below what /proc's clock ticks resolve
            self.put("hb_vs_echo_cpu", r["heartbeat_cpu_frac"] / r["echo_cpu_frac"])
        self.put("heartbeat_cpu_us", 1e6 * r["heartbeat_cpu_frac"] / r["heartbeats_per_s"])
        self.notes["users_100k_hb_cpu_pct"] = (
            f"chat-server CPU time (/proc/PID/stat) over {r['window_s']:.0f} s cut in {p.reps} "
            f"windows (median), from one client timeout after the last sign-in (the first "
            f"expiry of every user, a one-off, has passed), while every user heartbeats at the "
            f"advertised "
            f"{r['heartbeat_interval_s']:.2f} s ({r['heartbeats_per_s']:.0f}/s, resent after "
            f"0.4 s if unanswered as ClientCore does; {r['load']['heartbeats_resent']} resent, "
            f"{r['server_drops_in_window']} dropped by the server's full socket buffer in the "
            "window); users_100k_echo_cpu_pct: the echo server fed the same datagram rate from "
            "as many addresses"
        )
        self.details["users"] = r

    # -- 5. liveness --

    def liveness(self) -> None:
        p = self.plan
        with concurrent.futures.ThreadPoolExecutor(2) as ex:  # both wait on timers, not CPU
            c = ex.submit(liveness.client_crash, p.victims, self.loop)
            s = ex.submit(liveness.server_crash, p.victims, self.loop)
            cr, sr = c.result(), s.result()
        self.put(
            "client_crash_detect_s",
            median(cr["samples_s"]),
            f"kill -9 of a chat-client -> its LOOKUP answers 'not found' (polled every "
            f"{cr['poll_s'] * 1000:.0f} ms); median of {len(cr['samples_s'])}, "
            f"max {max(cr['samples_s']):.2f} s",
        )
        self.put(
            "server_crash_detect_s",
            median(sr["samples_s"]),
            f"kill -9 of chat-server -> chat-client processes exit by themselves (exit codes "
            f"{sorted(set(sr['exit_codes']))}); median of {len(sr['samples_s'])}, "
            f"max {max(sr['samples_s']):.2f} s",
        )
        self.details["client_crash_s"] = cr["samples_s"]
        self.details["server_crash_s"] = sr["samples_s"]
        noticed = [x for x in sr["noticed_s"] if x is not None]
        if noticed:
            self.put(
                "server_crash_notice_s",
                median(noticed),
                "kill -9 of chat-server -> the client prints 'lost contact with the server'",
            )
        self.details["server_crash_exit_codes"] = sr["exit_codes"]

    # -- all --

    def goals(self) -> dict[str, bool | None]:
        s = self.summary

        def cmp(key: str, f: Callable[[float], bool]) -> bool | None:
            v = s.get(key)
            return None if v is None else bool(f(v))

        return {
            "lookups_ge_50pct_of_echo": cmp("lookup_vs_echo", lambda v: v >= 0.5),
            "lookups_ge_50pct_of_echo_per_cpu": cmp("lookup_vs_echo_per_cpu", lambda v: v >= 0.5),
            "p2p_p50_le_2x_raw_udp": cmp("p2p_vs_raw", lambda v: v <= 2.0),
            "bulk_le_10x_enet": cmp("bulk_vs_enet", lambda v: v <= 10.0),
            "bulk_completes_at_10pct_loss": cmp("bulk_1mib_loss10_ms", math.isfinite),
            "users_rss_le_200mb": cmp("users_100k_rss_mb", lambda v: v <= 200.0),
            "heartbeats_le_50pct_core": cmp("users_100k_hb_cpu_pct", lambda v: v <= 50.0),
        }

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
            ("users", ["users_100k_rss_mb", "users_100k_hb_cpu_pct"], self.users),
            ("cores", ["core_message_us", "core_heartbeat_us"], self.cores),
            ("liveness", ["client_crash_detect_s", "server_crash_detect_s"], self.liveness),
        ]
        for name, keys, fn in sections:
            if only is None or name in only:
                self.section(name, keys, fn)
        out: dict[str, Any] = {
            "mode": self.plan.mode,
            "loop": self.loop,
            "loops_measured": self.loops,
            **dict(sorted(self.summary.items())),
            "goals": self.goals(),
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
    p.add_argument("--only", help="comma-separated: lookup,rtt,loss,users,cores,liveness")
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
