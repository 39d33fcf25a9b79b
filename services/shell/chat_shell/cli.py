"""Command-line pieces both programs share (argparse types and defaults)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

DEFAULT_PORT = 5000


def port_type(*, allow_zero: bool) -> Callable[[str], int]:
    low = 0 if allow_zero else 1

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(f"port out of range {low}-65535: {value}")
        return value

    return parse


def add_port_option(parser: argparse.ArgumentParser, *, allow_zero: bool, what: str) -> None:
    """-sp/--port, defaulting to $CHAT_PORT (checked like the option itself) or 5000."""
    parser.add_argument(
        "-sp",
        "--port",
        type=port_type(allow_zero=allow_zero),
        default=os.environ.get("CHAT_PORT") or str(DEFAULT_PORT),
        help=f"{what} (default: $CHAT_PORT or {DEFAULT_PORT})",
    )
