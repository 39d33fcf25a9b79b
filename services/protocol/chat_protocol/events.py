"""What the cores tell their shells, as typed, immutable events.

Reasons are enums, never text to match: the programs decide the words (and the exit codes).
A shell acts on :meth:`events` (prints them) *before* it sends what ``datagrams_to_send``
returns: the acknowledgement that tells a sender "shown" leaves only after the message was handed
to the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from chat_protocol.outcomes import FailReason
from chat_protocol.wire.messages import Addr, RefuseReason


class SignInFailure(Enum):
    REFUSED = "refused"
    """The server refused the name (``refused`` says why)."""
    NO_ANSWER = "no_answer"
    """The server did not answer within ``request_timeout_s``."""
    SERVER_KEY_MISMATCH = "server_key_mismatch"
    """The server's key is not the one pinned for its address, or given with --server-key."""


class PeerRefusal(Enum):
    KEY_CHANGED = "key_changed"
    """The sender's key is not the one pinned for its name."""
    NOT_IN_DIRECTORY = "not_in_directory"
    """The directory does not have that name signed in with that key."""
    WRONG_NAME = "wrong_name"
    """The directory's answer to the check named another user than the one asked (dropped)."""


class KeyStatus(Enum):
    """What ``whois`` says of the key the directory gives for a name."""

    VERIFIED = "verified"
    """It is the pinned key, and the user pinned it with ``trust`` (after comparing)."""
    PINNED = "pinned"
    """It is the pinned key, pinned on first use (trust on first use): never compared."""
    NEW = "new"
    """Nothing is pinned for the name yet."""
    CHANGED = "changed"
    """Another key is pinned for the name."""


class WhoisFailure(Enum):
    NO_ANSWER = "no_answer"
    """The server did not answer within the request timeout."""
    WRONG_NAME = "wrong_name"
    """The directory's answer named another user than the one asked (dropped)."""
    NOT_SEEN = "not_seen"
    """``trust NAME`` without a key seen: no ``whois NAME`` answer and no fingerprint given."""
    KEY_DIFFERS = "key_differs"
    """``trust``: the directory now gives another key than the one seen or given."""


class GoneReason(Enum):
    SHUTDOWN = "shutdown"
    """The server said it is shutting down."""
    LOST = "lost"
    """Nothing heard from the server for ``silent_s``."""
    SESSION_UNKNOWN = "session_unknown"
    """The server no longer knows this session (it restarted, or expired us)."""


# --- client events ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerKeyPinned:
    """First contact with this server address: its key, to be remembered (trust on first use)."""

    server: Addr
    key: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyPinned:
    """A user's key to remember (first use, or ``trust`` replacing an old one)."""

    name: str
    key: bytes
    replaced: bool
    verified: bool = False
    """Pinned by ``trust`` (the user compared it), not on first use."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PeerRefused:
    """Messages signed by ``key`` claiming to be ``name`` are dropped (said once per pair)."""

    name: str
    key: bytes
    reason: PeerRefusal


class PathKind(Enum):
    """How a working session with a peer carries its datagrams (issue 21)."""

    DIRECT = "direct"
    RELAY = "relay"


@dataclass(frozen=True, kw_only=True, slots=True)
class PeerPath:
    """The path of this client's working session with a peer, as ``whois`` shows it."""

    kind: PathKind
    addr: Addr | None
    """DIRECT: the peer's address the session sends to (the one its datagrams came from last);
    None for RELAY (the directory carries them)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WhoisInfo:
    """The answer to ``whois NAME``: the directory's key and the pinned one (either may be None)."""

    name: str
    key: bytes | None
    pinned: bytes | None
    trusted: bool = False
    """True for the answer to ``trust NAME``: ``key`` is now pinned (verified)."""
    status: KeyStatus = KeyStatus.NEW
    """What ``key`` is to this client (before a ``trust``: what it was)."""
    endpoints: tuple[Addr, ...] = ()
    """The user's public endpoint as the directory observes it, then the private ones it
    declared (empty when the directory has none)."""
    path: PeerPath | None = None
    """This client's working session with that key, if there is one now."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedIn:
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SignInFailed:
    failure: SignInFailure
    server: Addr
    refused: RefuseReason | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class UserList:
    names: tuple[str, ...]
    total: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ListFailed:
    """A list request got no answer."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WhoisFailed:
    """A ``whois``/``trust`` request got no usable answer (not the same as "no such user"), or
    ``trust`` refused to pin (``reason``)."""

    name: str
    reason: WhoisFailure = WhoisFailure.NO_ANSWER
    key: bytes | None = None
    """For ``KEY_DIFFERS``: the key the directory gives now."""


@dataclass(kw_only=True, slots=True, init=False, unsafe_hash=True)
class MessageReceived:
    # Made per datagram: __init__ written out, fields Final (see chat_protocol.wire.messages).
    """A message handed to the user. Emitting it is what "shown" means to the sender."""

    sender: Final[str]
    """Proven: the directory has this name with the key that signed the message, and it is the
    key pinned for the name."""
    addr: Final[Addr]
    """Where the sender's session was last heard from."""
    text: Final[str]
    session: Final[int]
    """The sender's session (random per run of the sender)."""
    msg_id: Final[int]
    """The sender's id of the message: unique per ``session``, increasing in send order."""
    new: Final[bool]
    """The first message shown from a sender this client had never pinned (its key was pinned,
    on first use, by this message's check)."""

    def __init__(
        self, *, sender: str, addr: Addr, text: str, session: int, msg_id: int, new: bool = False
    ) -> None:
        self.sender = sender
        self.addr = addr
        self.text = text
        self.session = session
        self.msg_id = msg_id
        self.new = new


@dataclass(kw_only=True, slots=True, init=False, unsafe_hash=True)
class MessageDelivered:
    # Made per datagram: __init__ written out, fields Final (see chat_protocol.wire.messages).
    """The receiver's program showed the message to its user."""

    handle: Final[int]
    to: Final[str]

    def __init__(self, *, handle: int, to: str) -> None:
        self.handle = handle
        self.to = to


@dataclass(frozen=True, kw_only=True, slots=True)
class SendProgress:
    """A message of more than one chunk: the receiver holds ``acked`` of its ``total`` bytes (it
    has not necessarily shown it yet). Emitted each time ``acked`` reaches a further
    1/``SEND_PROGRESS_STEPS`` of ``total``, and with ``acked == total`` before the
    ``MessageDelivered`` of such a message if not already (a message shown is held whole)."""

    handle: int
    to: str
    acked: int
    total: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SendFailed:
    handle: int
    to: str
    reason: FailReason


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerGone:
    reason: GoneReason
    silent_s: float = 0.0
    """For ``LOST``: how long the server had been silent."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedOut:
    pass


ClientEvent = (
    ServerKeyPinned
    | KeyPinned
    | PeerRefused
    | WhoisInfo
    | SignedIn
    | SignInFailed
    | UserList
    | ListFailed
    | WhoisFailed
    | MessageReceived
    | MessageDelivered
    | SendProgress
    | SendFailed
    | ServerGone
    | SignedOut
)


# --- server events ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class UserJoined:
    name: str
    addr: Addr


@dataclass(frozen=True, kw_only=True, slots=True)
class UserLeft:
    name: str
    addr: Addr
    timed_out: bool


ServerEvent = UserJoined | UserLeft
