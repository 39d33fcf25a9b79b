"""Noise's ``CipherState`` (revision 34, section 5.1) with the ``ChaChaPoly`` cipher, and the
transport's explicit-nonce AEAD (section 11.4: datagrams carry their nonce): :func:`encrypt_at`
and :func:`decrypt_at` take ``n`` explicitly and leave any state alone, so a transport session
need not keep its CipherStates at all; they work on any AEAD context, its own or one borrowed
from a :class:`ContextCache` (:data:`TransportCipher`). The replay check is
:class:`chat_protocol.secure.replay.ReplayWindow`'s job.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from chat_protocol.secure.errors import DecryptFailed, LocalSecureError
from chat_protocol.secure.primitives import KEYLEN, MAX_NONCE, TAGLEN

_ZEROS32 = bytes(32)

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
