"""The encrypted Python floor (bench.floor) sends the chat's own datagram sizes and carries a
whole message; no timing is asserted (the benchmark reports its figures as ratios)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bench import floor
from chat_protocol.const import CHUNK_PAYLOAD_BYTES
from chat_protocol.secure.errors import DecryptFailed
from chat_protocol.secure.packets import TRANSPORT_OVERHEAD_BYTES
from chat_protocol.wire.build import encode
from chat_protocol.wire.messages import Ack, Data

ROOT = Path(__file__).resolve().parents[2]
BULK = ("--bulk-bytes", str(10 * CHUNK_PAYLOAD_BYTES + 7), "--bulk-reps", "3")
"""A message of 11 chunks, the last one short."""


def _data(payload: bytes) -> bytes:
    data = Data(
        session=7, stream=3, base=0, seq=5, pn=99, msg_id=1234, offset=0,
        total=len(payload), sender=floor.SENDER, payload=payload,
    )  # fmt: skip
    return encode(data)


def test_a_floor_datagram_is_as_long_as_the_chats_with_the_same_plaintext() -> None:
    chunk = bytes(CHUNK_PAYLOAD_BYTES)
    plaintext = bytes(floor.DATA_OVERHEAD) + chunk
    assert len(plaintext) == len(_data(chunk))
    assert len(_data(b"ping 000123")) == floor.PING_PLAINTEXT
    ack = Ack(session=7, stream=3, seq=5, complete=False, ranges=((0, 60),), pns=((4, 9),))
    assert len(encode(ack)) == floor.ACK_PLAINTEXT
    sealed = floor.Sealer(floor.KEY_TO_SERVER).seal(floor.CHUNK, plaintext)
    assert len(sealed) == len(plaintext) + TRANSPORT_OVERHEAD_BYTES


def test_a_sealed_datagram_opens_only_with_its_key_and_kind() -> None:
    sealed = floor.Sealer(floor.KEY_TO_SERVER).seal(floor.PING, b"hello")
    opener = ChaCha20Poly1305(floor.KEY_TO_SERVER)
    assert floor.open_datagram(opener, sealed) == (floor.PING, b"hello")
    forged = bytes([floor.PONG]) + sealed[1:]  # the kind is authenticated (associated data)
    with pytest.raises(DecryptFailed):
        floor.open_datagram(opener, forged)
    with pytest.raises(DecryptFailed):  # a datagram sealed for the other direction
        floor.open_datagram(ChaCha20Poly1305(floor.KEY_TO_CLIENT), sealed)


def test_the_floor_carries_whole_messages_and_times_each() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.floor", "--pings", "20", "--warmup", "2", *BULK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["rtt_us"]) == 20 and len(result["bulk_ms"]) == 3
    assert all(x > 0 for x in result["rtt_us"] + result["bulk_ms"])
