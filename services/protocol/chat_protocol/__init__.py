"""Sans-I/O core of the P2P chat: wire codec, reliable transfer, server and client state machines.

Nothing in this package opens a socket or reads a clock: callers feed datagrams and the current
time in, and drain datagrams, timers and events out.
"""

from chat_protocol.const import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION"]
