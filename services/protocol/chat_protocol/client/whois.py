"""What a ``whois`` (or ``trust``) shows when the directory answers (one job of the client:
:class:`~chat_protocol.client.core.ClientCore` only routes the answer here).

Pins are read and written under the name asked, never the name the answer gives. The answer
also carries the user's endpoints (the directory's) and our path to that key, if a session
works (issue 21).
"""

from __future__ import annotations

from chat_protocol.client.directory import LookupAnswer
from chat_protocol.client.peerlinks import PeerLinks
from chat_protocol.client.pins import Pins
from chat_protocol.client.receiving import ReceivePath
from chat_protocol.events import ClientEvent, WhoisFailed, WhoisFailure, WhoisInfo
from chat_protocol.wire.endpoints import private_endpoints


def whois_answered(
    name: str,
    trust: bool,
    fingerprint: bytes | None,
    answer: LookupAnswer,
    *,
    pins: Pins,
    receiving: ReceivePath,
    links: PeerLinks,
    now: float,
) -> ClientEvent:
    """The event that answers ``whois name`` (``trust``: pin the key seen, which must be
    ``fingerprint``'s if given, as verified)."""
    reply = answer.reply
    if reply is None:
        why = WhoisFailure.WRONG_NAME if answer.wrong_name else WhoisFailure.NO_ANSWER
        return WhoisFailed(name=name, reason=why)
    if reply.addr is None:
        return WhoisInfo(name=name, key=None, pinned=pins.get(name))
    key = reply.key
    status = pins.status(name, key)
    if trust:
        refused = pins.trust(name, key, fingerprint)
        if refused is not None:
            return WhoisFailed(name=name, reason=refused, key=key)
        receiving.forget_verdicts(name)
    else:
        pins.showed(name, key)
    return WhoisInfo(
        name=reply.name,
        key=key,
        pinned=pins.get(name),
        trusted=trust,
        status=status,
        endpoints=(reply.addr, *private_endpoints(reply.local)),
        path=links.path(key, now),
    )
