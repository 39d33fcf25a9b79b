"""The swarm chaos run's schedule (labkit.chaos.swarmlab.plan), without Docker: one seed gives
one schedule, with each of the swarm's faults the stack allows (in a window of 72 s, as the
three-node test's), one at a time, in the window."""

from __future__ import annotations

import itertools

import pytest

from labkit import swarm as sw
from labkit.chaos.swarmlab import DURATIONS_S, KINDS, NODE_KINDS, SETTLE_S, plan

WORKERS = ["chat-node-2", "chat-node-3"]


@pytest.mark.parametrize("seed", range(1, 8))
def test_a_seed_gives_one_schedule_with_every_swarm_fault(seed: int) -> None:
    faults = plan(seed, 4, WORKERS, 8.0, 80.0)
    assert faults == plan(seed, 4, WORKERS, 8.0, 80.0)
    assert faults != plan(seed + 100, 4, WORKERS, 8.0, 80.0)
    assert {f.kind for f in faults} == set(KINDS)
    for f in faults:
        assert f.at_s >= 8.0 and f.end_s <= 80.0
        lo, hi = DURATIONS_S[f.kind]
        assert lo <= f.duration_s <= hi
        if f.kind == "kill_task":
            assert f.target in {f"{sw.BOTS_SERVICE}.{i}" for i in range(1, 5)}
        elif f.kind in NODE_KINDS:
            assert f.target in WORKERS  # never the manager: the directory runs there
        else:
            assert f.target == sw.SERVER_SERVICE
    for a, b in itertools.pairwise(faults):  # one at a time, settled between
        assert b.at_s >= a.end_s + SETTLE_S


def test_a_single_node_swarm_gets_no_node_faults() -> None:
    faults = plan(3, 2, [], 8.0, 300.0)
    assert {f.kind for f in faults} == {"kill_task", "restart_directory"}


def test_a_short_window_holds_what_fits() -> None:
    assert plan(1, 4, WORKERS, 8.0, 10.0) == []
    with pytest.raises(ValueError):
        plan(1, 0, WORKERS, 8.0, 80.0)


# /proc/net/udp of a directory container with a backlog: the server's socket on port 5000
# (0x1388) with 1.9 MB waiting and 6 433 datagrams dropped, and Docker's DNS socket beside it.
PROC_NET_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 9940: 0B00007F:C374 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4661970 2 000000001e2ea465 0
14056: 00000000:1388 00000000:0000 07 00000000:001C5C80 00:00000000 00000000 10001        0 4662090 2 000000008f1c4ec0 6433
"""  # noqa: E501


def test_the_directory_socket_is_read_from_proc_net_udp() -> None:
    assert sw.udp_socket_stats(PROC_NET_UDP, 5000) == {"rx_queue": 0x1C5C80, "drops": 6433}
    assert sw.udp_socket_stats(PROC_NET_UDP, 50036) == {"rx_queue": 0, "drops": 0}
    assert sw.udp_socket_stats(PROC_NET_UDP, 5001) is None
    assert sw.udp_socket_stats("", 5000) is None
