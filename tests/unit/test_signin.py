"""chat_protocol.client.signin: ServerSignIn is ClientCore's own sign-in, datagram for datagram."""

from __future__ import annotations

import random
from collections.abc import Callable

from chat_protocol.client.core import ClientCore
from chat_protocol.client.directory import State
from chat_protocol.client.signin import ServerSignIn
from chat_protocol.const import DEFAULT_TIMINGS
from chat_protocol.events import SignedIn, SignInFailed, SignInFailure
from chat_protocol.secure.noise import KeyPair
from chat_protocol.secure.packets import PacketType
from chat_protocol.server.core import ServerCore
from chat_protocol.wire.messages import Addr

S: Addr = ("10.0.0.1", 5000)
A: Addr = ("10.0.0.2", 40000)
OFFSET = 1.7e9


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


class Core:
    """What ServerSignIn and ClientCore have in common: the five methods, and the state."""

    def __init__(self, core: ClientCore | ServerSignIn) -> None:
        self.core = core

    def exchange(self, server: ServerCore, now: float) -> list[bytes]:
        """Everything the client sends at ``now`` (and in answer to the server's answers)."""
        sent: list[bytes] = []
        out = self.core.datagrams_to_send(now)
        while out:
            for datagram, addr in out:
                assert addr == S
                sent.append(datagram)
                server.receive_datagram(datagram, A, now)
            for datagram, addr in server.datagrams_to_send(now):
                assert addr == A
                self.core.receive_datagram(datagram, S, now)
            out = self.core.datagrams_to_send(now)
        return sent


def sign_in(core: ClientCore | ServerSignIn, seed: int, drop_first: int = 0) -> list[bytes]:
    """Sign ``core`` in to a server made from ``seed`` (its first ``drop_first`` datagrams lost);
    every datagram the client sent, in order."""
    server = ServerCore(identity=KeyPair.generate(rng(seed)), random_bytes=rng(seed + 1))
    c = Core(core)
    now = 10.0
    core.connect(now)
    sent: list[bytes] = []
    while len(sent) < drop_first:  # lost on the way
        sent += [d for d, _ in core.datagrams_to_send(now)]
        t = core.next_timer()
        assert t is not None
        now = max(now, t)
        core.handle_timer(now)
    while core.state is not State.ONLINE:
        sent += c.exchange(server, now)
        t = core.next_timer()
        if core.online or t is None:
            break
        now = max(now, t)
        core.handle_timer(now)
    assert core.state is State.ONLINE
    return sent


def test_server_sign_in_sends_what_client_core_sends() -> None:
    """The same keys and random bytes give the same datagrams, lost initiations included: one
    implementation of the sign-in (ClientCore draws 4 bytes for its run id first)."""
    for seed, lost in ((1, 0), (2, 2)):
        key = KeyPair.generate(rng(seed)).public
        identity = KeyPair.generate(rng(seed + 7))
        client_rng = rng(seed + 9)
        client = ClientCore(
            name="alice",
            server=S,
            identity=identity,
            server_key=key,
            clock_offset_s=OFFSET,
            random_bytes=client_rng,
        )
        alone_rng = rng(seed + 9)
        alone_rng(4)  # (ClientCore's run id)
        alone = ServerSignIn(
            name="alice",
            server=S,
            identity=identity,
            server_key=key,
            clock_offset_s=OFFSET,
            random_bytes=alone_rng,
        )
        a = sign_in(client, seed, lost)
        b = sign_in(alone, seed, lost)
        assert a == b
        kinds = [d[0] for d in b]
        assert kinds[: lost + 1] == [PacketType.HANDSHAKE_INIT.value] * (lost + 1)
        assert kinds[-1] == PacketType.TRANSPORT.value  # the HEARTBEAT that registers
        assert [type(e) for e in alone.events()] == [SignedIn]
        session = alone.session(20.0)
        assert session is not None and alone.token
        assert alone.handshake_index() == session.local_index


def test_server_sign_in_learns_the_key_when_none_is_pinned() -> None:
    alone = ServerSignIn(
        name="bob", server=S, identity=KeyPair.generate(rng(3)), random_bytes=rng(4)
    )
    sent = sign_in(alone, 5)
    assert sent[0][0] == PacketType.KEY_REQUEST.value
    assert alone.link.server_key == KeyPair.generate(rng(5)).public


def test_server_sign_in_gives_up_without_an_answer() -> None:
    alone = ServerSignIn(
        name="carol",
        server=S,
        identity=KeyPair.generate(rng(6)),
        server_key=KeyPair.generate(rng(7)).public,
        random_bytes=rng(8),
    )
    now = 0.0
    alone.connect(now)
    initiations = 0
    while (t := alone.next_timer()) is not None:
        initiations += len(alone.datagrams_to_send(now))
        now = t
        alone.handle_timer(now)
    assert alone.state is State.GONE
    ended = alone.directory.ended
    assert isinstance(ended, SignInFailed) and ended.failure is SignInFailure.NO_ANSWER
    retries = DEFAULT_TIMINGS.request_timeout_s / DEFAULT_TIMINGS.request_retry_s
    assert initiations == int(retries) + (retries != int(retries))
