"""The crypto functions of the Noise Protocol Framework (revision 34, section 4 and 12) that
this chat uses: ``25519`` DH (:class:`KeyPair`, :func:`dh`), the hashes ``SHA256`` and
``BLAKE2s`` (:class:`HashName`), and ``HMAC-HASH`` / ``HKDF`` built from them exactly as section
4.3 defines them. Every primitive comes from the ``cryptography`` package.

``DH()`` signals an error (:class:`HandshakeFailed`) on a public key that yields the all-zero
output (section 12.1 allows it; ``cryptography`` does it), instead of continuing with zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from chat_protocol.secure.errors import HandshakeFailed, LocalSecureError

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
