"""``chat-check HISTORY...``: judge the histories of a run (docs/HISTORY.md).

Exit status (:class:`ExitCode`): 0 no violations, 1 violations, 2 usage or I/O error, 3 internal
error. Every failure is one line ``chat-check: error: ...`` on stderr, never a traceback (but
with ``-v``, for an internal error): :func:`main` is the one place where failures become words.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from enum import IntEnum
from typing import TYPE_CHECKING, Final

from chat_check.checker import DEFAULT_EXAMPLES, Checker, NotAHistory, history_files
from chat_shell.cli import int_type

if TYPE_CHECKING:
    from chat_check.plot import Fault


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="chat-check",
        description="Check chat-client --history files of one run against the chat's promise: "
        "lost, silently lost, duplicated, phantom, out-of-order messages and outcomes never "
        "reported (docs/HISTORY.md).",
    )
    p.add_argument(
        "histories",
        nargs="+",
        metavar="HISTORY",
        help="a history file (any name), or a directory searched for *.jsonl",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--examples",
        type=int_type(0),
        default=DEFAULT_EXAMPLES,
        metavar="N",
        help=f"examples kept per kind of violation (default {DEFAULT_EXAMPLES})",
    )
    p.add_argument("--plot", metavar="PNG", help="also draw a timeline (needs matplotlib)")
    p.add_argument(
        "--faults",
        metavar="FILE",
        help="faults.json to shade on the --plot: [{start, end, kind, target}, ...]",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="show the traceback of an internal error"
    )
    args = p.parse_args(argv)
    if args.faults and not args.plot:
        p.error("--faults needs --plot")
    return args


class ExitCode(IntEnum):
    """chat-check's exit statuses (:data:`MEANING`)."""

    OK = 0
    VIOLATIONS = 1
    ERROR = 2
    INTERNAL = 3


MEANING: Final[dict[ExitCode, str]] = {
    ExitCode.OK: "no violations",
    ExitCode.VIOLATIONS: "at least one violation",
    ExitCode.ERROR: "usage or I/O error: a missing path, no history file found, a path that is "
    "not a regular file, an unreadable file or directory, a bad faults file, --plot without "
    "matplotlib",
    ExitCode.INTERNAL: "internal error: a bug in chat-check (one line naming it; -v shows the "
    "traceback)",
}
"""What each status means: docs/HISTORY.md's table, word for word (a test compares)."""


class Refused(Exception):
    """A failure with its one-line message, raised anywhere below :func:`main`."""


def _fail(message: str, code: ExitCode = ExitCode.ERROR) -> int:
    print(f"chat-check: error: {message}", file=sys.stderr)
    return code


def _os_error(e: OSError) -> str:
    """One line for an ``OSError``: which file, and why in words."""
    if e.errno is None:  # raised with a message of ours
        return str(e)
    where = e.filename if e.filename is not None else "a history"
    if e.errno == errno.ENOENT:
        return f"no such file or directory: {where}"
    return f"cannot read {where}: {e.strerror or os.strerror(e.errno)}"


def main(argv: list[str] | None = None) -> int:
    """chat-check. Usage errors exit 2 from argparse; everything else that can go wrong is
    mapped to one line and an :class:`ExitCode` here."""
    args = parse_args(argv)
    try:
        return _main(args)
    except (Refused, NotAHistory) as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(_os_error(e))
    except RecursionError:
        return _fail("input nested too deeply to read")
    except MemoryError:
        return _fail("out of memory (check fewer histories at once)")
    except KeyboardInterrupt:
        return _fail("interrupted")
    except Exception as e:
        if args.verbose:
            raise
        return _fail(f"internal error ({type(e).__name__}: {e}); -v shows where", ExitCode.INTERNAL)


def _main(args: argparse.Namespace) -> int:
    faults: list[Fault] = []
    if args.faults:
        from chat_check.plot import FaultsError, load_faults

        try:
            faults = load_faults(args.faults)
        except OSError as e:
            raise Refused(f"cannot read {args.faults}: {e.strerror or e}") from None
        except FaultsError as e:
            raise Refused(str(e)) from None
    checker = Checker(max_examples=args.examples)
    files = history_files(args.histories)
    if not files:
        raise Refused("no history files (*.jsonl) in " + ", ".join(args.histories))
    for path in files:
        checker.add_file(path)
    report = checker.report()
    if args.plot:
        from chat_check.plot import plot_checker

        try:
            plot_checker(checker, args.plot, faults=faults, title=os.path.basename(args.plot))
        except ImportError:
            raise Refused("--plot needs matplotlib (pip install -e '.[bench]')") from None
        except OSError as e:
            raise Refused(f"cannot write {args.plot}: {e.strerror or e}") from None
    try:
        if args.json:
            print(json.dumps(report.to_json(), indent=2))
        else:
            print(report.format())
        sys.stdout.flush()
    except BrokenPipeError:  # the reader is gone (chat-check | head): quiet, as cat is
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return ExitCode.OK if report.ok else ExitCode.VIOLATIONS
