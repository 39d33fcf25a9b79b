"""Reliable direct messages between two clients: small-message round trip and 1 MiB transfer.

``python -m bench.p2p`` starts a real chat-server and a receiving peer (``bench.peer``, its own
process), signs in a sending peer here, and measures from ``ClientCore.send()`` to
``MessageDelivered`` (every chunk acknowledged). Run inside a lossy network namespace
(``ip netns exec``) for the loss figures: the server, both peers and all their traffic are in it.

A send includes the directory LOOKUP of the receiver (the client asks the server where the
receiver is now, unless an answer younger than the directory's liveness bound is cached and the
receiver's session is live: then the send skips it, issue 24) and then DATA -> ACK between the
peers; the second part alone is reported too, from the first DATA leaving to the last ACK
arriving. The receiver's check of the sender's name
(a LOOKUP of its own, cached 60 s) happens on the first message only; warm-up messages take it.

``--first-sends N`` then times N *first* sends (issue 24): each from a sender signed in afresh
(new keys, no session, nothing cached), so a send is the LOOKUP, the Noise handshake with the
receiver, the receiver's check of the new sender's name, and DATA -> ACK.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from bench import procs
from bench.peer import SyncPeer
from chat_protocol.events import MessageDelivered, SendFailed

RECEIVER = "bench-b"
"""Stem of the receiver's name; each run adds a suffix of its own: the servers of one benchmark
run share a home, so a name is bound to the first key that signed in with it (issue 19), and
every run's peers have fresh keys."""


def measure(
    *,
    pings: int,
    warmup: int,
    bulk_bytes: int,
    bulk_reps: int,
    loop: str,
    timeout_s: float,
    first_sends: int = 0,
) -> dict[str, object]:
    procs.pin_self(procs.NEAR)  # the sender here, the server and the receiver on another CPU
    run_tag = os.urandom(4).hex()
    receiver, sender = f"{RECEIVER}-{run_tag}", f"bench-a-{run_tag}"
    with (
        procs.chat_server(loop, cpu=procs.FAR) as srv,
        procs.child(
            [procs.PY, "-m", "bench.peer", "--server", srv.target, "--name", receiver],
            loop=loop,
            cpu=procs.FAR,
        ) as b_proc,
    ):
        assert b_proc.stdout is not None and b_proc.stdin is not None
        b_lines = procs.LineReader(b_proc.stdout)
        b_lines.wait_for("ready", 15)
        # The direct path is what is measured: a handshake that loss keeps unanswered for
        # RELAY_AFTER_S would otherwise move the peers to the directory's relay (its last resort,
        # 36 % loss at 20 % a hop) until the next upgrade try, for a whole run.
        a = SyncPeer(sender, srv.addr, bind_host=srv.host, relay=False)
        try:
            a.sign_in(timeout_s=10)

            def one(text: str, by: SyncPeer = a) -> tuple[float, float]:
                by.first_peer_send_at = None
                t0 = by.now()
                handle = by.core.send(receiver, text, t0)
                by.pump()
                ev = by.run_until(
                    lambda e: isinstance(e, MessageDelivered | SendFailed) and e.handle == handle,
                    timeout_s,
                )
                t1 = by.now()
                if isinstance(ev, SendFailed):
                    raise RuntimeError(f"message not delivered: {ev.reason.value}")
                data_at = by.first_peer_send_at if by.first_peer_send_at is not None else t0
                return t1 - t0, t1 - data_at

            for i in range(warmup):
                one(f"warm-up {i}")
            rtt_us: list[float] = []
            data_ack_us: list[float] = []
            for i in range(pings):
                total, data_part = one(f"ping {i:06d}")
                rtt_us.append(total * 1e6)
                data_ack_us.append(data_part * 1e6)
            retrans_before = a.core.stats.retransmissions
            bulk_ms: list[float] = []
            bulk_data_ms: list[float] = []
            text = "x" * bulk_bytes
            for _ in range(bulk_reps):
                total, data_part = one(text)
                bulk_ms.append(total * 1e3)
                bulk_data_ms.append(data_part * 1e3)
            retrans = a.core.stats.retransmissions - retrans_before
            first_us: list[float] = []
            for i in range(first_sends):
                fresh = SyncPeer(
                    f"bench-f{i}-{run_tag}", srv.addr, bind_host=srv.host, relay=False
                )
                try:
                    fresh.sign_in(timeout_s=10)
                    first_us.append(one(f"first {i}", fresh)[0] * 1e6)
                finally:
                    fresh.close()
        finally:
            a.close()
        b_proc.stdin.close()
        b_stats = json.loads(b_lines.wait_for("{", 10))
    return {
        "loop": srv.loop,
        "rtt_us": rtt_us,
        "data_ack_us": data_ack_us,
        "bulk_bytes": bulk_bytes,
        "bulk_ms": bulk_ms,
        "bulk_data_ms": bulk_data_ms,
        "bulk_retransmissions": retrans,
        "first_send_us": first_us,
        "receiver": b_stats,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pings", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--bulk-bytes", type=int, default=1 << 20)
    p.add_argument("--bulk-reps", type=int, default=5)
    p.add_argument("--loop", default="uvloop", help="event loop of the chat-server child")
    p.add_argument(
        "--first-sends", type=int, default=0, help="first sends to time, each by a new sender"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per message")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    result = measure(
        pings=args.pings,
        warmup=args.warmup,
        bulk_bytes=args.bulk_bytes,
        bulk_reps=args.bulk_reps,
        loop=args.loop,
        timeout_s=args.timeout,
        first_sends=args.first_sends,
    )
    result["elapsed_s"] = time.monotonic() - t0
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
