"""Sans-I/O core of the P2P chat: wire codec, reliable transfer, server and client state machines.

Nothing in this package opens a socket or reads a clock: callers feed datagrams and the current
time in, and drain datagrams, timers and events out.

The same sources run as pure Python or compiled with mypyc (``P2P_CHAT_MYPYC=1`` when building;
scripts/core.sh); :func:`compiled` says which one was imported.
"""

from chat_protocol.const import PROTOCOL_VERSION
from chat_protocol.wire import codec

__all__ = ["PROTOCOL_VERSION", "compiled", "core_kind"]


def compiled() -> bool:
    """Whether this core is the mypyc-compiled one (its modules are C extensions)."""
    return not codec.__file__.endswith(".py")


def core_kind() -> str:
    """"compiled core" or "pure-Python core": for the programs' start-up lines."""
    return "compiled core" if compiled() else "pure-Python core"
