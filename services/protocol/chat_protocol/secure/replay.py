"""The replay window: which counters a receiver has accepted (RFC 6479; WireGuard's ``replay/``)."""

from __future__ import annotations

import functools

from chat_protocol.const import REPLAY_WINDOW_BITS
from chat_protocol.secure.errors import LocalSecureError, ReplayedDatagram, StaleDatagram


@functools.lru_cache(maxsize=8)
def window_mask(size: int) -> int:
    """``size`` one bits: shared by every window of that size (an 8192-bit int is 1 KiB)."""
    return (1 << size) - 1


def window_check(newest: int, bits: int, size: int, counter: int) -> None:
    """:meth:`ReplayWindow.check` on a window's two ints (a session keeps them inline)."""
    if counter > newest:
        return
    back = newest - counter
    if back >= size:
        raise StaleDatagram("counter older than the replay window")
    if (bits >> back) & 1:  # guard: replay-window
        raise ReplayedDatagram("counter already received")


def window_accept(newest: int, bits: int, size: int, mask: int, counter: int) -> int:
    """The bitmap after recording ``counter`` (already checked) in a window of ``size`` (``mask``
    is ``window_mask(size)``); the newest counter is then ``max(newest, counter)``."""
    if counter > newest:
        shift = counter - newest
        return 1 if shift >= size else ((bits << shift) | 1) & mask
    return bits | (1 << (newest - counter))


class ReplayWindow:
    """Which counters a receiver has accepted (RFC 6479; WireGuard's ``receive.c``).

    Holds the newest accepted counter and a bitmap of the ``size`` counters ending at it (a Python
    int; bit ``i`` stands for ``newest - i``). A counter above the newest is new; one in the
    window is new if its bit is clear; one ``size`` or more below the newest is too old to tell
    and is refused. :meth:`check` before decrypting (cheap, changes nothing), :meth:`accept` only
    after the datagram authenticated, so forged counters cannot move the window.

    (A :class:`SecureSession` keeps the same two ints in its own slots, through the same
    functions, rather than one of these per session.)
    """

    __slots__ = ("_bits", "_mask", "_newest", "size")

    def __init__(self, size: int = REPLAY_WINDOW_BITS) -> None:
        if size < 1:
            raise LocalSecureError("a replay window holds at least one counter")
        self.size = size
        self._mask = window_mask(size)
        self._newest = -1
        self._bits = 0

    @property
    def newest(self) -> int | None:
        """The highest counter accepted so far, or None before the first."""
        return None if self._newest < 0 else self._newest

    def check(self, counter: int) -> None:
        """Raise :class:`ReplayedDatagram` or :class:`StaleDatagram` unless ``counter`` is new."""
        window_check(self._newest, self._bits, self.size, counter)

    def accept(self, counter: int) -> bool:
        """Record ``counter`` as received; True if it is the newest now. Checks it first."""
        self.check(counter)
        self._bits = window_accept(self._newest, self._bits, self.size, self._mask, counter)
        if counter > self._newest:
            self._newest = counter
            return True
        return False
