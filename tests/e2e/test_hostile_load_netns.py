"""Hostile load on the real server, in a network namespace (root): a flood of sign-ins from one
IP, and a flood of unauthenticated datagrams; a real user meanwhile signs in, looks up, and a
killed client is still removed in time. The figures are printed (``-s``) for the closing note;
asserted is what the issue promises, the real user's timings judged against a baseline measured
in the same test before the flood (see SLOWDOWN and the retries below: the bounds hold on a
loaded 2-core machine). ``CHAT_FLOOD_S`` sets the flood's length (default 10 s; the issue's
figure is 60 s).

The attacker is another host: on a machine with two CPUs or more the flood runs on one and the
victims (server, real users) on another, so that the victim is measured against the attack,
not against the attacking process's share of this machine's CPU."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chat_protocol.const import HANDSHAKE_RETRY_S, Timings
from labkit import local
from labkit.local import ChatServer
from labkit.netns import Netns
from labkit.procs import Reaper, proc_stat

pytestmark = [pytest.mark.e2e, pytest.mark.netns, pytest.mark.slow]

HERE = Path(__file__).parent
FLOOD_S = float(os.environ.get("CHAT_FLOOD_S", "10"))
QUOTA = 256
BASELINE_S = min(3.0, FLOOD_S / 2)
"""How long the real user's latency is measured before the flood, for the baseline."""
SLOWDOWN = 10.0
"""How many times slower than the same run's baseline the real user may be under the flood."""
P99_FLOOR_MS = 50.0
"""The promise on a machine of its own: a lookup's p99 under the flood stays under this (or
SLOWDOWN times the baseline, when the machine is slower than that even without the flood)."""
SIGN_IN_FLOOR_S = 1.0
"""Likewise for the sign-in."""
SIGN_IN_RETRIES = 6
LOOKUP_RETRIES = 2
"""Retries of the protocol's own timers the flood may cost the real user on top of that: widened
on purpose, for a machine that other work loads. There the server gets less than its CPU,
cannot drain the flood at its rate, and its socket buffer drops datagrams, the real user's
among them; each loss costs the sender one retry timer (HANDSHAKE_RETRY_S for a sign-in,
Timings.request_retry_s for a lookup). Seen: a fresh-clone `make test` had a p99 of 149 ms
under the garbage flood on a loaded 2-core machine; this test's own runs beside four other
suites (load average 3 to 9 on 2 cores) had sign-ins up to 2.6 s and p99s up to 510 ms (either
flood), while the same runs' baselines were sign-in under 20 ms and p99 under 5 ms. What is
not allowed is starvation: every lookup must still be answered (``lost == 0``, counted at the
prober's 1 s), and the bounds stay under the prober's and the client's own deadlines."""

_CPUS = sorted(os.sched_getaffinity(0))
ATTACKER = ["taskset", "-c", str(_CPUS[0])] if len(_CPUS) >= 2 else []
VICTIM = ["taskset", "-c", ",".join(map(str, _CPUS[1:]))] if len(_CPUS) >= 2 else []


def rss_mb(pid: int) -> float:
    return proc_stat(pid).rss_kb / 1024


def helper(ns: Netns, cpus: list[str], script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*cpus, *ns.prefix, sys.executable, str(HERE / script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(p: subprocess.Popen[str], timeout: float) -> dict[str, object]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    parsed: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return parsed


@pytest.mark.parametrize(("kind", "rate"), [("hello", 20_000), ("garbage", 100_000)])
def test_a_flood_from_one_host_starves_and_cuts_nobody(
    ns: Netns, reaper: Reaper, tmp_path: Path, kind: str, rate: int
) -> None:
    server = ChatServer.start(
        tmp_path / "server.log",
        reaper=reaper,
        prefix=[*VICTIM, *ns.prefix],
        env={"CHAT_HOME": str(tmp_path)},
        extra_args=["--max-users-per-ip", str(QUOTA)],
    )
    bob = local.piped_client(reaper, "bob", server.port, tmp_path, prefix=[*VICTIM, *ns.prefix])
    bob.wait_signed_in()
    # The baseline: the same measurement, same CPUs, same run, before any flood.
    quiet = helper(
        ns, VICTIM, "prober.py", "carol", "127.0.0.1", server.port, BASELINE_S, "127.0.0.3"
    )
    baseline = result(quiet, BASELINE_S + 30)
    rss_before = rss_mb(server.pid)
    flood = helper(ns, ATTACKER, "flood.py", kind, rate, FLOOD_S, "127.0.0.1", server.port)
    assert flood.stdout is not None
    started = flood.stdout.readline()  # the flood's first line: it sends at its rate from now
    assert '"started": true' in started, started + (flood.stderr.read() if flood.stderr else "")
    # The real user is another host: its own address (all of 127/8 is on the loopback).
    probe = helper(
        ns, VICTIM, "prober.py", "alice", "127.0.0.1", server.port, FLOOD_S / 2, "127.0.0.2"
    )
    log_at_kill = len(server.log())
    os.kill(bob.pid, signal.SIGKILL)
    killed = time.monotonic()
    # Watched while the probe and the flood go on (they are processes of their own).
    removed = server.wait_log(r"\bbob (timed out|signed out)", timeout=20)
    removed_after = time.monotonic() - killed
    measured = result(probe, FLOOD_S + 30)
    sent = result(flood, FLOOD_S + 60)
    rss_after = rss_mb(server.pid)
    flood_names = len(re.findall(r"flood-\d+ signed in", server.log()))
    rate_sent = float(str(sent["sent"])) / float(str(sent["seconds"]))
    print(
        f"\n{kind} flood: {sent['sent']} datagrams in {float(str(sent['seconds'])):.1f} s "
        f"({rate_sent:.0f}/s); server RSS {rss_before:.1f} -> "
        f"{rss_after:.1f} MB; flood names kept {flood_names} (quota {QUOTA}); real user: "
        f"sign-in {float(str(measured['sign_in_s'])):.3f} s, {measured['lookups']} lookups, p50 "
        f"{float(str(measured['p50_ms'])):.2f} ms, p99 {float(str(measured['p99_ms'])):.2f} ms, "
        f"lost {measured['lost']}; "
        f"killed bob removed after {removed_after:.1f} s; without the flood: sign-in "
        f"{float(str(baseline['sign_in_s'])):.3f} s, p99 {float(str(baseline['p99_ms'])):.2f} ms"
    )
    # bob was online until he was killed (the flood cut nobody), and was then removed for
    # his silence: the first line about him leaving is after the kill, and says timed out.
    assert removed.start() >= log_at_kill, f"bob left before he was killed: {removed[0]!r}"
    assert removed[1] == "timed out", removed[0]
    assert baseline["online"] is True and baseline["lost"] == 0, baseline
    assert measured["online"] is True
    sign_in_bound = max(SIGN_IN_FLOOR_S, SLOWDOWN * float(str(baseline["sign_in_s"])))
    sign_in_bound += SIGN_IN_RETRIES * HANDSHAKE_RETRY_S
    assert float(str(measured["sign_in_s"])) < sign_in_bound, (measured, baseline)
    assert measured["lost"] == 0
    p99_bound = max(P99_FLOOR_MS, SLOWDOWN * float(str(baseline["p99_ms"])))
    p99_bound += LOOKUP_RETRIES * Timings().request_retry_s * 1000
    assert float(str(measured["p99_ms"])) < p99_bound, (measured, baseline)
    assert flood_names <= QUOTA
    assert rss_after - rss_before < 20
    assert removed_after <= 10 + 1  # the stated bound, plus a sweep
