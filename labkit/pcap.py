"""Whole datagrams captured by tcpdump inside a lab container, and what their bytes contain.

:class:`Tcpdump` runs ``tcpdump -w`` in a container's network namespace (``docker exec``; the
NAT lab's holders and routers run the router image, which has tcpdump) and, once stopped,
gives every UDP datagram it captured, payload included (:func:`read_pcap`). Unlike
:mod:`labkit.capture` (sizes and first bytes, for the pictures) it keeps every byte, so a test
can say what a captured datagram does *not* contain (:func:`leaks`): the NAT suite's proof that
the relay carries no plaintext.

The reader knows classic pcap (what ``tcpdump -w`` writes), microsecond or nanosecond, either
byte order, on Ethernet (link type 1) or Linux cooked (113) links, IPv4 only (the lab's
networks are).
"""

from __future__ import annotations

import contextlib
import struct
import subprocess
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labkit.procs import stop
from labkit.util import LabError, run, wait_until

if TYPE_CHECKING:
    from labkit.compose import Compose

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
_LINK_HEADER = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16}
_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
ETHERTYPE_IPV4 = 0x0800
START_TIMEOUT_S = 30.0
"""`docker exec` of tcpdump on a loaded machine, until it says it listens."""
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Udp:
    """One captured UDP datagram."""

    t: float
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


class PcapError(ValueError):
    """Not a capture this reader knows."""


def read_pcap(data: bytes) -> list[Udp]:
    """Every whole UDP datagram over IPv4 in a classic pcap file (a truncated last record,
    as a capture stopped mid-write leaves, is left out)."""
    if len(data) < 24:
        raise PcapError("shorter than a pcap header")
    try:
        order, unit = _MAGIC[data[:4]]
    except KeyError:
        raise PcapError(f"not a classic pcap file (magic {data[:4].hex()})") from None
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype not in _LINK_HEADER:
        raise PcapError(f"link type {linktype}: only Ethernet and Linux cooked are read")
    link = _LINK_HEADER[linktype]
    record = struct.Struct(order + "IIII")
    out: list[Udp] = []
    at = 24
    while at + record.size <= len(data):
        sec, frac, incl, _orig = record.unpack_from(data, at)
        frame = data[at + record.size : at + record.size + incl]
        at += record.size + incl
        if len(frame) < incl:
            break
        ethertype = struct.unpack_from("!H", frame, link - 2)[0] if len(frame) >= link else 0
        if ethertype != ETHERTYPE_IPV4:
            continue
        ip = frame[link:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:  # IPv4, UDP
            continue
        ihl = (ip[0] & 0x0F) * 4
        if len(ip) < ihl + 8:
            continue
        sport, dport, length = struct.unpack_from("!HHH", ip, ihl)
        payload = ip[ihl + 8 : ihl + length]
        if len(payload) != length - 8:
            continue  # cut by the snap length: not whole
        src = (".".join(str(b) for b in ip[12:16]), sport)
        dst = (".".join(str(b) for b in ip[16:20]), dport)
        out.append(Udp(t=sec + frac * unit, src=src, dst=dst, payload=payload))
    return out


def leaks(datagrams: Iterable[Udp], secrets: Iterable[str], window: int = 24) -> list[str]:
    """The ``secrets`` whose UTF-8 bytes appear in any datagram's payload: whole, or, for a
    secret longer than ``window`` bytes, any of its ``window``-byte pieces at multiples of
    ``window`` (so a secret split across datagrams, as a long message's chunks are, is still
    found)."""
    payloads = [d.payload for d in datagrams]
    found: list[str] = []
    for secret in secrets:
        raw = secret.encode()
        pieces = [raw] if len(raw) <= window else [
            raw[i : i + window] for i in range(0, len(raw) - window + 1, window)
        ]  # fmt: skip
        if any(piece in p for p in payloads for piece in pieces):
            found.append(secret)
    return found


class Tcpdump:
    """``tcpdump -i IFACE -w FILE udp`` in ``service``'s container, until :meth:`stop`."""

    def __init__(self, lab: Compose, service: str, iface: str = "eth0") -> None:
        self.lab = lab
        self.container = lab.container(service).id
        tag = uuid.uuid4().hex[:8]
        self.file = f"/tmp/capture-{tag}.pcap"
        self.pidfile = f"/tmp/capture-{tag}.pid"
        # --immediate-mode: each packet handed over as it comes (not a block of them, which
        # SIGINT would lose); -U: each written as it comes; -Z root: no privilege drop (the
        # file is root's /tmp); the shell records tcpdump's pid for stop() (exec keeps it).
        script = (
            f"echo $$ > {self.pidfile}; exec tcpdump -i {iface} -n -U --immediate-mode "
            f"-Z root -s 0 -w {self.file} udp"
        )
        self.proc = subprocess.Popen(
            ["docker", "exec", self.container, "sh", "-c", script],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lab.reaper.track(self.proc, f"tcpdump in {service}", lambda: "")
        assert self.proc.stderr is not None
        said: list[str] = []
        while not said or "listening on" not in said[-1]:
            line = self.proc.stderr.readline()  # tcpdump says it listens (or warns), or exits
            if not line or len(said) > 8:
                stop(self.proc)
                raise LabError(f"tcpdump in {service} did not start: {''.join(said).strip()}")
            said.append(line)

    def read(self) -> list[Udp]:
        """What it has written so far."""
        got = subprocess.run(
            ["docker", "exec", self.container, "cat", self.file],
            capture_output=True, timeout=STOP_TIMEOUT_S, check=False,
        )  # fmt: skip
        if got.returncode != 0:
            raise LabError(f"the capture {self.file} could not be read: {got.stderr!r}")
        return read_pcap(got.stdout)

    def wait_for(self, done: Callable[[list[Udp]], bool], what: str, timeout: float) -> None:
        """Until what it has written satisfies ``done`` (bounded; an AssertionError naming
        ``what`` otherwise): e.g. until a datagram sent last is in the file, so that every
        earlier one is too."""

        def written() -> bool:
            try:
                return done(self.read())
            except PcapError:  # not even its header yet
                return False

        wait_until(written, timeout, what, interval=0.3)

    def stop(self) -> list[Udp]:
        """Stop tcpdump (SIGINT: it flushes and exits) and read what it captured."""
        with contextlib.suppress(LabError, subprocess.TimeoutExpired):
            run(["docker", "exec", self.container, "sh", "-c", f"kill -INT $(cat {self.pidfile})"],
                timeout=STOP_TIMEOUT_S, check=False)  # fmt: skip
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            stop(self.proc)
        return self.read()
