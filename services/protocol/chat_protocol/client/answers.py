"""The directory's answers a client keeps for its sends (one job of the client:
:class:`~chat_protocol.client.core.ClientCore` only routes to it).

A later send to a name answered before uses the answer instead of a LOOKUP while it is younger
than ``timings.client_timeout_s`` (the directory's own liveness bound: it keeps answering for a
user silent that long) and while the peer's secure session works and the peer answers what we
send. Only answers that passed the asked-name check are kept, and the pin is checked under the
name asked on every send, cached or not.
"""

from __future__ import annotations

from collections import OrderedDict

from chat_protocol.client.directory import LookupAnswer
from chat_protocol.client.peerlinks import PeerLinks
from chat_protocol.const import MAX_PEERS_TRACKED
from chat_protocol.secure.endpoint import SecureEndpoint
from chat_protocol.wire.messages import LookupReply
from chat_protocol.wire.names import name_key


class AnswerCache:
    """Name asked (case-folded) -> the directory's answer for a send to it, and when it came."""

    __slots__ = ("_answers", "links", "max_age_s", "saved", "secure")

    def __init__(self, *, secure: SecureEndpoint, links: PeerLinks, max_age_s: float) -> None:
        self.secure = secure
        self.links = links
        self.max_age_s = max_age_s
        self._answers: OrderedDict[str, tuple[LookupReply, float]] = OrderedDict()
        self.saved = 0
        """Sends that used a kept answer instead of a LOOKUP."""

    def get(self, to: str, now: float) -> LookupReply | None:
        """The answer for ``to`` if a send may skip its LOOKUP (counted in :attr:`saved`)."""
        key = name_key(to)
        got = self._answers.get(key)
        if got is None:
            return None
        reply, at = got
        if (
            now - at > self.max_age_s
            or self.secure.session(reply.key, now) is None
            or not self.links.answering(reply.key)
        ):
            del self._answers[key]
            return None
        self.saved += 1
        return reply

    def note(self, asked: str, answer: LookupAnswer, now: float) -> None:
        """The directory answered a send's LOOKUP of ``asked``: keep a usable answer, forget
        the old one otherwise."""
        reply = answer.reply
        key = name_key(asked)
        if reply is not None and reply.addr is not None and not answer.wrong_name:
            self._answers[key] = (reply, now)
            self._answers.move_to_end(key)
            if len(self._answers) > MAX_PEERS_TRACKED:
                self._answers.popitem(last=False)
        else:
            self._answers.pop(key, None)

    def clear(self) -> None:
        self._answers.clear()
