"""The goals ``make bench`` judges (issue 13), in one table: each a ratio or a size taken in the
same run as its baseline, never an absolute time.

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
    Goal("core_message_le_0.75x_raw_udp", "core_vs_raw", True, 0.75),
    Goal("core_message_2x_faster_than_issue_start", "core_speedup_vs_issue_start", False, 2.0),
    Goal("encryption_adds_le_0.3_to_p2p_vs_raw", "encryption_adds_to_p2p_vs_raw", True, 0.3, ""),
    Goal("p2p_p50_le_1.5x_raw_udp", "p2p_vs_raw", True, 1.5),
    Goal("p2p_p99_le_2x_raw_udp", "p2p_p99_vs_raw", True, 2.0),
    Goal("send_le_3x_raw_udp", "send_vs_raw", True, 3.0),
    Goal("bulk_le_2x_enet", "bulk_vs_enet", True, 2.0),
    Goal("bulk_loss10_le_1.5x_enet", "bulk_loss10_vs_enet", True, 1.5),
    Goal("lookups_per_cpu_ge_0.8x_echo", "lookup_vs_echo_per_cpu", False, 0.8),
    Goal("users_100k_rss_le_150mb", "users_100k_rss_mb", True, 150.0, " MB"),
    Goal("heartbeat_cpu_le_1x_echo", "hb_vs_echo_cpu", True, 1.0),
)
BY_NAME = {g.name: g for g in GOALS}


def derived(s: dict[str, Any]) -> dict[str, float]:
    """Ratios the goals need that no section computes alone (their parts come from two)."""
    out: dict[str, float] = {}
    pairs = {
        "core_vs_raw": ("core_message_us", "raw_udp_rtt_p50_us"),
        "p2p_p99_vs_raw": ("p2p_rtt_p99_us", "raw_udp_rtt_p99_us"),
    }
    for key, (num, den) in pairs.items():
        a, b = s.get(num), s.get(den)
        if a is not None and b:
            out[key] = a / b
    out.update(ceilings(s))
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
