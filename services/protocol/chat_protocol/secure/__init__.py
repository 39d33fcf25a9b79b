"""The secure layer: Noise IK handshakes, then ChaCha20-Poly1305 datagrams, over UDP.

The design is WireGuard's (its paper, sections 5 and 6), on :mod:`chat_protocol.secure.noise`'s
``Noise_IK_25519_ChaChaPoly_SHA256``. Every datagram of the chat travels inside one of the packets
of :mod:`~chat_protocol.secure.packets`; the codec's plaintext datagrams (``PC`` ...) become the
payload of a TRANSPORT packet. The packet type byte has its high bit set, so it never equals the
``P`` that starts a plaintext one.

One module per job (as wireguard-go's ``device/``), bottom up; each imports only those above it
in this list:

* ``errors``    - the layer's errors, split by fault;
* ``primitives`` - Noise's crypto functions: X25519, SHA256 / BLAKE2s, HMAC, HKDF;
* ``cipher``    - Noise's CipherState and the explicit-nonce AEAD of transport datagrams;
* ``noise``     - the Noise Protocol Framework (SymmetricState, HandshakeState, patterns);
* ``identity``  - key fingerprints and safety numbers, for people to compare;
* ``packets``   - the packet formats, their sizes, ``parse_packet`` and the builders;
* ``cookie``    - mac1/mac2 and the cookie jar: stateless proof of address;
* ``replay``    - the sliding window of received counters (RFC 6479);
* ``session``   - :class:`~chat_protocol.secure.session.SecureSession`, one pair of transport
  keys, and its limits;
* ``handshake`` - the two roles of one handshake, ``Initiator`` and ``Responder``;
* ``peers``     - the table of peers by static key, least recently active first;
* ``ratelimit`` - token buckets by source IP (the server's limits, and the handshake gate's);
* ``handshake_floor`` - each peer key's anti-replay floor, in a store the caller provides;
* ``handshake_gate`` - when a client makes an initiator prove its address (cookies) first;
* ``received``  - the typed outcomes of one datagram (what the endpoint returns);
* ``endpoint``  - :class:`~chat_protocol.secure.endpoint.SecureEndpoint`, which owns all of the
  above for one UDP socket.

All of it is sans-I/O: datagrams, ``now`` (seconds, any monotonic origin) and ``random_bytes`` go
in; datagrams and events come out.

Who may send what to whom, and when (the anti-amplification rule: before an address has proven
it receives, nothing sent to it is larger than what it sent):

* A responder keeps **no state at all** for an initiation until message 1 authenticates: mac1 is
  checked first (one HMAC), then, under load, mac2 (one more); only then the Noise work. Under
  load an initiation without a valid mac2 gets a COOKIE_REPLY (61 bytes < 256) and nothing is
  kept. The cookie is a MAC, under a secret the responder draws anew every
  ``COOKIE_SECRET_LIFETIME_S``, over the source address and the secret's period number: an
  initiator that echoes it proved it receives at that address.
* After message 1 authenticates, the caller decides (:class:`IncomingHandshake`); accepting
  allocates one **unconfirmed** session (bounded in number, keyed by index, owned by the
  authenticated static key) and sends the response, which is never larger than the initiation.
* The initiator's address counts as proven only when its **first TRANSPORT datagram** arrives
  (it could only build it from the response). Until then the responder sends nothing more:
  :meth:`SecureSession.encrypt` refuses. The initiator therefore sends one at once, even an
  empty one (a keepalive), when its handshake completes.

Sessions are found by the receiver index, never by source address, so a peer whose NAT rebinds
keeps its session; :attr:`SecureSession.remote_addr` follows the source of the newest
authenticated datagram on the peer's latest session (:func:`~chat_protocol.secure.peers.latest`).
"""
