"""``make nat-demo``: a chat message across every pair of NAT kinds (issue 21).

For each pair (kind of router-a, kind of router-b) of {none, full-cone, port-restricted,
symmetric}: the NAT lab (compose.nat.yaml, :mod:`labkit.natlab`) up with those kinds, bob
signed in behind router-b (in host-b1's network namespace) and alice behind router-a, alice
sends bob one line, and the time from her ``send`` to bob's line is measured. The path is what
bob's line says: ``alice (via relay): ...`` through the directory's relay, an address
otherwise (direct). Beside each router's intended kind, the verdict of coturn's
``turnutils_natdiscovery`` (RFC 5780, :meth:`labkit.natlab.NatLab.classify`), run once per
router and kind.

Prints a table, writes it as JSON (``--json``), and exits 1 if any pair failed to deliver or
a router's verdict disagrees with its kind.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from labkit.natlab import CLIENT_IMAGE, Classification, NatKind, NatLab, Probe
from labkit.util import LabError

DEMO_PROJECT = "p2p-chat-natdemo"
SERVER_IP = "198.51.100.10"  # compose.nat.yaml's server on wan
SIGN_IN_TIMEOUT_S = 30.0
DELIVERY_TIMEOUT_S = 30.0
"""A line not shown within this is a failed pair (the chat's own delivery timeout is 10 s)."""
UP_ATTEMPTS = 2
KINDS = tuple(NatKind)
PAIRS = tuple(itertools.product(KINDS, KINDS))


@dataclass(frozen=True)
class PairResult:
    kind_a: str
    kind_b: str
    path: str
    """``direct``, ``relay``, or ``failed``."""
    ms: float | None
    """From alice's ``send`` to bob's line (through `docker run` pipes), None if not shown."""
    verdict_a: str
    verdict_b: str
    agrees_a: bool
    agrees_b: bool
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.path != "failed" and self.agrees_a and self.agrees_b


def path_of(line: str) -> str:
    """The path a shown line took: the receiver's line says ``(via relay)``, else an address."""
    return "relay" if "(via relay)" in line else "direct"


def table(rows: Sequence[PairResult]) -> str:
    head = ("router-a", "RFC 5780 a", "router-b", "RFC 5780 b", "path", "ms")
    lines = [
        (
            r.kind_a,
            r.verdict_a + ("" if r.agrees_a else " (DISAGREES)"),
            r.kind_b,
            r.verdict_b + ("" if r.agrees_b else " (DISAGREES)"),
            r.path,
            "-" if r.ms is None else f"{r.ms:.0f}",
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in (head, *lines)) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in (head, *lines)
    )


def exit_code(rows: Sequence[PairResult]) -> int:
    return 0 if rows and all(r.ok for r in rows) else 1


def client(lab: NatLab, host: str, user: str, *extra: str) -> Probe:
    """A chat client (the client image) in ``host``'s network namespace, driven by pipes,
    signed in (``extra``: more chat-client arguments)."""
    name = f"{lab.name}-{user}-{uuid.uuid4().hex[:6]}"
    argv = [
        "docker", "run", "-i", "--rm", "--init", "--name", name,
        "--label", f"com.docker.compose.project={lab.name}",
        "--network", f"container:{lab.container(host).id}",
        CLIENT_IMAGE, "-u", user, "-sip", SERVER_IP, "-sp", "5000", *extra,
    ]  # fmt: skip
    probe = Probe(argv, f"{user}@{host}")
    lab.reaper.track(probe.proc, f"client {user}", probe.transcript)
    lab.probes.append(probe)
    probe.wait_for(lambda line: line.startswith("signed in as"), "sign-in", SIGN_IN_TIMEOUT_S)
    return probe


def deliver(lab: NatLab, token: str, run: str) -> tuple[str, float | None, str]:
    """bob behind router-b, alice behind router-a; alice sends ``token``: (path, ms, line).
    Names carry ``run``: each client container has a new key, and a name is its first key's."""
    bob = client(lab, "host-b1", f"bob-{run}")
    alice = client(lab, "host-a1", f"alice-{run}")
    try:
        assert alice.proc.stdin is not None
        start = time.monotonic()
        alice.proc.stdin.write(f"send bob-{run} {token}\n")
        alice.proc.stdin.flush()
        line = bob.wait_for(lambda x: x.endswith(f": {token}"), "the message", DELIVERY_TIMEOUT_S)
        ms = (time.monotonic() - start) * 1000
        return path_of(line), ms, line
    except AssertionError as exc:
        return "failed", None, str(exc).splitlines()[0]
    finally:
        lab.stop_probes()


def _up(lab: NatLab, attempts: int = UP_ATTEMPTS) -> None:
    """The lab up for this pair; once more from scratch if it did not come up (a healthcheck
    that timed out on a loaded machine); the last LabError otherwise."""
    for attempt in range(attempts):
        try:
            lab.up_all()
            return
        except LabError as exc:
            if attempt == attempts - 1:
                raise
            first = str(exc).splitlines()[0]
            print(f"natdemo: the lab did not come up ({first}); again", file=sys.stderr)
            lab.close()


def _classify(
    lab: NatLab, kind_a: NatKind, kind_b: NatKind
) -> list[tuple[str, NatKind, tuple[str, bool]]]:
    """router-a's and router-b's RFC 5780 verdicts (text, agrees with the kind); a classifier
    run that fails (a STUN answer lost on a loaded machine) is tried once more, then the row
    says so and counts as disagreeing."""
    rows: list[Classification] = []
    failure = ""
    for _ in range(UP_ATTEMPTS):
        try:
            rows = [c for c in lab.classify() if c.router in ("router-a", "router-b")]
            break
        except LabError as exc:
            failure = str(exc).splitlines()[0]
            print(f"natdemo: classifier: {failure}", file=sys.stderr)
    if not rows:
        failed = ("classifier failed", False)
        return [("router-a", kind_a, failed), ("router-b", kind_b, failed)]
    return [(c.router, c.kinds[0], (str(c.observed), c.agrees)) for c in rows]


def run(pairs: Sequence[tuple[NatKind, NatKind]]) -> list[PairResult]:
    verdicts: dict[tuple[str, NatKind], tuple[str, bool]] = {}
    rows: list[PairResult] = []
    lab: NatLab | None = None
    run_id = uuid.uuid4().hex[:6]
    try:
        for n, (kind_a, kind_b) in enumerate(pairs):
            lab = NatLab(DEMO_PROJECT, kinds={"NAT_A": kind_a, "NAT_B": kind_b})
            print(f"-- {kind_a.value} x {kind_b.value}", file=sys.stderr, flush=True)
            _up(lab)
            if ("router-a", kind_a) not in verdicts or ("router-b", kind_b) not in verdicts:
                for router, kind, verdict in _classify(lab, kind_a, kind_b):
                    verdicts[(router, kind)] = verdict
            token = f"hello-{kind_a.value}-{kind_b.value}"
            path, ms, line = deliver(lab, token, f"{run_id}-{n}")
            (text_a, agrees_a), (text_b, agrees_b) = (
                verdicts[("router-a", kind_a)],
                verdicts[("router-b", kind_b)],
            )
            rows.append(
                PairResult(
                    kind_a=kind_a.value,
                    kind_b=kind_b.value,
                    path=path,
                    ms=ms,
                    verdict_a=text_a,
                    verdict_b=text_b,
                    agrees_a=agrees_a,
                    agrees_b=agrees_b,
                    detail=line,
                )
            )
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    finally:
        if lab is not None:
            lab.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.natdemo", description=__doc__)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="KIND_A,KIND_B",
        help="only these pairs (default: all 16)",
    )
    args = parser.parse_args(argv)
    try:
        pairs = [
            (NatKind(a.strip()), NatKind(b.strip()))
            for a, b in (p.split(",", 1) for p in args.pair)
        ] or list(PAIRS)
    except ValueError as exc:
        parser.error(f"--pair: {exc} (kinds: {', '.join(k.value for k in KINDS)})")
    try:
        rows = run(pairs)
    except LabError as exc:
        print(f"natdemo: error: {exc}", file=sys.stderr)
        return 1
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
