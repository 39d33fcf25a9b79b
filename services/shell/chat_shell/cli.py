"""Command-line pieces both programs share (argparse types and defaults)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

DEFAULT_PORT = 5000


def int_type(
    low: int, high: int | None = None, *, what: str = "a number", name: str = "value"
) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (no upper bound when high is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} out of range {low}-{high}: {value}")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}: {value}")
        return value

    return parse


def port_type(*, allow_zero: bool) -> Callable[[str], int]:
    return int_type(0 if allow_zero else 1, 65535, what="a port number", name="port")


def add_port_option(parser: argparse.ArgumentParser, *, allow_zero: bool, what: str) -> None:
    """-sp/--port, defaulting to $CHAT_PORT (checked like the option itself) or 5000."""
    parser.add_argument(
        "-sp",
        "--port",
        type=port_type(allow_zero=allow_zero),
        default=os.environ.get("CHAT_PORT") or str(DEFAULT_PORT),
        help=f"{what} (default: $CHAT_PORT or {DEFAULT_PORT})",
    )


def add_server_options(parser: argparse.ArgumentParser, *, what: str = "server") -> None:
    """-sip/--server (default $CHAT_SERVER or 127.0.0.1) and -sp/--port: where the directory
    server is, for the programs that sign in to it."""
    parser.add_argument(
        "-sip",
        "--server",
        default=os.environ.get("CHAT_SERVER", "127.0.0.1"),
        help=f"{what} IP or host name (default: $CHAT_SERVER or %(default)s)",
    )
    add_port_option(parser, allow_zero=False, what=f"{what} UDP port")


def log_to_stderr(verbose: bool) -> None:
    """The clients' log: warnings only, or everything with ``-v``; as ``NAME: MESSAGE``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
