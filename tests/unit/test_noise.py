"""chat_protocol.secure.noise against published Noise test vectors, and against itself under
attack."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from chat_protocol.secure.errors import DecryptFailed, HandshakeFailed, LocalSecureError
from chat_protocol.secure.noise import (
    IK,
    MAX_MESSAGE_BYTES,
    MAX_NONCE,
    XX,
    CipherState,
    HandshakePattern,
    HandshakeResult,
    HandshakeState,
    HashName,
    KeyPair,
    hkdf,
    protocol_name,
)

VECTORS_FILE = Path(__file__).parent / "data" / "noise_vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text())["vectors"]


def seeded(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return rng.randbytes


def no_random(n: int) -> bytes:
    raise AssertionError("the vectors fix every key: nothing should be drawn")


def _pattern_and_hash(name: str) -> tuple[HandshakePattern, HashName]:
    _, pattern, dh, cipher, hash_name = name.split("_")
    assert (dh, cipher) == ("25519", "ChaChaPoly")
    return {"IK": IK, "XX": XX}[pattern], {"SHA256": HashName.SHA256, "BLAKE2s": HashName.BLAKE2S}[
        hash_name
    ]


def _key(hex_text: str | None) -> KeyPair | None:
    return None if hex_text is None else KeyPair.from_private_bytes(bytes.fromhex(hex_text))


# --- published vectors ---------------------------------------------------------------------------


def test_the_vector_file_holds_every_case_we_claim() -> None:
    names = {(v["source"], v["protocol_name"]) for v in VECTORS}
    for source in ("cacophony", "snow"):
        for pattern in ("IK", "XX"):
            for hash_name in ("SHA256", "BLAKE2s"):
                assert (source, f"Noise_{pattern}_25519_ChaChaPoly_{hash_name}") in names


@pytest.mark.parametrize(
    "vector", VECTORS, ids=[f"{v['source']}-{v['protocol_name']}" for v in VECTORS]
)
def test_published_vector(vector: dict[str, Any]) -> None:
    pattern, hash_name = _pattern_and_hash(vector["protocol_name"])
    assert protocol_name(pattern, hash_name).decode() == vector["protocol_name"]
    remote = vector.get("init_remote_static")
    initiator = HandshakeState(
        pattern=pattern,
        initiator=True,
        random_bytes=no_random,
        prologue=bytes.fromhex(vector["init_prologue"]),
        s=_key(vector.get("init_static")),
        e=_key(vector["init_ephemeral"]),
        rs=bytes.fromhex(remote) if remote else None,
        hash_name=hash_name,
    )
    responder = HandshakeState(
        pattern=pattern,
        initiator=False,
        random_bytes=no_random,
        prologue=bytes.fromhex(vector["resp_prologue"]),
        s=_key(vector.get("resp_static")),
        e=_key(vector["resp_ephemeral"]),
        hash_name=hash_name,
    )
    messages = vector["messages"]
    handshake_messages = len(pattern.messages)
    for i, message in enumerate(messages[:handshake_messages]):
        writer, reader = (initiator, responder) if i % 2 == 0 else (responder, initiator)
        payload = bytes.fromhex(message["payload"])
        sent = writer.write_message(payload)
        assert sent.hex() == message["ciphertext"]
        assert reader.read_message(sent) == payload
    assert initiator.finished and responder.finished
    ini, res = initiator.result(), responder.result()
    assert ini.handshake_hash == res.handshake_hash
    if "handshake_hash" in vector:
        assert ini.handshake_hash.hex() == vector["handshake_hash"]
    assert initiator.s is not None and responder.s is not None
    assert ini.remote_static == responder.s.public
    assert res.remote_static == initiator.s.public
    # Transport messages keep alternating, starting with whoever's turn follows the handshake.
    for i, message in enumerate(messages[handshake_messages:], start=handshake_messages):
        sender, receiver = (ini, res) if i % 2 == 0 else (res, ini)
        payload = bytes.fromhex(message["payload"])
        sent = sender.send.encrypt_with_ad(b"", payload)
        assert sent.hex() == message["ciphertext"]
        assert receiver.receive.decrypt_with_ad(b"", sent) == payload


# --- HKDF ----------------------------------------------------------------------------------------


@given(
    ck=st.binary(min_size=32, max_size=32),
    ikm=st.sampled_from([0, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
)
def test_hkdf_is_rfc5869_with_the_chaining_key_as_salt(ck: bytes, ikm: bytes) -> None:
    for outputs in (2, 3):
        expected = HKDF(algorithm=hashes.SHA256(), length=32 * outputs, salt=ck, info=b"").derive(
            ikm
        )
        got = hkdf(HashName.SHA256, ck, ikm, outputs)
        assert b"".join(got) == expected
        assert all(len(part) == 32 for part in got)


def test_hkdf_refuses_other_output_counts() -> None:
    with pytest.raises(LocalSecureError):
        hkdf(HashName.SHA256, bytes(32), b"", 4)


def test_long_protocol_names_are_hashed() -> None:
    assert len(protocol_name(IK, HashName.SHA256)) == 32  # exactly HASHLEN: padded, not hashed
    assert len(protocol_name(XX, HashName.BLAKE2S)) == 33  # hashed


# --- round trips with fresh keys -----------------------------------------------------------------


def ik_pair(
    seed: int, *, prologue: bytes = b"p", responder_prologue: bytes | None = None
) -> tuple[HandshakeState, HandshakeState, KeyPair, KeyPair]:
    rnd = seeded(seed)
    i_static, r_static = KeyPair.generate(rnd), KeyPair.generate(rnd)
    initiator = HandshakeState(
        pattern=IK,
        initiator=True,
        random_bytes=rnd,
        prologue=prologue,
        s=i_static,
        rs=r_static.public,
    )
    responder = HandshakeState(
        pattern=IK,
        initiator=False,
        random_bytes=rnd,
        prologue=prologue if responder_prologue is None else responder_prologue,
        s=r_static,
    )
    return initiator, responder, i_static, r_static


def run(
    pattern: HandshakePattern, a: HandshakeState, b: HandshakeState
) -> tuple[HandshakeResult, HandshakeResult]:
    for i in range(len(pattern.messages)):
        writer, reader = (a, b) if i % 2 == 0 else (b, a)
        payload = f"message {i}".encode()
        assert reader.read_message(writer.write_message(payload)) == payload
    return a.result(), b.result()


@given(seed=st.integers(0, 2**32), payload=st.binary(max_size=300))
@settings(max_examples=examples(30), deadline=None)
def test_ik_round_trip(seed: int, payload: bytes) -> None:
    initiator, responder, i_static, r_static = ik_pair(seed)
    assert responder.read_message(initiator.write_message(payload)) == payload
    assert responder.rs == i_static.public  # learned from message 1
    assert initiator.read_message(responder.write_message(payload)) == payload
    ini, res = initiator.result(), responder.result()
    assert ini.remote_static == r_static.public and res.remote_static == i_static.public
    assert ini.handshake_hash == res.handshake_hash
    ct = ini.send.encrypt_with_ad(b"", payload)
    assert res.receive.decrypt_with_ad(b"", ct) == payload
    ct = res.send.encrypt_with_ad(b"ad", payload)
    assert ini.receive.decrypt_with_ad(b"ad", ct) == payload


@given(seed=st.integers(0, 2**32))
@settings(max_examples=examples(20), deadline=None)
def test_xx_round_trip_learns_both_keys(seed: int) -> None:
    rnd = seeded(seed)
    a_static, b_static = KeyPair.generate(rnd), KeyPair.generate(rnd)
    a = HandshakeState(pattern=XX, initiator=True, random_bytes=rnd, s=a_static)
    b = HandshakeState(pattern=XX, initiator=False, random_bytes=rnd, s=b_static)
    ra, rb = run(XX, a, b)
    assert ra.remote_static == b_static.public and rb.remote_static == a_static.public
    assert ra.send.encrypt_with_ad(b"", b"x") != rb.send.encrypt_with_ad(b"", b"x")


def test_two_handshakes_with_the_same_static_keys_get_different_keys() -> None:
    # Forward secrecy needs fresh ephemerals: the same static keys must not give the same session.
    rnd = seeded(7)
    i_static, r_static = KeyPair.generate(rnd), KeyPair.generate(rnd)
    hashes_seen = set()
    for _ in range(2):
        i = HandshakeState(
            pattern=IK, initiator=True, random_bytes=rnd, s=i_static, rs=r_static.public
        )
        r = HandshakeState(pattern=IK, initiator=False, random_bytes=rnd, s=r_static)
        hashes_seen.add(run(IK, i, r)[0].handshake_hash)
    assert len(hashes_seen) == 2


# --- failures ------------------------------------------------------------------------------------


def test_initiator_with_the_wrong_responder_key_fails_at_message_1() -> None:
    rnd = seeded(1)
    i_static, r_static, other = (KeyPair.generate(rnd) for _ in range(3))
    initiator = HandshakeState(
        pattern=IK, initiator=True, random_bytes=rnd, s=i_static, rs=other.public
    )
    responder = HandshakeState(pattern=IK, initiator=False, random_bytes=rnd, s=r_static)
    with pytest.raises(HandshakeFailed):
        responder.read_message(initiator.write_message(b"hi"))


def test_prologues_must_match() -> None:
    initiator, responder, _, _ = ik_pair(2, prologue=b"v1", responder_prologue=b"v2")
    with pytest.raises(HandshakeFailed):
        responder.read_message(initiator.write_message(b""))


def test_every_flipped_byte_of_message_1_is_rejected() -> None:
    initiator, responder, _, _ = ik_pair(3)
    message = initiator.write_message(b"payload")
    for i in range(len(message)):
        tampered = bytearray(message)
        tampered[i] ^= 0x01
        with pytest.raises(HandshakeFailed):
            responder.read_message(bytes(tampered))
    assert responder.read_message(message) == b"payload"  # nothing stuck from the failures


def test_every_truncation_of_message_1_is_rejected() -> None:
    initiator, responder, _, _ = ik_pair(4)
    message = initiator.write_message(b"payload")
    for n in range(len(message)):
        with pytest.raises(HandshakeFailed):
            responder.read_message(message[:n])
    assert responder.read_message(message) == b"payload"


def test_a_forged_response_does_not_abort_the_genuine_handshake() -> None:
    initiator, responder, _, _ = ik_pair(5)
    responder.read_message(initiator.write_message(b""))
    genuine = responder.write_message(b"welcome")
    for i in range(len(genuine)):
        tampered = bytearray(genuine)
        tampered[i] ^= 0x80
        with pytest.raises(HandshakeFailed):
            initiator.read_message(bytes(tampered))
        assert not initiator.finished
    assert initiator.read_message(genuine) == b"welcome"
    assert initiator.result().handshake_hash == responder.result().handshake_hash


def test_a_low_order_ephemeral_key_is_refused() -> None:
    initiator, responder, _, _ = ik_pair(6)
    message = bytearray(initiator.write_message(b""))
    message[:32] = bytes(32)  # the all-zero point: DH output would be all zeros
    with pytest.raises(HandshakeFailed):
        responder.read_message(bytes(message))


@given(data=st.binary(max_size=400))
@settings(max_examples=examples(200), deadline=None)
def test_random_bytes_never_raise_anything_but_handshake_failed(data: bytes) -> None:
    _, responder, _, _ = ik_pair(8)
    with pytest.raises(HandshakeFailed):
        responder.read_message(data)
    assert not responder.finished


def test_oversized_messages() -> None:
    initiator, responder, _, _ = ik_pair(9)
    with pytest.raises(HandshakeFailed):
        responder.read_message(bytes(MAX_MESSAGE_BYTES + 1))
    with pytest.raises(LocalSecureError):
        initiator.write_message(bytes(MAX_MESSAGE_BYTES))
    assert initiator.my_turn_to_write  # the refused write changed nothing
    big = bytes(MAX_MESSAGE_BYTES - 32 - 48 - 16)
    assert len(initiator.write_message(big)) == MAX_MESSAGE_BYTES


def test_calls_out_of_turn_are_local_errors() -> None:
    initiator, responder, _, _ = ik_pair(10)
    with pytest.raises(LocalSecureError):
        responder.write_message(b"")
    with pytest.raises(LocalSecureError):
        initiator.read_message(b"")
    with pytest.raises(LocalSecureError):
        initiator.result()
    run(IK, initiator, responder)
    with pytest.raises(LocalSecureError):
        initiator.write_message(b"")
    with pytest.raises(LocalSecureError):
        responder.read_message(b"")


def test_missing_keys_are_local_errors() -> None:
    rnd = seeded(11)
    with pytest.raises(LocalSecureError):  # IK's pre-message needs the responder's key
        HandshakeState(pattern=IK, initiator=True, random_bytes=rnd, s=KeyPair.generate(rnd))
    initiator = HandshakeState(
        pattern=IK, initiator=True, random_bytes=rnd, rs=KeyPair.generate(rnd).public
    )
    with pytest.raises(LocalSecureError):  # no static key to send
        initiator.write_message(b"")
    with pytest.raises(LocalSecureError):
        KeyPair.from_private_bytes(bytes(31))


# --- CipherState ---------------------------------------------------------------------------------


def test_cipher_state_without_a_key_passes_data_through() -> None:
    cipher = CipherState()
    assert not cipher.has_key()
    assert cipher.encrypt_with_ad(b"ad", b"text") == b"text"
    assert cipher.decrypt_with_ad(b"ad", b"text") == b"text"
    with pytest.raises(LocalSecureError):
        cipher.encrypt_at(0, b"", b"")
    with pytest.raises(LocalSecureError):
        cipher.rekey()


def test_nonce_exhaustion() -> None:
    send, receive = CipherState(bytes(range(32))), CipherState(bytes(range(32)))
    send.set_nonce(MAX_NONCE - 1)
    receive.set_nonce(MAX_NONCE - 1)
    assert receive.decrypt_with_ad(b"", send.encrypt_with_ad(b"", b"last")) == b"last"
    with pytest.raises(LocalSecureError):
        send.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(DecryptFailed):
        receive.decrypt_with_ad(b"", bytes(16))


def test_failed_decryption_leaves_the_nonce() -> None:
    send, receive = CipherState(bytes(32)), CipherState(bytes(32))
    good = send.encrypt_with_ad(b"", b"m")
    for bad in (b"", b"short", bytes(len(good))):
        with pytest.raises(DecryptFailed):
            receive.decrypt_with_ad(b"", bad)
        assert receive.n == 0
    assert receive.decrypt_with_ad(b"", good) == b"m" and receive.n == 1


def test_explicit_nonces_decrypt_out_of_order() -> None:
    send, receive = CipherState(bytes(32)), CipherState(bytes(32))
    sealed = {n: send.encrypt_at(n, b"", n.to_bytes(2, "big")) for n in (5, 0, 3)}
    for n in (3, 5, 0):
        assert receive.decrypt_at(n, b"", sealed[n]) == n.to_bytes(2, "big")
    with pytest.raises(DecryptFailed):
        receive.decrypt_at(4, b"", sealed[3])
    assert send.n == 0 and receive.n == 0


def test_rekey_keeps_both_sides_in_step() -> None:
    a, b = CipherState(bytes(32)), CipherState(bytes(32))
    before = a.encrypt_at(1, b"", b"x")
    a.rekey()
    b.rekey()
    after = a.encrypt_at(1, b"", b"x")
    assert after != before
    assert b.decrypt_at(1, b"", after) == b"x"


def test_mix_key_and_hash_follows_the_spec() -> None:
    from chat_protocol.secure.noise import SymmetricState, hash_bytes

    state = SymmetricState(b"Noise_test", HashName.SHA256)
    ck, h = state.ck, state.h
    state.mix_key_and_hash(bytes(32))
    new_ck, temp_h, temp_k = hkdf(HashName.SHA256, ck, bytes(32), 3)
    assert state.ck == new_ck
    assert state.h == hash_bytes(HashName.SHA256, h + temp_h)
    assert state.cipher.has_key()
    assert state.cipher.encrypt_with_ad(b"", b"x") == CipherState(temp_k).encrypt_with_ad(b"", b"x")
