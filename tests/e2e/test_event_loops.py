"""The asyncio shells on real loopback sockets, on both event loops (uvloop and plain asyncio).

uvloop's transports are not asyncio's classes; this is where a shell that assumes they are breaks.
"""

from __future__ import annotations

import asyncio
import functools
import os

import pytest

from chat_client.app import ClientShell
from chat_client.ui import Output
from chat_protocol.client.core import ClientCore
from chat_protocol.secure.noise import KeyPair
from chat_protocol.server.core import ServerCore
from chat_server.app import ServerShell
from chat_shell import aio
from labkit.util import import_or_unavailable

pytestmark = pytest.mark.e2e
WAIT_S = 10.0


class RecordingOutput(Output):
    def __init__(self) -> None:
        super().__init__(interactive=False)
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    def _write(self, line: str, *, err: bool = False) -> None:
        self.lines.append(line)
        self.changed.set()

    async def wait_for(self, fragment: str) -> str:
        async with asyncio.timeout(WAIT_S):
            while True:
                for line in self.lines:
                    if fragment in line:
                        return line
                self.changed.clear()
                await self.changed.wait()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sign_in_send_and_shutdown_on_each_loop(loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if loop == "uvloop":
        import_or_unavailable("uvloop", "the uvloop shell (the fast extra)")
    else:
        monkeypatch.setenv("CHAT_NO_UVLOOP", "1")
    assert aio.loop_name() == loop

    async def scenario() -> tuple[str, str]:
        server_core = ServerCore(identity=KeyPair.generate(os.urandom))
        server = await aio.open_endpoint(lambda: ServerShell(server_core), host="127.0.0.1", port=0)
        assert server.transport is not None
        port = server.transport.get_extra_info("sockname")[1]
        clients: dict[str, tuple[ClientShell, RecordingOutput]] = {}
        try:
            for name in ("alice", "bob"):
                out = RecordingOutput()
                core = ClientCore(
                    name=name, server=("127.0.0.1", port), identity=KeyPair.generate(os.urandom)
                )
                shell = await aio.open_endpoint(
                    functools.partial(ClientShell, core, out), host="127.0.0.1", port=0
                )
                core.connect(shell.now())
                shell.pump()
                async with asyncio.timeout(WAIT_S):
                    await shell.signed_in
                clients[name] = (shell, out)
            alice, bob = clients["alice"][0], clients["bob"][0]
            assert alice.transport is not None
            alice_port = alice.transport.get_extra_info("sockname")[1]
            alice.core.send("bob", "hello over " + loop, alice.now())
            alice.pump()
            line = await clients["bob"][1].wait_for("hello over")
            server_core.shutdown(server.now())
            server.pump()
            async with asyncio.timeout(WAIT_S):
                codes = await asyncio.gather(alice.finished, bob.finished)
            return line, f"{alice_port} {[int(c) for c in codes]}"
        finally:
            for shell, _ in clients.values():
                shell.close()
            server.close()

    line, rest = aio.run(scenario())
    alice_port, codes = rest.split(" ", 1)
    # bob never pinned alice: her first message is marked (new).
    assert line == f"alice (127.0.0.1:{alice_port}) (new): hello over {loop}"
    assert codes == "[6, 6]"
