"""labkit.pcap: the reader of tcpdump's files that the NAT suite's plaintext check relies on, on
captures built here byte by byte, and the search for secrets in what it read."""

from __future__ import annotations

import socket
import struct

import pytest

from labkit.pcap import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, PcapError, Udp, leaks, read_pcap


def ipv4_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes, proto: int = 17) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, proto, 0,
        socket.inet_aton(src[0]), socket.inet_aton(dst[0]),
    )  # fmt: skip
    return header + udp


def frame(packet: bytes, linktype: int, ethertype: int = 0x0800) -> bytes:
    if linktype == LINKTYPE_ETHERNET:
        return bytes(6) + bytes(6) + struct.pack("!H", ethertype) + packet
    return bytes(14) + struct.pack("!H", ethertype) + packet  # Linux cooked (SLL)


def pcap(frames: list[bytes], linktype: int, order: str = "<", snap: int = 262144) -> bytes:
    magic = 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snap, linktype)
    for i, f in enumerate(frames):
        cut = f[:snap]
        out += struct.pack(order + "IIII", 1_700_000_000 + i, 250_000, len(cut), len(f)) + cut
    return out


A, B = ("198.51.100.2", 40000), ("198.51.100.10", 5000)


@pytest.mark.parametrize("linktype", [LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL])
@pytest.mark.parametrize("order", ["<", ">"])
def test_reads_whole_udp_datagrams_and_skips_the_rest(linktype: int, order: str) -> None:
    frames = [
        frame(ipv4_udp(A, B, b"first"), linktype),
        frame(ipv4_udp(A, B, b"not udp", proto=6), linktype),
        frame(b"\x60" + bytes(60), linktype, ethertype=0x86DD),  # IPv6: not read
        frame(ipv4_udp(B, A, b"second"), linktype),
    ]
    got = read_pcap(pcap(frames, linktype, order))
    assert got == [
        Udp(t=1_700_000_000.25, src=A, dst=B, payload=b"first"),
        Udp(t=1_700_000_003.25, src=B, dst=A, payload=b"second"),
    ]


def test_a_datagram_cut_by_the_snap_length_or_the_file_end_is_left_out() -> None:
    whole = frame(ipv4_udp(A, B, b"x" * 10), LINKTYPE_ETHERNET)
    long = frame(ipv4_udp(A, B, b"y" * 200), LINKTYPE_ETHERNET)
    data = pcap([whole, long], LINKTYPE_ETHERNET, snap=100)
    assert [d.payload for d in read_pcap(data)] == [b"x" * 10]
    assert [d.payload for d in read_pcap(pcap([whole, whole], LINKTYPE_ETHERNET)[:-3])] == [
        b"x" * 10
    ]


def test_anything_else_is_refused() -> None:
    with pytest.raises(PcapError, match="not a classic pcap"):
        read_pcap(b"\x0a\x0d\x0d\x0a" + bytes(40))  # pcapng
    with pytest.raises(PcapError, match="link type 101"):
        read_pcap(pcap([], 101))


def test_leaks_finds_a_secret_whole_or_in_pieces_split_across_datagrams() -> None:
    text = "".join(f"{i:04d}" for i in range(60))  # 240 bytes, no piece repeats
    halves = [
        Udp(t=0, src=A, dst=B, payload=b"head" + text[:130].encode()),
        Udp(t=0, src=A, dst=B, payload=text[130:].encode() + b"tail"),
    ]
    assert leaks(halves, [text, "alice", "tail"]) == [text, "tail"]
    assert leaks([halves[1]], [text]) == [text]  # only its end went out: still found
    ciphertext = [Udp(t=0, src=A, dst=B, payload=bytes(range(256)))]
    assert leaks(ciphertext, [text, "alice"]) == []
