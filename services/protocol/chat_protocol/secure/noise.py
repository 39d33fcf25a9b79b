"""The Noise Protocol Framework's handshake (revision 34), as a pure object.

The spec's section 5, object by object, in three modules: :class:`CipherState` (5.1, in
:mod:`~chat_protocol.secure.cipher`), and here :class:`SymmetricState` (5.2), the handshake
patterns (7) and :class:`HandshakeState` (5.3); the crypto functions of section 12 (``25519``
DH, ``SHA256`` or ``BLAKE2s``, HKDF) are in :mod:`~chat_protocol.secure.primitives`. This
module re-exports the names of both, so ``chat_protocol.secure.noise`` stays Noise's one face.
Only the patterns this chat uses are defined: ``IK`` (the initiator already knows the
responder's static key, as in WireGuard) and ``XX`` (both keys travel in the handshake). No PSK
modes, no fallback.

Nothing here touches a clock, a socket or the OS random source: a handshake takes its key pairs
and a ``random_bytes(n)`` function, and ephemeral keys can be injected (the published test vectors
do). Feeding it messages and draining its output is the caller's job.

Where this module chooses among what the spec allows:

* ``ReadMessage()`` is transactional: a message that fails leaves the ``HandshakeState`` as it was
  before the call (the spec deletes it). So a forged handshake message, which anyone can send,
  cannot abort a genuine handshake in progress; the caller drops it and waits for the real one.
* Transport messages over UDP carry their nonce (section 11.4): see
  :mod:`~chat_protocol.secure.cipher`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from chat_protocol.secure.cipher import (
    CipherState,
    ContextCache,
    TransportCipher,
    decrypt_at,
    encrypt_at,
)
from chat_protocol.secure.errors import DecryptFailed, HandshakeFailed, LocalSecureError
from chat_protocol.secure.primitives import (
    DHLEN,
    HASHLEN,
    KEYLEN,
    MAX_MESSAGE_BYTES,
    MAX_NONCE,
    TAGLEN,
    HashName,
    KeyPair,
    RandomBytes,
    dh,
    hash_bytes,
    hkdf,
    hmac_hash,
)

__all__ = [
    "DHLEN",
    "HASHLEN",
    "IK",
    "KEYLEN",
    "MAX_MESSAGE_BYTES",
    "MAX_NONCE",
    "TAGLEN",
    "XX",
    "CipherState",
    "ContextCache",
    "HandshakePattern",
    "HandshakeResult",
    "HandshakeState",
    "HashName",
    "KeyPair",
    "RandomBytes",
    "SymmetricState",
    "Token",
    "TransportCipher",
    "decrypt_at",
    "dh",
    "encrypt_at",
    "hash_bytes",
    "hkdf",
    "hmac_hash",
    "protocol_name",
]

# --- 5.2 SymmetricState --------------------------------------------------------------------------


class SymmetricState:
    """A CipherState plus the chaining key ``ck`` and the handshake hash ``h``."""

    __slots__ = ("cipher", "ck", "h", "hash_name")

    def __init__(self, protocol_name: bytes, hash_name: HashName) -> None:
        """``InitializeSymmetric(protocol_name)``."""
        self.hash_name = hash_name
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = hash_bytes(hash_name, protocol_name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, temp_k = hkdf(self.hash_name, self.ck, input_key_material, 2)
        self.cipher.initialize_key(temp_k[:KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        self.h = hash_bytes(self.hash_name, self.h + data)

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        self.ck, temp_h, temp_k = hkdf(self.hash_name, self.ck, input_key_material, 3)
        self.mix_hash(temp_h)
        self.cipher.initialize_key(temp_k[:KEYLEN])

    def handshake_hash(self) -> bytes:
        return self.h

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """The initiator->responder and the responder->initiator CipherStates."""
        temp_k1, temp_k2 = hkdf(self.hash_name, self.ck, b"", 2)
        return CipherState(temp_k1[:KEYLEN]), CipherState(temp_k2[:KEYLEN])


# --- 7 handshake patterns ------------------------------------------------------------------------


class Token(Enum):
    E = "e"
    S = "s"
    EE = "ee"
    ES = "es"
    SE = "se"
    SS = "ss"


@dataclass(frozen=True, kw_only=True, slots=True)
class HandshakePattern:
    """Pre-messages and message patterns, in canonical (Alice-initiated) form."""

    name: str
    initiator_premessage: tuple[Token, ...]
    responder_premessage: tuple[Token, ...]
    messages: tuple[tuple[Token, ...], ...]


IK = HandshakePattern(
    name="IK",
    initiator_premessage=(),
    responder_premessage=(Token.S,),
    messages=(
        (Token.E, Token.ES, Token.S, Token.SS),
        (Token.E, Token.EE, Token.SE),
    ),
)
"""``<- s ... -> e, es, s, ss  <- e, ee, se``: one round trip; the initiator's static key is sent
encrypted in message 1, authenticated by ``ss``; the responder's is known to it beforehand."""

XX = HandshakePattern(
    name="XX",
    initiator_premessage=(),
    responder_premessage=(),
    messages=(
        (Token.E,),
        (Token.E, Token.EE, Token.S, Token.ES),
        (Token.S, Token.SE),
    ),
)
"""``-> e  <- e, ee, s, es  -> s, se``: both static keys travel, encrypted; one and a half trips."""


def protocol_name(pattern: HandshakePattern, hash_name: HashName) -> bytes:
    """The section 8 name, e.g. ``Noise_IK_25519_ChaChaPoly_SHA256``."""
    return f"Noise_{pattern.name}_25519_ChaChaPoly_{hash_name.value}".encode("ascii")


_DH_KEYS: dict[Token, tuple[tuple[bool, bool], tuple[bool, bool]]] = {
    # token: ((initiator: local is static, remote is static), (the same for the responder))
    Token.EE: ((False, False), (False, False)),
    Token.ES: ((False, True), (True, False)),  # initiator DH(e, rs); responder DH(s, re)
    Token.SE: ((True, False), (False, True)),  # initiator DH(s, re); responder DH(e, rs)
    Token.SS: ((True, True), (True, True)),
}
"""Which keys each DH token combines, per role (section 5.3)."""

# --- 5.3 HandshakeState --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class HandshakeResult:
    """What a finished handshake leaves: the two transport ciphers, who the peer is, and ``h``."""

    send: CipherState
    receive: CipherState
    remote_static: bytes
    """The peer's static public key; the handshake proved the peer holds its private half."""
    handshake_hash: bytes
    """``GetHandshakeHash()``: a unique name of this session, for channel binding (11.2)."""


class HandshakeState:
    """One party's side of one handshake.

    Call :meth:`write_message` and :meth:`read_message` in the pattern's order (the initiator
    writes first); after the last message :attr:`finished` is true and :meth:`result` gives the
    transport ciphers. A call out of turn raises :class:`LocalSecureError`.
    """

    __slots__ = (
        "_index",
        "_random_bytes",
        "_result",
        "_symmetric",
        "e",
        "initiator",
        "pattern",
        "re",
        "rs",
        "s",
    )

    def __init__(
        self,
        *,
        pattern: HandshakePattern,
        initiator: bool,
        random_bytes: RandomBytes,
        prologue: bytes = b"",
        s: KeyPair | None = None,
        e: KeyPair | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
        hash_name: HashName = HashName.SHA256,
    ) -> None:
        """``Initialize(handshake_pattern, initiator, prologue, s, e, rs, re)``.

        ``e`` is normally left out (a fresh one is drawn from ``random_bytes`` when the pattern
        sends it); tests pass it to reproduce published vectors. Never reuse an ephemeral key.
        """
        self.pattern = pattern
        self.initiator = initiator
        self._random_bytes = random_bytes
        self.s = s
        self.e = e
        self.rs = rs
        self.re = re
        self._index = 0
        self._result: HandshakeResult | None = None
        self._symmetric = SymmetricState(protocol_name(pattern, hash_name), hash_name)
        self._symmetric.mix_hash(prologue)
        self._mix_premessage(pattern.initiator_premessage, local=initiator)
        self._mix_premessage(pattern.responder_premessage, local=not initiator)
        for token in (*pattern.initiator_premessage, *pattern.responder_premessage):
            if token not in (Token.E, Token.S):
                raise LocalSecureError(f"a pre-message cannot hold {token.value!r}")

    def _mix_premessage(self, tokens: tuple[Token, ...], *, local: bool) -> None:
        for token in tokens:
            if token is Token.S:
                key = (self.s.public if self.s else None) if local else self.rs
            else:
                key = (self.e.public if self.e else None) if local else self.re
            if key is None:
                raise LocalSecureError(f"the pattern's pre-message needs {token.value!r}")
            self._symmetric.mix_hash(key)

    # --- state -----------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._result is not None

    @property
    def my_turn_to_write(self) -> bool:
        """True when the next message is ours to write (and the handshake is not over)."""
        return self._index < len(self.pattern.messages) and (self._index % 2 == 0) == self.initiator

    def handshake_hash(self) -> bytes:
        return self._symmetric.handshake_hash()

    def result(self) -> HandshakeResult:
        if self._result is None:
            raise LocalSecureError("the handshake is not finished")
        return self._result

    # --- messages --------------------------------------------------------------------------------

    def write_message(self, payload: bytes) -> bytes:
        """``WriteMessage(payload)``: the next handshake message, carrying ``payload``."""
        if not self.my_turn_to_write:
            raise LocalSecureError("not this party's turn to write a handshake message")
        if self._message_size(len(payload)) > MAX_MESSAGE_BYTES:
            raise LocalSecureError(f"a Noise message is at most {MAX_MESSAGE_BYTES} bytes")
        sym = self._symmetric
        out = bytearray()
        for token in self.pattern.messages[self._index]:
            if token is Token.E:
                if self.e is None:
                    self.e = KeyPair.generate(self._random_bytes)
                out += self.e.public
                sym.mix_hash(self.e.public)
            elif token is Token.S:
                if self.s is None:
                    raise LocalSecureError("the pattern sends a static key but none was given")
                out += sym.encrypt_and_hash(self.s.public)
            else:
                sym.mix_key(self._dh(token))
        out += sym.encrypt_and_hash(payload)
        self._index += 1
        self._finish_if_done()
        return bytes(out)

    def _message_size(self, payload_len: int) -> int:
        """The size of the next message if it carries ``payload_len`` bytes of payload."""
        keyed = self._symmetric.cipher.has_key()
        size = 0
        for token in self.pattern.messages[self._index]:
            if token is Token.E:
                size += DHLEN
            elif token is Token.S:
                size += DHLEN + (TAGLEN if keyed else 0)
            else:
                keyed = True
        return size + payload_len + (TAGLEN if keyed else 0)

    def read_message(self, message: bytes) -> bytes:
        """``ReadMessage(message)``: the payload. On :class:`HandshakeFailed` nothing changed."""
        if self.finished or self.my_turn_to_write:
            raise LocalSecureError("not this party's turn to read a handshake message")
        if len(message) > MAX_MESSAGE_BYTES:
            raise HandshakeFailed("handshake message too long")
        sym = self._symmetric
        saved = (sym.ck, sym.h, sym.cipher._snapshot(), self.rs, self.re)
        try:
            payload = self._read(message)
        except (HandshakeFailed, DecryptFailed) as exc:
            sym.ck, sym.h, cipher, self.rs, self.re = saved
            sym.cipher._restore(cipher)
            if isinstance(exc, HandshakeFailed):
                raise
            raise HandshakeFailed("handshake message does not authenticate") from exc
        self._index += 1
        self._finish_if_done()
        return payload

    def _read(self, message: bytes) -> bytes:
        sym = self._symmetric
        pos = 0
        for token in self.pattern.messages[self._index]:
            if token is Token.E:
                if self.re is not None:
                    raise LocalSecureError("remote ephemeral key already set")
                if len(message) - pos < DHLEN:
                    raise HandshakeFailed("handshake message truncated")
                self.re = message[pos : pos + DHLEN]
                pos += DHLEN
                sym.mix_hash(self.re)
            elif token is Token.S:
                if self.rs is not None:
                    raise LocalSecureError("remote static key already set")
                size = DHLEN + TAGLEN if sym.cipher.has_key() else DHLEN
                if len(message) - pos < size:
                    raise HandshakeFailed("handshake message truncated")
                self.rs = sym.decrypt_and_hash(message[pos : pos + size])
                pos += size
            else:
                sym.mix_key(self._dh(token))
        if sym.cipher.has_key() and len(message) - pos < TAGLEN:
            raise HandshakeFailed("handshake message truncated")
        return sym.decrypt_and_hash(message[pos:])

    def _dh(self, token: Token) -> bytes:
        local_static, remote_static = _DH_KEYS[token][0 if self.initiator else 1]
        local = self.s if local_static else self.e
        remote = self.rs if remote_static else self.re
        if local is None or remote is None:
            raise LocalSecureError(f"the {token.value!r} token needs a key that is missing")
        return dh(local, remote)

    def _finish_if_done(self) -> None:
        if self._index < len(self.pattern.messages):
            return
        if self.rs is None:
            raise LocalSecureError("the handshake ended without a remote static key")
        c1, c2 = self._symmetric.split()
        send, receive = (c1, c2) if self.initiator else (c2, c1)
        self._result = HandshakeResult(
            send=send,
            receive=receive,
            remote_static=self.rs,
            handshake_hash=self._symmetric.handshake_hash(),
        )
