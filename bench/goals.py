"""The goals ``make bench`` judges (issues 13 and 24), in one table: each a ratio or a size taken
in the same run as its baseline, never an absolute time.

Issue 24 restated the goals a Python server cannot reach against an echo server: lookups and
heartbeats are judged against the *encrypted ceiling* of the same run (the echo plus the
server's own decrypt and encrypt, ``ceilings``), and the transport against ENet (pyenet, driven
from Python as we are). The 10 % loss figure's stability over three ``make bench-full`` runs is
judged across runs by ``bench.series``.

``judge(summary)`` gives each goal's name -> met (None when its figure is missing);
``text(name)`` the goal as the README table shows it ("≤ 1.5×").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    figure: str
    """The summary key judged."""
    at_most: bool
    """True: the figure must be <= limit; False: >= limit."""
    limit: float
    unit: str = "×"


GOALS: tuple[Goal, ...] = (
    # Issue 13's goals that issue 24 keeps: the cores' own work, what encryption adds, memory.
    Goal("core_message_le_0.75x_raw_udp", "core_vs_raw", True, 0.75),
    Goal("core_message_2x_faster_than_issue_start", "core_speedup_vs_issue_start", False, 2.0),
    Goal("encryption_adds_le_0.3_to_p2p_vs_raw", "encryption_adds_to_p2p_vs_raw", True, 0.3, ""),
    Goal("users_100k_rss_le_150mb", "users_100k_rss_mb", True, 150.0, " MB"),
    # Issue 24's, which replace the rest of issue 13's: ENet is the peer, the encrypted server
    # the ceiling.
    Goal("bulk_le_2x_enet", "bulk_vs_enet", True, 2.0),
    *(
        Goal(f"bulk_loss{pct}_le_1x_enet", f"bulk_loss{pct}_vs_enet", True, 1.0)
        for pct in (1, 5, 10, 20)
    ),
    Goal("bottleneck_goodput_ge_0.8", "bottleneck_goodput_ratio", False, 0.8, ""),
    Goal("bottleneck_retransmit_le_0.02", "bottleneck_retransmit_share", True, 0.02, ""),
    Goal("bottleneck_jain_ge_0.9", "bottleneck_jain", False, 0.9, ""),
    Goal("bottleneck_tcp_share_ge_0.4", "bottleneck_tcp_share", False, 0.4, ""),
    Goal("p2p_p50_le_2x_enet", "p2p_vs_enet", True, 2.0),
    Goal("p2p_p99_le_2x_enet", "p2p_p99_vs_enet", True, 2.0),
    Goal("first_send_le_5x_enet", "first_send_vs_enet", True, 5.0),
    Goal("lookups_per_cpu_ge_0.8x_ceiling", "lookup_vs_ceiling", False, 0.8),
    Goal("heartbeat_cpu_le_1.25x_ceiling", "hb_vs_ceiling", True, 1.25),
)
BY_NAME = {g.name: g for g in GOALS}


DERIVED = (
    "core_vs_raw",
    "p2p_p99_vs_raw",
    "first_send_ceiling_vs_enet",
    "lookup_ceiling_crypto",
    "lookup_ceiling_core",
    "hb_ceiling_crypto",
    "hb_ceiling_core",
    "lookup_vs_ceiling",
    "hb_vs_ceiling",
)
"""The keys :func:`derived` adds when their parts were measured."""


def derived(s: dict[str, Any]) -> dict[str, float]:
    """Ratios the goals need that no section computes alone (their parts come from two)."""
    out: dict[str, float] = {}
    pairs = {
        "core_vs_raw": ("core_message_us", "raw_udp_rtt_p50_us"),
        "p2p_p99_vs_raw": ("p2p_rtt_p99_us", "raw_udp_rtt_p99_us"),
        # The floor under a first send: its handshake's work alone, against ENet's ping-pong.
        "first_send_ceiling_vs_enet": ("core_handshake_us", "enet_rtt_p50_us"),
    }
    for key, (num, den) in pairs.items():
        a, b = s.get(num), s.get(den)
        if a is not None and b:
            out[key] = a / b
    out.update(ceilings(s))
    for key, (num, den) in {
        "lookup_vs_ceiling": ("lookup_vs_echo_per_cpu", "lookup_ceiling_crypto"),
        "hb_vs_ceiling": ("hb_vs_echo_cpu", "hb_ceiling_crypto"),
    }.items():  # issue 24: the server judged against what an encrypting server can reach
        a, b = s.get(num), out.get(den)
        if a is not None and b:
            out[key] = a / b
    return out


def ceilings(s: dict[str, Any]) -> dict[str, float]:
    """The best ratios goals 1 and 4 allow, from figures of the same run: the echo server's CPU
    per reply plus only the work no encrypted server can skip (``*_crypto``: decrypt the
    request, encrypt the answer), or plus the whole ServerCore (``*_core``); the shell, the
    event loop and the kernel beyond what the echo pays costing nothing."""
    out: dict[str, float] = {}
    per_cpu = s.get("echo_per_cpu_s")
    if per_cpu:
        echo_us = 1e6 / per_cpu
        for key, work in (
            ("lookup_ceiling_crypto", "crypto_server_lookup_us"),
            ("lookup_ceiling_core", "core_lookup_us"),
        ):
            w = s.get(work)
            if w is not None:
                out[key] = echo_us / (echo_us + w)  # lookups per CPU second / the echo's
    pct, rate = s.get("users_100k_echo_cpu_pct"), s.get("heartbeats_per_s")
    if pct and rate:
        echo_hb_us = 1e4 * pct / rate
        for key, work in (
            ("hb_ceiling_crypto", "crypto_server_heartbeat_us"),
            ("hb_ceiling_core", "core_heartbeat_us"),
        ):
            w = s.get(work)
            if w is not None:
                out[key] = (echo_hb_us + w) / echo_hb_us  # CPU per heartbeat / the echo's
    return out


def judge(s: dict[str, Any]) -> dict[str, bool | None]:
    met: dict[str, bool | None] = {}
    for g in GOALS:
        v = s.get(g.figure)
        met[g.name] = None if v is None else bool(v <= g.limit if g.at_most else v >= g.limit)
    return met


def text(name: str) -> str:
    g = BY_NAME[name]
    limit = f"{g.limit:g}"
    return f"{'≤' if g.at_most else '≥'} {limit}{g.unit}"
