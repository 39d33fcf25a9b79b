"""``make nat-demo``: a chat message across every pair of NAT kinds (issue 21).

For each pair (kind of router-a, kind of router-b) of {none, full-cone, port-restricted,
symmetric}: the NAT lab (compose.nat.yaml, :mod:`labkit.natlab`) up with those kinds, bob
signed in behind router-b (in host-b1's network namespace) and alice behind router-a, alice
sends bob one line, and the time from her ``send`` to bob's line is measured. The path is what
bob's line says: ``alice (via relay): ...`` through the directory's relay, an address
otherwise (direct). Beside each router's intended kind, the verdict of coturn's
``turnutils_natdiscovery`` (RFC 5780, :meth:`labkit.natlab.NatLab.classify`), run once per
router and kind.

After the message, each side asks ``whois`` of the other: the endpoints the directory gives
(public as it observed it, private as declared) and the address its session sends to. With
the address bob's line shows for alice, these are the mappings each router made, which the
picture (:mod:`labkit.natpicture`) draws for one pair.

Prints a table, writes it as JSON (``--json``) and the picture beside it (``STEM.png``,
``.svg``, ``.txt``), and exits 1 if any pair failed to deliver or a router's verdict
disagrees with its kind.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from labkit import natpicture
from labkit.natlab import CLIENT_IMAGE, Classification, NatKind, NatLab, Probe
from labkit.util import LabError

DEMO_PROJECT = "p2p-chat-natdemo"
SERVER_IP = "198.51.100.10"  # compose.nat.yaml's server on wan
SIGN_IN_TIMEOUT_S = 30.0
DELIVERY_TIMEOUT_S = 30.0
"""A line not shown within this is a failed pair (the chat's own delivery timeout is 10 s)."""
WHOIS_TIMEOUT_S = 15.0
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
    alice_private: str = ""
    """alice's private endpoint as she declared it (bob's ``whois alice``); "" if unknown."""
    alice_public: str = ""
    """alice's public endpoint as the directory observed it (bob's ``whois alice``)."""
    alice_seen: str = ""
    """alice's endpoint as bob's line shows it (her mapping towards bob); "" via the relay."""
    bob_private: str = ""
    bob_public: str = ""
    bob_seen: str = ""
    """The address alice's session with bob sends to (her ``whois bob``); "" via the relay."""

    @property
    def ok(self) -> bool:
        return self.path != "failed" and self.agrees_a and self.agrees_b


def path_of(line: str) -> str:
    """The path a shown line took: the receiver's line says ``(via relay)``, else an address."""
    return "relay" if "(via relay)" in line else "direct"


_SEEN = re.compile(r"^\S+ \(([^)]*)\)")
_ENDPOINT = re.compile(r"(\S+) \((public|private)\)")


def seen_in(line: str) -> str:
    """The sender's endpoint a shown line gives (``alice (IP:PORT): ...``); "" via the relay."""
    m = _SEEN.match(line)
    return "" if m is None or m.group(1) == "via relay" else m.group(1)


@dataclass(frozen=True)
class Whois:
    public: str = ""
    private: str = ""
    path_to: str = ""
    """The address the session sends to (``path: direct, to ADDR``); "" otherwise."""


def parse_whois(lines: Sequence[str]) -> Whois:
    """The endpoints and path lines of one ``whois`` answer (docs/CLI.md)."""
    public = private = path_to = ""
    for line in lines:
        text = line.strip()
        if text.startswith("endpoints: "):
            for addr, which in _ENDPOINT.findall(text):
                if which == "public":
                    public = public or addr
                else:
                    private = private or addr
        elif text.startswith("path: direct, to "):
            path_to = text.removeprefix("path: direct, to ")
    return Whois(public, private, path_to)


def whois(probe: Probe, name: str, timeout: float = WHOIS_TIMEOUT_S) -> Whois:
    """Ask ``whois NAME`` on a client; its answer, or an empty one if none came in time."""
    mark = len(probe.transcript().splitlines())
    assert probe.proc.stdin is not None
    probe.proc.stdin.write(f"whois {name}\n")
    probe.proc.stdin.flush()
    try:
        probe.wait_for(lambda line: line.startswith("  path: "), f"whois {name}", timeout)
    except AssertionError:
        return Whois()
    return parse_whois(probe.transcript().splitlines()[mark:])


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


def deliver(
    lab: NatLab, token: str, run: str
) -> tuple[str, float | None, str, dict[str, str]]:
    """bob behind router-b, alice behind router-a; alice sends ``token``: (path, ms, line, the
    endpoints each side's whois gave). Names carry ``run``: each client container has a new
    key, and a name is its first key's."""
    bob = client(lab, "host-b1", f"bob-{run}")
    alice = client(lab, "host-a1", f"alice-{run}")
    try:
        assert alice.proc.stdin is not None
        start = time.monotonic()
        alice.proc.stdin.write(f"send bob-{run} {token}\n")
        alice.proc.stdin.flush()
        line = bob.wait_for(lambda x: x.endswith(f": {token}"), "the message", DELIVERY_TIMEOUT_S)
        ms = (time.monotonic() - start) * 1000
        of_bob, of_alice = whois(alice, f"bob-{run}"), whois(bob, f"alice-{run}")
        mappings = {
            "alice_private": of_alice.private, "alice_public": of_alice.public,
            "alice_seen": seen_in(line), "bob_private": of_bob.private,
            "bob_public": of_bob.public, "bob_seen": of_bob.path_to,
        }  # fmt: skip
        return path_of(line), ms, line, mappings
    except AssertionError as exc:
        return "failed", None, str(exc).splitlines()[0], {}
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
            path, ms, line, mappings = deliver(lab, token, f"{run_id}-{n}")
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
                    **mappings,
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
        "--picture",
        type=Path,
        help="the picture's stem (STEM.png, .svg, .txt; default: beside --json, else "
        "build/nat-demo)",
    )
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
    stem = args.picture or (args.json.with_suffix("") if args.json else Path("build/nat-demo"))
    for path in natpicture.write(stem, rows):
        print(f"wrote {path}", file=sys.stderr)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
