"""bench.goals: the derived ratios and the ceilings they judge against."""

from __future__ import annotations

import pytest

from bench import goals

PARTS = {
    "core_message_us": 50.0,
    "raw_udp_rtt_p50_us": 20.0,
    "p2p_rtt_p99_us": 300.0,
    "raw_udp_rtt_p99_us": 100.0,
    "core_handshake_us": 400.0,
    "enet_rtt_p50_us": 25.0,
    "echo_per_cpu_s": 200_000.0,  # 5 us per reply
    "crypto_server_lookup_us": 5.0,
    "core_lookup_us": 15.0,
    "lookup_vs_echo_per_cpu": 0.4,
    "users_100k_echo_cpu_pct": 20.0,
    "heartbeats_per_s": 20_000.0,  # 10 us per heartbeat
    "crypto_server_heartbeat_us": 5.0,
    "core_heartbeat_us": 10.0,
    "hb_vs_echo_cpu": 3.0,
}


def test_derived_gives_every_key_it_declares_from_its_parts() -> None:
    assert set(goals.derived(PARTS)) == set(goals.DERIVED)


def test_the_server_is_judged_against_the_encrypted_ceiling() -> None:
    d = goals.derived(PARTS)
    assert d["lookup_ceiling_crypto"] == pytest.approx(5 / (5 + 5))
    assert d["lookup_vs_ceiling"] == pytest.approx(0.4 / 0.5)
    assert d["hb_ceiling_crypto"] == pytest.approx((10 + 5) / 10)
    assert d["hb_vs_ceiling"] == pytest.approx(3.0 / 1.5)
    assert d["first_send_ceiling_vs_enet"] == pytest.approx(16.0)
    met = goals.judge({**PARTS, **d})
    assert met["lookups_per_cpu_ge_0.8x_ceiling"] is True
    assert met["heartbeat_cpu_le_1.25x_ceiling"] is False


def test_a_missing_part_leaves_its_ratio_out() -> None:
    parts = dict(PARTS)
    del parts["hb_vs_echo_cpu"]
    assert "hb_vs_ceiling" not in goals.derived(parts)
    assert goals.judge(parts)["heartbeat_cpu_le_1.25x_ceiling"] is None
