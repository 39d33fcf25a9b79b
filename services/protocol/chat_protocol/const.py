"""Every timing constant and limit of the protocol, with units in the names.

Tests that need faster timers build a :class:`Timings` with smaller values; the defaults below are
what the real programs use. docs/PROTOCOL.md lists the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_VERSION = 1
MAGIC = b"PC"

# --- sizes and limits -------------------------------------------------------------------------
MAX_DATAGRAM_BYTES = 1400
"""Largest datagram either side sends or accepts (fits a 1500-byte Ethernet MTU with headers)."""
CHUNK_PAYLOAD_BYTES = 1200
"""Message bytes carried by one DATA datagram."""
SEND_PROGRESS_STEPS = 100
"""A message of more than one chunk reports its progress (``SendProgress``) each time the bytes
the receiver holds reach a further 1/SEND_PROGRESS_STEPS of it (at most this many events each)."""
MIN_HELLO_BYTES = 64
"""A HELLO is padded to at least this size, so no reply to an unvalidated address is larger."""
PING_BYTES = 16
"""A PING is padded to exactly this size; the PONG answering it is smaller."""
TOKEN_BYTES = 8
"""The session token a WELCOME hands out; every later request carries it."""
MAX_STRING_BYTES = 255
"""A string on the wire is one length byte, then that many bytes of UTF-8."""
ACK_HEADER_BYTES = 23
"""An ACK's bytes before its ranges (header, session, stream, seq, complete, ack delay, the two
counts)."""
ACK_RANGE_BYTES = 8
"""One (start, end) byte range in an ACK."""
NAME_MAX_CHARS = 32
LOOKUP_BYTES = 50
"""Every LOOKUP is padded to this size (a name of 32 characters fills it), so its size does not
give away the length of the name asked."""
MAX_LOCAL_ENDPOINTS = 3
"""Private endpoints a client declares at sign-in (more are not sent; the directory keeps only
private-range ones) and a LOOKUP_REPLY or PUNCH carries."""
ADDR_MAX_BYTES = 19
"""An address on the wire at most: family byte, 16-byte IPv6 address, port."""
LOOKUP_REPLY_BYTES = 92 + 1 + MAX_LOCAL_ENDPOINTS * ADDR_MAX_BYTES
"""Every LOOKUP_REPLY is padded to this size (32-character name, IPv6 address, key and
MAX_LOCAL_ENDPOINTS IPv6 private endpoints fill it): its size tells neither the name's length,
nor whether the user was found, nor the family, nor how many private endpoints it has."""
STATIC_KEY_BYTES = 32
"""An X25519 public key: a user's identity, as the directory hands it out."""
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest message (UTF-8 bytes) a client sends or reassembles."""
MAX_BUFFERED_BYTES_PER_PEER = 2 * MAX_MESSAGE_BYTES
"""Bytes a receiver holds for one sender: partial messages, and whole ones handed to the client
but not yet shown to its user. Chunks beyond it are dropped unacknowledged, so the sender slows
down (retransmits later) instead of being lost."""
MAX_PARTIAL_MESSAGES_PER_PEER = 8
"""Messages from one sender not yet shown to the user (incomplete, waiting for an earlier one, or
handed to the client but not shown yet) at a time; DATA beyond them is refused."""
MAX_PEERS_TRACKED = 1024
"""Senders whose receive state a client keeps; the least recently heard is dropped beyond this."""
SEND_WINDOW_CHUNKS = 64
"""Most DATA datagrams in flight to one peer whatever the congestion window (flow control:
64 x 1.2 KB = 77 KB, well under a default 208 KiB socket receive buffer)."""
MAX_ACK_RANGES = 32

# --- loss detection and congestion control (RFC 9002's names and values) ---------------------
# chat_protocol.transfer.congestion and .outbound; docs/PROTOCOL.md lists them.
K_PACKET_THRESHOLD = 3
"""A DATA datagram is lost when one sent this many packet numbers after it was acknowledged."""
K_TIME_THRESHOLD_NUM, K_TIME_THRESHOLD_DEN = 9, 8
"""... or when one sent after it was acknowledged and 9/8 x max(smoothed_rtt, latest_rtt) has
passed since it was sent."""
K_GRANULARITY_S = 0.001
"""The timer granularity: no loss delay or probe timeout's variance term is shorter."""
MAX_ACK_DELAY_S = 0.005
"""The longest a receiver is assumed to hold an ACK (ours answers each batch of datagrams at
once; this covers an event loop's turn): the least max_ack_delay a sender uses. A peer that
reports longer ack delays raises it (the longest reported in ``CC_MIN_RTT_WINDOW_S``)."""
CC_INITIAL_WINDOW_PACKETS = 10
"""NewReno's first congestion window, in full DATA datagrams (RFC 9002 §7.2: 10)."""
CC_MINIMUM_WINDOW_PACKETS = 2
"""The congestion window never shrinks below this many full DATA datagrams."""
CC_LOSS_REDUCTION_FACTOR = 0.5
"""The window's cut on a congestion event (a loss, or a queue beyond ``CC_QUEUE_TARGET_S``)."""
CC_QUEUE_TARGET_S = 0.030
"""RTT above min_rtt + this (the latest sample and smoothed_rtt both) is a standing queue at the
bottleneck: a congestion event without loss, at most once per round trip (LEDBAT's target
delay, BBR's point that a full pipe needs no queue). So a flow does not fill a bottleneck's
buffer and starve a TCP flow beside it."""
CC_MIN_RTT_WINDOW_S = 10.0
"""min_rtt is the least RTT sample of this long (Kathleen Nichols' windowed filter, as Linux's
win_minmax for BBR), so a path that got longer is learned again."""
CC_WINDOW_USED_SLACK_PACKETS = 3
"""The window grows on an acknowledged datagram only if, when it was sent, bytes in flight were
within this many full datagrams of the window (or at least half of it, in slow start): not
while the sender leaves it unused (app limited, RFC 9002 §7.8)."""
CC_RANDOM_LOSS_QUEUE_S = 0.005
"""A loss while the path's queueing delay (smoothed_rtt - min_rtt) is below this is taken for
the link's own loss, not a full queue: the chunk is resent, the window is not cut (our choice
beside RFC 9002's NewReno; a loss at a queue that is filling still halves it)."""
CC_PERSISTENT_CONGESTION_THRESHOLD = 3
"""Losses spanning this many probe timeouts, nothing acknowledged between: persistent congestion
(the window drops to the minimum)."""
PACING_GAIN = 1.25
"""Pacing rate = this x congestion_window / smoothed_rtt (RFC 9002 §7.7's N)."""
PACING_BURST_PACKETS = 10
"""The pacer's token bucket holds this many full DATA datagrams (a burst after an idle spell)..."""
PACING_TIMER_SLACK_S = 0.002
"""... or what the pacing rate sends in this long, if more: a timer that fires this late (a
millisecond poll, a busy event loop) costs no rate."""
PACING_MIN_RTT_S = 1e-6
"""The pacing rate divides by smoothed_rtt, taken as at least this (a fake clock's sample may
be 0): a microsecond, under any real path's. Not ``K_GRANULARITY_S``: a millisecond floor
capped every path shorter than that (loopback, a LAN) at 1.25 windows per millisecond, and the
window, app limited by that cap, never grew past it: 1 MiB took 10 ms over a 50 us path that
carries it in 0.8 ms."""
MAX_ACK_PN_RANGES = 8
"""Packet-number ranges in one ACK (the newest ones); fewer when the DATA that asked is small."""
ACK_PN_RANGE_BYTES = 16
"""One [start, end) range of packet numbers in an ACK (two u64)."""
MAX_PN_RANGES_KEPT = 64
"""Ranges of received packet numbers a receiver remembers per sender stream (the oldest go)."""
MAX_SESSIONS_PER_PEER = 4
"""Sender sessions (runs of the sender) one key may have receive states for at a receiver; a new
one beyond it replaces the key's least recently heard. So one key cannot fill the table of
MAX_PEERS_TRACKED and push out others' states (an attacker's made-up sessions evict its own)."""
MAX_RETIRED_SESSIONS = 4096
"""Sender sessions whose receive state was dropped (LRU) and whose late chunks are refused."""
MAX_VERIFIED_ENTRIES = 4096
"""(sender, address) answers of the directory a client caches."""
NAME_USE_RECORD_S = 3600.0
"""The server's name store notes a name's latest sign-in (``chat-server names list``) at most
this often, so a busy directory does not write on every sign-in."""
NAMES_DB_CACHE_KIB = 256
"""SQLite's own page cache for the server's name store, in KiB (its default is 2000): a
lookup or bind per sign-in reads a few pages, which the OS's file cache holds anyway; a larger
cache only grows the server's memory with the bindings (about 45 B per name up to 2 MB)."""
MAX_USERS = 1_000_000
"""Names a directory server holds at most; beyond, sign-ins are refused SERVER_FULL."""
LIST_PAGE_MAX_BYTES = 1200
"""Names carried by one LIST reply are capped so the datagram stays under this size."""
LIST_REPLY_OVERHEAD_BYTES = 15
"""A LIST_REPLY's bytes besides its names (header, req_id, total, more, count)."""


MIN_HEARTBEAT_INTERVAL_S = 0.05
"""A client never heartbeats faster than this, whatever interval a server advertises."""

# --- timers of the programs (not of the protocol) ------------------------------------------------
PROBE_TIMEOUT_S = 2.0
"""``chat-server --probe`` (the container healthcheck) fails if no PONG arrives within this."""
STATS_INTERVAL_S = 5.0
"""``chat-server -v`` logs its counters this often (when they changed)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Timings:
    """Timers of the protocol, in seconds. One instance is shared by a server or client core."""

    heartbeat_interval_s: float = 1.5
    """How often a signed-in client tells the server it is alive."""
    client_timeout_s: float = 5.0
    """The server removes a client it has not heard from for this long."""
    server_timeout_s: float = 5.0
    """A client gives up on a server it has not heard from for this long."""
    sweep_interval_s: float = 0.5
    """How often the server looks for expired clients."""
    request_retry_s: float = 0.4
    """Retransmit interval of a client request (sign-in, lookup, list, bye) with no answer yet."""
    request_timeout_s: float = 3.0
    """A request with no answer for this long fails (sign-in: 'server not answering')."""
    bye_timeout_s: float = 1.0
    """On exit, how long a client waits for the server to confirm its sign-out."""
    retransmit_initial_s: float = 0.2
    """The first probe timeout (PTO) of DATA, before an RTT sample exists."""
    retransmit_max_s: float = 1.0
    """The PTO doubles per probe timeout without an acknowledgement, up to this cap (or one
    PTO, if that is longer); so does the completion probe's interval."""
    delivery_timeout_s: float = 10.0
    """A message whose peer acknowledged nothing for this long is reported as not delivered."""
    verify_cache_s: float = 60.0
    """A verified (sender name, address) pair is trusted this long before it is looked up again."""
    shutdown_copies: int = 3
    """SHUTDOWN notices the server sends each client (UDP may lose one)."""
    max_heartbeats_per_s: float = 20000.0
    """The server stretches the heartbeat interval it advertises so that all clients together send
    no more than this many heartbeats per second (see docs/PROTOCOL.md, 'Scaling heartbeats')."""


DEFAULT_TIMINGS = Timings()


# --- secure sessions ------------------------------------------------------------------------------
# chat_protocol.secure.noise and chat_protocol.secure; docs/SECURITY.md explains each. The session
# timers and counters are WireGuard's (its paper, section 6.1) unless noted.

SECURE_PROLOGUE = b"p2p-chat secure session v1"
"""Hashed into every handshake (the Noise prologue): peers that disagree on it fail to connect."""
LEAN_CONTEXTS = 16
"""AEAD contexts a lean endpoint (the directory server: bare keys per session) keeps for its
most recently used keys, 2.2 KB each: its few busiest sessions (a small server's users, a user
who is chatting) skip building one per datagram (about 1 us), and its memory stays bounded."""
REPLAY_WINDOW_BITS = 8192
"""A receiver accepts each counter once, and none more than this many below the newest it has."""
REKEY_AFTER_MESSAGES = 2**60
"""A session that sent this many datagrams asks for a new handshake."""
REJECT_AFTER_MESSAGES = 2**64 - 2**13 - 1
"""No counter at or above this is sent or accepted (leaves room for the window below 2**64)."""
REKEY_AFTER_TIME_S = 120.0
"""The initiator of a session this old starts a new handshake (forward secrecy in time)."""
RESPONDER_REKEY_AFTER_TIME_S = 165.0
"""The responder of a session this old starts one itself (180 s - keepalive 10 s - 5 s)."""
REJECT_AFTER_TIME_S = 180.0
"""A session this old neither sends nor accepts anything."""
REKEY_TIMEOUT_S = 5.0
"""An initiation unanswered for this long is sent again, with a fresh ephemeral key."""
UNCONFIRMED_SESSION_TIMEOUT_S = 15.0
"""A responder forgets a session whose initiator sent no transport datagram for this long."""
COOKIE_SECRET_LIFETIME_S = 120.0
"""The responder draws a new cookie secret this often; a cookie is good for one or two periods."""
COOKIE_LATENCY_S = 5.0
"""An initiator stops using a cookie this long before the responder could have rotated it away."""
HANDSHAKE_INIT_MIN_BYTES = 256
"""Initiations are padded to this size, so the response (75 bytes + its payload) fits under it."""
KEY_REQUEST_MIN_BYTES = 64
"""A request for a responder's static key is padded to this, above the 41-byte reply."""
MAX_UNCONFIRMED_SESSIONS = 4096
"""Responder sessions awaiting their initiator's first datagram; the oldest goes beyond this."""
MAX_SECURE_PEERS = 262144
"""Authenticated static keys an endpoint keeps state for; the least recently active goes beyond."""
FINGERPRINT_BYTES = 20
"""A key fingerprint is this many bytes of SHA-256 (160 bits), shown as 32 base32 letters."""
SAFETY_NUMBER_ITERATIONS = 5200
"""SHA-512 iterations per half of a safety number (Signal's value)."""

HANDSHAKE_RETRY_S = 0.4
"""A handshake the cores started (sign-in, or toward a peer) with no response yet is sent anew
(new ephemeral, new timestamp) after this long, while there is something to send."""
PEER_SILENT_REHANDSHAKE_S = 2.0
"""A peer that has answered nothing for this long since we first sent it something gets a new
handshake (WireGuard's rule: it may have restarted and lost the session; the old session works
meanwhile)."""
ENDPOINT_SWEEP_S = 1.0
"""How often the cores let the secure endpoint forget expired sessions and handshakes."""
MAX_WAITING_DATAGRAMS_PER_PEER = 128
"""Datagrams a client holds for a peer while its handshake completes (more are dropped; the
transfer layer resends them)."""
MAX_CLAIMED_NAMES = 4096
"""Peers whose handshake-claimed name a client remembers (least recently heard dropped)."""
MAX_WHOIS_REMEMBERED = 1024
"""Names whose key ``whois`` showed that a client remembers for a later ``trust`` (the least
recently shown are forgotten: ``whois`` them again)."""
HANDSHAKES_PER_S_UNDER_LOAD = 2000.0
"""Above this many initiations per second a server answers cookie replies first (WireGuard's
"under load"), so a flood costs it one MAC per datagram, not public-key work."""

# --- hostile load (issue "Hostile load"): quotas and bounds --------------------------------------

MAX_USERS_PER_IP = 256
"""Names signed in (or being signed in) from one source IP at a time; more are refused
TOO_MANY_FROM_ADDRESS. A 20-client lab behind one NAT is far below it (``--max-users-per-ip``)."""
MAX_HANDSHAKES_PER_IP_PER_S = 50.0
"""Initiations one source IP may make per second (a token bucket, burst of the same size);
beyond it a server answers with a cookie reply only and does no public-key work for it."""
MAX_TRACKED_IPS = 65536
"""Source IPs whose handshake rate a server tracks (least recently seen dropped)."""
BUCKET_REFILL_S = 1.0
"""How long an emptied token bucket takes to fill up again: its burst is its rate per second."""
EVICTION_SCAN = 64
"""Peers a secure endpoint looks at, oldest first, for one it may evict."""
MAX_HEARTBEAT_INTERVAL_S = 3.0
"""However many users there are, a server never advertises a longer heartbeat interval: with
the 5 s / 1.5 s timeout ratio a dead client is removed within 10 s and a dead server is
noticed within 10 s. Beyond ``max_heartbeats_per_s`` x this many users, sign-ins are refused
SERVER_FULL rather than stretch the timers."""
EXPIRY_SLICE = 2000
"""Users an expiry sweep removes at most per timer call; the rest follow at once, in slices,
so no sweep blocks the event loop for long."""
RECEIVE_BUDGET_BYTES = 64 * 1024 * 1024
"""Bytes a client holds for all senders together (partial and unshown messages); chunks beyond
it are dropped unacknowledged, and the senders retransmit later (QUIC's MAX_DATA, receiver-wide)."""
PARTIAL_TIMEOUT_S = 30.0
"""A partial message that gets no new chunk for this long is dropped (its sender has long
reported it not delivered)."""
PINGS_PER_IP_PER_S = 20.0
"""Health-probe PINGs one source IP gets answered per second (a probe needs a few)."""
PONGS_PER_S = 2000.0
"""PONGs a server sends per second at most, whatever the sources: a flood of PINGs costs it a
parse each, not a reply each."""

# --- handshakes at peers (issue 19): floors, buckets, half-open sessions -------------------------

HANDSHAKE_CLOCK_SKEW_S = 30.0
"""How far a peer's clock may lag ours: an initiation from a key is refused if its timestamp is
not above that key's floor, which our own initiations to the key raise to their timestamp less
this (so a recorded initiation older than a session we started is refused, while a peer whose
clock is a little behind ours can still answer a handshake of ours with one of its own)."""
MAX_HANDSHAKE_FLOORS = 1024
"""Peer keys whose anti-replay floor a client keeps (in its home); the oldest floors go first."""
PEER_HANDSHAKES_PER_S_UNDER_LOAD = 20.0
"""Above this many initiations per second from peers, a client answers cookie replies first
(as the server does above ``HANDSHAKES_PER_S_UNDER_LOAD``): a flood costs it a MAC each."""
PEER_HANDSHAKES_PER_IP_PER_S = 5.0
"""Initiations one source IP may make to a client per second (a token bucket, burst of the same
size); beyond it that source must prove its address with a cookie first."""
PEER_PROVEN_HANDSHAKES_PER_IP_PER_S = 5.0
"""Initiations with a valid cookie (a proven address) one source IP gets processed by a client
per second while the client is under load or that IP is over its bucket; more are dropped."""
MAX_PEER_TRACKED_IPS = 4096
"""Source IPs whose handshake rate a client tracks (least recently seen dropped)."""
MAX_HALF_OPEN_PEER_SESSIONS = 64
"""Sessions a client answered whose initiator has not confirmed them yet (half-open); the
oldest is dropped beyond this."""

# --- across NATs (issue 21): rendezvous, punching, keepalives -------------------------------------

HINTS_PER_ASKER_PER_S = 4.0
"""PUNCH hints one signed-in user's lookups may cause per second (a token bucket, burst of the
same size); lookups beyond it are answered, but hint nobody."""
HINTS_PER_TARGET_PER_S = 2.0
"""PUNCH hints one user receives per second at most, whoever asks: a user cannot be made to
punch (send initiations) faster than ``HINTS_PER_TARGET_PER_S`` x ``PUNCH_WINDOW_S`` / retry."""
PUNCH_WINDOW_S = 10.0
"""After a PUNCH hint, the hinted client sends handshake initiations to the asker's endpoints
every ``HANDSHAKE_RETRY_S`` for this long, or until a session with the asker works. The asker's
own initiations go out while it has something to send (its delivery timeout, 10 s, bounds
that): both sides punch for at most 10 s per lookup."""
PUNCH_NOT_NEEDED_S = 30.0
"""A hint about a peer heard from on a working session within this long starts no punching
(its path is open: keepalives cross it every PEER_KEEPALIVE_S while it is in use)."""
PUNCH_REHINT_S = 1.0
"""A send's handshake towards a peer unanswered this long asks the directory for another PUNCH
hint to that peer (a LOOKUP with the punch flag): a hint is one datagram, and without it a peer
behind a port-restricted or symmetric NAT never punches and its router drops our initiations.
Each further ask waits twice as long as the one before (at 1, 3, 7 s of ``PUNCH_REHINTS``)."""
PUNCH_REHINTS = 3
"""Hints a client asks again per unanswered handshake, at most: the last at 7 s, within the
delivery timeout (10 s). Hearing from the peer stops them."""
MAX_PUNCH_TARGETS = 32
"""Peers a client punches towards at once on hints (the least recent hint is dropped beyond)."""
MAX_CANDIDATE_PEERS = 1024
"""Peers whose candidate endpoints (public and private) a client remembers."""
PEER_KEEPALIVE_S = 25.0
"""A peer session in use gets an empty datagram when we sent it nothing for this long: under
Linux conntrack's 30 s for an unreplied UDP flow (and its 120 s for an assured one, and RFC
4787's 2 min), so the NAT mappings on both sides stay open."""
RELAY_AFTER_S = 3.0
"""A handshake towards a peer unanswered for this long also goes through the directory's relay
(when the client uses it): by then punching had HANDSHAKE_RETRY_S x 7 tries."""
RELAY_UPGRADE_S = 5.0
"""A peer reached through the relay gets a direct initiation (to every candidate) this often:
a direct path that opens later takes over (its session becomes the current one)."""
RELAY_BYTES_PER_S = 256 * 1024
"""Relayed bytes one user may send per second (a token bucket with a burst of one second's):
the per-user byte budget of the directory's relay. A 64 KiB message passes in a quarter
second; a flood costs the relay a bucket lookup per datagram, and is dropped."""
RELAY_TOTAL_BYTES_PER_S = 16 * 1024 * 1024
"""Relayed bytes per second for all users together."""
RELAY_HOST = "relay"
"""The host part of the pseudo-address a client gives a peer reached through the relay
(``(RELAY_HOST, n)``; never sent to a socket: the core wraps such datagrams in a RELAY)."""
RELAY_OVERHEAD_BYTES = 4 + TOKEN_BYTES + STATIC_KEY_BYTES + 29
"""What relaying adds to a peer datagram: RELAY header, token, key, and the directory
session's TRANSPORT overhead."""
PEER_IDLE_S = 180.0
"""A peer neither sent to nor heard a message from for this long is idle: keepalives stop (its
session expires at ``REJECT_AFTER_TIME_S`` anyway; the next message punches anew)."""
