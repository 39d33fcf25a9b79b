"""Hostile load on a real chat-client, in a network namespace (root): another process
(tests/e2e/peer_attack.py, signed in as mallory, a real user) writes raw DATA to bob over
real UDP on one authenticated session, while a real alice sends bob messages. The same three
attacks as tests/unit/test_hostile_load.py, measured on the real program: made-up sender
sessions, a large partial's chunk repeated, and gigabytes of partial messages. The figures are
printed (``-s``); asserted is what the issue promises: alice -> bob delivery unaffected, bob
signed in, bob's CPU per repeated chunk within 2x a fresh one, bob's memory within the receive
budget + 64 MB. ``CHAT_HOARD_S`` caps the hoard's length (default 90 s), ``CHAT_REPEAT_S``
sets the repeat phase's (default 10 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from chat_protocol.const import CHUNK_PAYLOAD_BYTES, RECEIVE_BUDGET_BYTES
from labkit import local
from labkit.local import ChatServer
from labkit.netns import Netns
from labkit.procs import Reaper, proc_stat
from labkit.terminal import PipedClient
from labkit.util import ROOT, tail, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.netns, pytest.mark.slow]

ATTACKER = Path(__file__).with_name("peer_attack.py")
HOARD_BYTES = 2 * 1024**3
HOARD_S = float(os.environ.get("CHAT_HOARD_S", "90"))
REPEAT_RATE = 8000
REPEAT_S = float(os.environ.get("CHAT_REPEAT_S", "10"))
BUDGET_MB = RECEIVE_BUDGET_BYTES / 2**20
ATTACKERS = {"proven": [], "unproven": ["--claim", "carol"]}
"""How the attacker starts: ``proven``, as mallory, whose hello bob showed (bob's receive path
counts its key as vouched for: ReceivePath.proven), as any signed-in user can be after one
message; ``unproven``, as mallory whose handshake claims the name carol (the unit tests'
attacker): nothing it sends is ever shown, so its key stays unproven."""
DELIVERY_S = 30.0
"""How long alice's message may take to be delivered (its own give-up time is 10 s)."""


# --- bob, from /proc ----------------------------------------------------------------------------


def status_mb(pid: int, field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak) of process ``pid``, in MiB."""
    stat = proc_stat(pid)
    return {"VmRSS": stat.rss_kb, "VmHWM": stat.hwm_kb}[field] / 1024


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    return proc_stat(pid).cpu_s


def udp_drops(ns: Netns) -> int:
    """Datagrams the namespace's kernel dropped for a full socket buffer (RcvbufErrors)."""
    out = subprocess.run(
        [*ns.prefix, "cat", "/proc/net/snmp"], capture_output=True, text=True, check=True
    ).stdout
    header, values = (line.split() for line in out.splitlines() if line.startswith("Udp:"))
    return int(values[header.index("RcvbufErrors")])


# --- the world: server, alice, bob ---------------------------------------------------------------


@dataclass
class World:
    ns: Netns
    reaper: Reaper
    tmp: Path
    server: ChatServer
    alice: PipedClient
    bob: PipedClient

    @property
    def alice_history(self) -> Path:
        return self.tmp / "alice.history"

    def records(self) -> list[dict[str, object]]:
        """alice's history so far (complete lines only: she may be writing one)."""
        if not self.alice_history.exists():
            return []
        lines = self.alice_history.read_text().split("\n")[:-1]
        return [json.loads(line) for line in lines if line]

    def delivered(self) -> int:
        """alice's ``delivered`` records (bob showed her message and acknowledged it)."""
        return sum(r["event"] == "delivered" for r in self.records())

    def send(self, text: str) -> int:
        """alice sends bob ``text``; the count of delivered records to wait for."""
        target = self.delivered() + 1
        self.alice.feed(f"send bob {text}\n".encode())
        return target

    def wait_delivered(self, text: str, target: int) -> float:
        """Until alice's ``text`` is delivered and shown by bob; the seconds alice took from
        sending it to hearing it was shown (from her history's clock)."""
        wait_until(
            lambda: self.delivered() >= target or self.failed(),
            DELIVERY_S,
            f"alice's {text[:40]!r} to be delivered",
            self.outputs,
        )
        assert not self.failed(), f"alice: {self.failed()}\n{self.outputs()}"
        wait_until(lambda: text in self.bob.stdout(), 5, f"bob to show {text[:40]!r}", self.outputs)
        records = self.records()
        done = [r for r in records if r["event"] == "delivered"][target - 1]
        sent = next(r for r in records if r["event"] == "send" and r["id"] == done["id"])
        return float(str(done["mono"])) - float(str(sent["mono"]))

    def say(self, text: str) -> float:
        return self.wait_delivered(text, self.send(text))

    def failed(self) -> list[str]:
        """alice's error lines (a message not delivered, a refused sender, ...)."""
        return [line for line in self.alice.stderr().splitlines() if "error" in line]

    def outputs(self) -> str:
        return f"{self.alice.outputs()}\n{self.bob.outputs()}"

    def check_still_fine(self, *texts: str) -> None:
        """Each of alice's ``texts`` shown once; alice reported nothing; bob still signed in."""
        shown = self.bob.stdout()
        for text in texts:
            assert shown.count(text) == 1, f"{text[:40]!r} shown {shown.count(text)} times"
        assert not self.failed(), self.outputs()
        assert "lost contact" not in shown + self.alice.stdout(), self.outputs()
        assert self.bob.proc.poll() is None, self.outputs()
        assert self.alice.proc.poll() is None, self.outputs()


@pytest.fixture
def world(ns: Netns, reaper: Reaper, tmp_path: Path) -> World:
    server = ChatServer.start(
        tmp_path / "server.log", reaper=reaper, prefix=ns.prefix, env={"CHAT_HOME": str(tmp_path)}
    )
    # Their own key stores: bob pins mallory's key, which is new every run.
    home = {"CHAT_HOME": str(tmp_path)}
    argv = local.client_argv("alice", server.port, prefix=ns.prefix)
    history = ["--history", str(tmp_path / "alice.history")]
    alice = PipedClient.spawn(reaper, "alice", [*argv, *history], tmp_path, env=home)
    argv = local.client_argv("bob", server.port, prefix=ns.prefix)
    bob = PipedClient.spawn(reaper, "bob", argv, tmp_path, env=home)
    alice.wait_signed_in()
    bob.wait_signed_in()
    w = World(ns, reaper, tmp_path, server, alice, bob)
    w.say("before the attack")
    return w


# --- the attacker ----------------------------------------------------------------------------


class AttackerProc:
    """peer_attack.py in the namespace; its stdout read line by line (``phase ...`` lines,
    then one JSON line), its stderr in a file."""

    def __init__(self, w: World, kind: str, *args: object) -> None:
        self.err_path = w.tmp / "attacker.err"
        env = {**os.environ}
        env["PYTHONPATH"] = os.pathsep.join(
            [*filter(None, env.get("PYTHONPATH", "").split(os.pathsep)), str(ROOT)]
        )
        with self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*w.ns.prefix, sys.executable, str(ATTACKER), *ATTACKERS[kind], *map(str, args)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        w.reaper.track(self.proc, "attacker", self.outputs)
        self.lines: list[str] = []
        out = self.proc.stdout
        assert out is not None
        self._reader = threading.Thread(target=self._read, args=(out,), daemon=True)
        self._reader.start()

    def _read(self, out: IO[str]) -> None:
        for line in out:
            self.lines.append(line.rstrip("\n"))

    def outputs(self) -> str:
        err = self.err_path.read_text(errors="replace") if self.err_path.exists() else ""
        return f"stdout:\n{tail(chr(10).join(self.lines))}\nstderr:\n{tail(err)}"

    def wait_phase(self, name: str, timeout: float) -> None:
        def seen() -> bool:
            if f"phase {name}" in self.lines:
                return True
            if self.proc.poll() is not None and not self._reader.is_alive():
                code = self.proc.returncode
                raise AssertionError(f"the attacker exited ({code}) before phase {name}")
            return False

        wait_until(seen, timeout, f"the attacker's phase {name}", self.outputs)

    def result(self, timeout: float) -> dict[str, float]:
        wait_until(lambda: self.proc.poll() is not None, timeout, "the attacker", self.outputs)
        self._reader.join(5)
        assert self.proc.returncode == 0, self.outputs()
        parsed: dict[str, float] = json.loads(self.lines[-1])
        assert parsed["online"], f"mallory lost its sign-in\n{self.outputs()}"
        return parsed


# --- the attacks -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1025, 100_000])
@pytest.mark.parametrize("kind", ATTACKERS)
def test_a_flood_of_made_up_sessions_does_not_cut_alice_from_bob(
    world: World, kind: str, n: int
) -> None:
    w, bob = world, world.bob.pid
    rss_before, drops_before = status_mb(bob, "VmRSS"), udp_drops(w.ns)
    attacker = AttackerProc(w, kind, "sessions", w.server.host, w.server.port, n)
    attacker.wait_phase("flood", 30)
    cpu_before = cpu_s(bob)
    # alice is silent during the flood: a message of hers would make her receive state at bob
    # the most recently heard one again, and the flood would have to start over to displace it.
    sent = attacker.result(180)
    cpu = cpu_s(bob) - cpu_before
    print(
        f"\n{kind} attacker, {n} made-up sessions: {sent['sent']:.0f} DATA in "
        f"{sent['seconds']:.1f} s ({sent['sent'] / sent['seconds']:.0f}/s), kernel dropped "
        f"{udp_drops(w.ns) - drops_before}, bob answered {sent['from_victim']:.0f}; bob CPU "
        f"{cpu:.2f} s ({cpu / sent['sent'] * 1e6:.0f} us/datagram), RSS {rss_before:.1f} -> "
        f"{status_mb(bob, 'VmRSS'):.1f} MB (HWM {status_mb(bob, 'VmHWM'):.1f})"
    )
    after = f"after the {n}-session flood"
    print(f"alice -> bob after the flood: delivered in {w.say(after):.3f} s")
    w.check_still_fine("before the attack", after)


@pytest.mark.parametrize("kind", ATTACKERS)
def test_repeated_chunks_of_a_large_partial_cost_bob_no_more_than_fresh_ones(
    world: World, kind: str
) -> None:
    w, bob = world, world.bob.pid
    attacker = AttackerProc(w, kind, "repeat", w.server.host, w.server.port, REPEAT_RATE, REPEAT_S)
    attacker.wait_phase("fresh", 30)
    cpu0 = cpu_s(bob)
    attacker.wait_phase("repeat", 60)
    cpu1 = cpu_s(bob)
    during = "during the repeats"
    target = w.send(during)
    attacker.wait_phase("done", REPEAT_S + 60)
    cpu2 = cpu_s(bob)
    sent = attacker.result(30)
    fresh = (cpu1 - cpu0) / sent["fresh_sent"]
    repeated = (cpu2 - cpu1) / sent["repeat_sent"]
    print(
        f"\n{kind} attacker, repeated chunk: bob {repeated * 1e6:.1f} us/datagram "
        f"({cpu2 - cpu1:.2f} s CPU for {sent['repeat_sent']:.0f} in "
        f"{sent['repeat_seconds']:.1f} s) vs fresh {fresh * 1e6:.1f} us/datagram "
        f"({cpu1 - cpu0:.2f} s for {sent['fresh_sent']:.0f} in {sent['fresh_seconds']:.2f} s): "
        f"{repeated / fresh:.2f}x; kernel dropped {sent['kernel_dropped']:.0f}"
    )
    took_during = w.wait_delivered(during, target)
    took_after = w.say("after the repeats")
    print(f"alice -> bob delivered: during in {took_during:.3f} s, after in {took_after:.3f} s")
    w.check_still_fine("before the attack", during, "after the repeats")
    assert repeated <= 2 * fresh


def longer_than_a_chunk(text: str) -> str:
    """``text`` padded past one DATA chunk: a message that needs more room in bob's receive
    budget than the last chunk's worth a full budget may happen to leave free."""
    return f"{text} {'.' * CHUNK_PAYLOAD_BYTES}"


@pytest.mark.parametrize("kind", ATTACKERS)
def test_gigabytes_of_partial_messages_stay_within_bobs_receive_budget(
    world: World, kind: str
) -> None:
    w, bob = world, world.bob.pid
    rss_base, hwm_base = status_mb(bob, "VmRSS"), status_mb(bob, "VmHWM")
    attacker = AttackerProc(w, kind, "hoard", w.server.host, w.server.port, HOARD_BYTES, HOARD_S)
    attacker.wait_phase("hoard", 30)
    cpu_before = cpu_s(bob)
    attacker.wait_phase("half", HOARD_S + 30)  # bob's budget is long full (or refused) by now
    during = longer_than_a_chunk("during the hoard")
    target = w.send(during)
    sent = attacker.result(HOARD_S + 60)
    cpu = cpu_s(bob) - cpu_before
    rss_end, hwm = status_mb(bob, "VmRSS"), status_mb(bob, "VmHWM")
    print(
        f"\n{kind} attacker, hoard: {sent['bytes'] / 2**30:.2f} GiB of partials "
        f"({sent['messages']:.0f} x 4 MiB messages, {sent['sent']:.0f} DATA) in "
        f"{sent['seconds']:.1f} s ({sent['bytes'] / sent['seconds'] / 2**20:.0f} MiB/s), "
        f"kernel dropped {sent['kernel_dropped']:.0f}; bob CPU {cpu:.1f} s; bob RSS "
        f"{rss_base:.1f} MB after sign-in (HWM {hwm_base:.1f}) -> {rss_end:.1f} MB, HWM "
        f"{hwm:.1f} MB (bound: budget {BUDGET_MB:.0f} + 64 = {BUDGET_MB + 64:.0f} MB)"
    )
    assert hwm < BUDGET_MB + 64
    took_during = w.wait_delivered(during, target)
    after = longer_than_a_chunk("after the hoard")
    took_after = w.say(after)
    print(f"alice -> bob delivered: during in {took_during:.3f} s, after in {took_after:.3f} s")
    w.check_still_fine("before the attack", during, after)
