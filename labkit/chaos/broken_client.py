"""A chat-client broken on purpose, made by the lab (the product has no switch for it): the real
``chat-client`` (``chat_client.app.main``, same arguments), except that the first message each
run of it receives is acknowledged but never shown, on the screen or in its history. Its sender
is told ``delivered``, so chat-check must find that message ``lost`` (docs/CHAOS.md, ``make chaos
BROKEN=1``).

The fault is applied from outside the client's code: this program runs the client with its
shell's event handler wrapped, and lets every other event through untouched. It imports only
the standard library and the chat packages, so it runs as a plain script in the client image,
where labkit is not installed (labkit.chaos.fleet mounts this file into the container and makes
it the entry point)::

    python3 broken_client.py -u alice --history /hist/alice.jsonl
"""

from __future__ import annotations

import sys
from unittest import mock

from chat_client import app
from chat_protocol.events import ClientEvent, MessageReceived


class DropsFirstMessage(app.ClientShell):
    """The client's shell, but the first :class:`MessageReceived` is dropped after the core
    acknowledged it: neither printed nor recorded as ``shown``."""

    dropped = False

    def on_event(self, event: ClientEvent) -> None:
        if isinstance(event, MessageReceived) and not self.dropped:
            self.dropped = True
            return
        super().on_event(event)


def main(argv: list[str] | None = None) -> int:
    with mock.patch.object(app, "ClientShell", DropsFirstMessage):
        return app.main(argv)


if __name__ == "__main__":
    sys.exit(main())
