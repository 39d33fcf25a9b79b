"""A miniature of every benchmark (``python -m bench.run --smoke``): it runs, and its summary has
every key as a finite number, or null with a stated reason. No timing is asserted: performance
goals are ratios reported by the benchmark run, not test outcomes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.util import in_ci

ROOT = Path(__file__).resolve().parents[2]
IN_CI = in_ci()

REQUIRED = [
    "lookup_per_s",
    "echo_ceiling_per_s",
    "p2p_rtt_p50_us",
    "p2p_rtt_p99_us",
    "raw_udp_rtt_p50_us",
    "bulk_1mib_ms",
    "bulk_1mib_loss10_ms",
    "enet_bulk_1mib_ms",
    "users_100k_rss_mb",
    "client_crash_detect_s",
    "server_crash_detect_s",
    "lookup_vs_echo",
    "p2p_vs_raw",
    "bulk_vs_enet",
    "users_100k_hb_cpu_pct",
]
MAY_BE_UNAVAILABLE = {
    # pyenet not installed: the ENet baselines and their ratios.
    "enet_bulk_1mib_ms",
    "bulk_vs_enet",
    # Not root, or no ip/iptables: no network namespace to drop datagrams in.
    "bulk_1mib_loss10_ms",
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path, str]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "summary.json").read_text()), out, proc.stdout


def test_summary_has_every_key_as_a_finite_number(
    smoke: tuple[dict[str, object], Path, str],
) -> None:
    summary, _, _ = smoke
    unavailable = summary["unavailable"]
    assert isinstance(unavailable, dict)
    for key in REQUIRED:
        assert key in summary, key
        value = summary[key]
        if value is None:
            # Under CI everything the benchmark needs is installed (.ci/run): nothing may be null.
            assert key in MAY_BE_UNAVAILABLE and not IN_CI, f"{key} is null: {unavailable.get(key)}"
            assert unavailable.get(key), f"{key} is null without a reason"
        else:
            assert isinstance(value, float) and math.isfinite(value), (key, value)
    assert summary["loop"] in ("uvloop", "asyncio")
    assert summary["errors"] == []


def test_goals_are_booleans_and_outputs_exist(smoke: tuple[dict[str, object], Path, str]) -> None:
    summary, out, stdout = smoke
    goals = summary["goals"]
    assert isinstance(goals, dict) and goals
    assert all(v is None or isinstance(v, bool) for v in goals.values())
    assert (out / "summary.md").read_text().startswith("## Benchmarks")
    assert "| # | Measure |" in stdout
    assert (out / "rtt_distribution.png").stat().st_size > 0
    assert (out / "lookup_throughput.png").stat().st_size > 0
