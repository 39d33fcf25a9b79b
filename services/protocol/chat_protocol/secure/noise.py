"""The Noise Protocol Framework's handshake (revision 34), as a pure object.

This module follows the spec's section 5 object by object: :class:`CipherState` (5.1),
:class:`SymmetricState` (5.2) and :class:`HandshakeState` (5.3), with the crypto functions of
section 12: ``25519`` DH, ``ChaChaPoly`` cipher, and ``SHA256`` or ``BLAKE2s`` hash. Every
primitive comes from the ``cryptography`` package; Noise's ``HKDF`` is built from its HMAC exactly
as section 4.3 defines it. Only the patterns this chat uses are defined: ``IK`` (the initiator
already knows the responder's static key, as in WireGuard) and ``XX`` (both keys travel in the
handshake). No PSK modes, no fallback.

Nothing here touches a clock, a socket or the OS random source: a handshake takes its key pairs
and a ``random_bytes(n)`` function, and ephemeral keys can be injected (the published test vectors
do). Feeding it messages and draining its output is the caller's job.

Where this module chooses among what the spec allows:

* ``DH()`` signals an error (:class:`HandshakeFailed`) on a public key that yields the all-zero
  output (section 12.1 allows it; ``cryptography`` does it), instead of continuing with zeros.
* ``ReadMessage()`` is transactional: a message that fails leaves the ``HandshakeState`` as it was
  before the call (the spec deletes it). So a forged handshake message, which anyone can send,
  cannot abort a genuine handshake in progress; the caller drops it and waits for the real one.
* Transport messages over UDP carry their nonce (section 11.4): :meth:`CipherState.encrypt_at`
  and :meth:`CipherState.decrypt_at` take ``n`` explicitly and leave the state alone; the replay
  check is :class:`chat_protocol.secure.replay.ReplayWindow`'s job. A transport session need not
  keep its CipherStates at all: :func:`encrypt_at` and :func:`decrypt_at` work on any AEAD context,
  its own or one borrowed from a :class:`ContextCache` (:data:`TransportCipher`).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from chat_protocol.secure.errors import DecryptFailed, HandshakeFailed, LocalSecureError

RandomBytes = Callable[[int], bytes]
"""``random_bytes(n)`` returns ``n`` uniformly random bytes (the shell passes ``os.urandom``)."""

DHLEN = 32
KEYLEN = 32
HASHLEN = 32
TAGLEN = 16
MAX_NONCE = 2**64 - 1
"""Reserved (section 5.1): a CipherState whose ``n`` reaches it refuses to encrypt or decrypt."""
MAX_MESSAGE_BYTES = 65535
"""Largest Noise message, handshake or transport (section 3)."""

_ZEROS32 = bytes(32)


class HashName(Enum):
    """The hash functions of section 12 this module offers (both have HASHLEN 32, BLOCKLEN 64)."""

    SHA256 = "SHA256"
    BLAKE2S = "BLAKE2s"

    def algorithm(self) -> hashes.HashAlgorithm:
        return _ALGORITHMS[self]


_ALGORITHMS: dict[HashName, hashes.HashAlgorithm] = {
    HashName.SHA256: hashes.SHA256(),
    HashName.BLAKE2S: hashes.BLAKE2s(HASHLEN),
}


def hash_bytes(hash_name: HashName, data: bytes) -> bytes:
    """``HASH(data)``."""
    h = hashes.Hash(hash_name.algorithm())
    h.update(data)
    return h.finalize()


def hmac_hash(hash_name: HashName, key: bytes, data: bytes) -> bytes:
    """``HMAC-HASH(key, data)``: RFC 2104 HMAC over the chosen hash."""
    h = hmac.HMAC(key, hash_name.algorithm())
    h.update(data)
    return h.finalize()


def hkdf(
    hash_name: HashName, chaining_key: bytes, input_key_material: bytes, num_outputs: int
) -> tuple[bytes, ...]:
    """``HKDF(chaining_key, input_key_material, num_outputs)``, word for word from section 4.3."""
    if num_outputs not in (2, 3):
        raise LocalSecureError("HKDF returns two or three outputs")
    temp_key = hmac_hash(hash_name, chaining_key, input_key_material)
    output1 = hmac_hash(hash_name, temp_key, b"\x01")
    output2 = hmac_hash(hash_name, temp_key, output1 + b"\x02")
    if num_outputs == 2:
        return (output1, output2)
    output3 = hmac_hash(hash_name, temp_key, output2 + b"\x03")
    return (output1, output2, output3)


# --- DH functions (section 12.1) -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyPair:
    """An X25519 key pair. ``public`` is the 32-byte encoding Noise puts on the wire."""

    private: X25519PrivateKey = field(repr=False, compare=False)
    public: bytes

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> KeyPair:
        """The key pair of a 32-byte private key (any 32 bytes: X25519 clamps them)."""
        if len(raw) != DHLEN:
            raise LocalSecureError(f"an X25519 private key is {DHLEN} bytes, not {len(raw)}")
        private = X25519PrivateKey.from_private_bytes(raw)
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(private=private, public=public)

    @classmethod
    def generate(cls, random_bytes: RandomBytes) -> KeyPair:
        """``GENERATE_KEYPAIR()``: 32 random bytes are a uniformly chosen X25519 private key."""
        return cls.from_private_bytes(random_bytes(DHLEN))

    def private_bytes(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )


def dh(key_pair: KeyPair, public_key: bytes) -> bytes:
    """``DH(key_pair, public_key)``. An invalid or low-order key raises :class:`HandshakeFailed`."""
    try:
        return key_pair.private.exchange(X25519PublicKey.from_public_bytes(public_key))
    except ValueError as exc:  # wrong length, or the all-zero output of a low-order point
        raise HandshakeFailed("invalid Diffie-Hellman public key") from exc


# --- 5.1 CipherState -----------------------------------------------------------------------------


_NONCE = struct.Struct("<4xQ")


def _nonce(n: int) -> bytes:
    """ChaChaPoly's 96-bit nonce: 32 zero bits, then ``n`` little-endian (section 12.3)."""
    return _NONCE.pack(n)


TransportCipher = ChaCha20Poly1305 | bytes
"""What a transport session keeps to send with: the AEAD context built from its 32-byte key,
or (a lean session) its bare keys.

A context costs about 2.2 KB of OpenSSL memory and about a microsecond to build. A party with
few sessions and latency to care about (a client) keeps one per direction; one with many mostly
idle sessions (the directory server) keeps only the keys and borrows contexts from a small
:class:`ContextCache` shared by all its sessions, which builds one when the key is not among the
most recently used (:class:`chat_protocol.secure.session.SecureSession`'s ``contexts``)."""


class ContextCache:
    """AEAD contexts for the most recently used keys, at most ``size`` of them: what a lean
    endpoint's sessions (bare keys) borrow, so its few most active sessions skip building a
    context per datagram while its memory stays bounded (:data:`TransportCipher`)."""

    __slots__ = ("_contexts", "hits", "misses", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise LocalSecureError("a context cache holds at least one context")
        self.size = size
        self.hits = 0
        self.misses = 0
        self._contexts: OrderedDict[bytes, ChaCha20Poly1305] = OrderedDict()

    def __len__(self) -> int:
        return len(self._contexts)

    def get(self, key: bytes) -> ChaCha20Poly1305:
        """The context for the 32-byte ``key``: kept, or built (and the least recently used
        one dropped when there are ``size``)."""
        contexts = self._contexts
        context = contexts.get(key)
        if context is not None:
            self.hits += 1
            contexts.move_to_end(key)
            return context
        if len(key) != KEYLEN:
            raise LocalSecureError(f"a cipher key is {KEYLEN} bytes")
        self.misses += 1
        context = contexts[key] = ChaCha20Poly1305(key)
        if len(contexts) > self.size:
            contexts.popitem(last=False)
        return context


def encrypt_at(aead: ChaCha20Poly1305, n: int, ad: bytes, plaintext: bytes) -> bytes:
    """``ENCRYPT(k, n, ad, plaintext)`` with an explicit nonce, ``aead`` being built from ``k``."""
    if not 0 <= n < MAX_NONCE:
        raise LocalSecureError("nonce exhausted: start a new handshake")
    return aead.encrypt(_NONCE.pack(n), plaintext, ad)


def decrypt_at(aead: ChaCha20Poly1305, n: int, ad: bytes, ciphertext: bytes) -> bytes:
    """``DECRYPT(k, n, ad, ciphertext)`` with an explicit nonce, ``aead`` being built from ``k``;
    :class:`DecryptFailed` if it does not authenticate (or ``n`` is out of range, or it is
    shorter than its tag)."""
    if not 0 <= n < MAX_NONCE:
        raise DecryptFailed("nonce out of range")
    if len(ciphertext) < TAGLEN:
        raise DecryptFailed("ciphertext shorter than its tag")
    try:
        return aead.decrypt(_NONCE.pack(n), ciphertext, ad)
    except InvalidTag:
        raise DecryptFailed("authentication failed") from None


class CipherState:
    """A key ``k`` (or none yet) and a nonce counter ``n``.

    Its AEAD context is built at the first use of the key, so the two that :meth:`split` returns
    cost nothing to a session that keeps only their keys (:data:`TransportCipher`)."""

    __slots__ = ("_aead", "_key", "n")

    def __init__(self, key: bytes | None = None) -> None:
        self._key: bytes | None = None
        self._aead: ChaCha20Poly1305 | None = None
        self.n = 0
        self.initialize_key(key)

    def initialize_key(self, key: bytes | None) -> None:
        if key is not None and len(key) != KEYLEN:
            raise LocalSecureError(f"a cipher key is {KEYLEN} bytes")
        self._key = key
        self._aead = None
        self.n = 0

    def _context(self) -> ChaCha20Poly1305:
        if self._aead is None:
            if self._key is None:
                raise LocalSecureError("this CipherState has no key")
            self._aead = ChaCha20Poly1305(self._key)
        return self._aead

    def has_key(self) -> bool:
        return self._key is not None

    @property
    def key(self) -> bytes | None:
        """``k``: what a transport session keeps instead of this object (see
        :data:`TransportCipher`)."""
        return self._key

    def set_nonce(self, nonce: int) -> None:
        self.n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._key is None:
            return plaintext
        ciphertext = self.encrypt_at(self.n, ad, plaintext)
        self.n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Raises :class:`DecryptFailed` (and leaves ``n`` alone) if authentication fails."""
        if self._key is None:
            return ciphertext
        plaintext = self.decrypt_at(self.n, ad, ciphertext)
        self.n += 1
        return plaintext

    def encrypt_at(self, n: int, ad: bytes, plaintext: bytes) -> bytes:
        """``ENCRYPT(k, n, ad, plaintext)`` with an explicit nonce; ``self.n`` is not used."""
        return encrypt_at(self._context(), n, ad, plaintext)

    def decrypt_at(self, n: int, ad: bytes, ciphertext: bytes) -> bytes:
        """``DECRYPT(k, n, ad, ciphertext)`` with an explicit nonce; ``self.n`` is not used."""
        return decrypt_at(self._context(), n, ad, ciphertext)

    def rekey(self) -> None:
        """``Rekey()``: ``k = REKEY(k)``, the default of section 4.2; ``n`` is kept (11.3)."""
        n = self.n
        self.initialize_key(self._context().encrypt(_nonce(MAX_NONCE), _ZEROS32, b"")[:KEYLEN])
        self.n = n

    def _snapshot(self) -> tuple[bytes | None, int]:
        return (self._key, self.n)

    def _restore(self, snapshot: tuple[bytes | None, int]) -> None:
        key, n = snapshot
        if key != self._key:
            self.initialize_key(key)
        self.n = n


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
