"""``chat-check HISTORY...``: judge the histories of a run (docs/HISTORY.md).

Exit status: 0 no violations, 1 violations, 2 usage or I/O error (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from chat_check.checker import DEFAULT_EXAMPLES, Checker, history_files
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
    args = p.parse_args(argv)
    if args.faults and not args.plot:
        p.error("--faults needs --plot")
    return args


def _fail(message: str) -> int:
    print(f"chat-check: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    faults: list[Fault] = []
    if args.faults:
        from chat_check.plot import FaultsError, load_faults

        try:
            faults = load_faults(args.faults)
        except OSError as e:
            return _fail(f"cannot read {args.faults}: {e.strerror or e}")
        except FaultsError as e:
            return _fail(str(e))
    checker = Checker(max_examples=args.examples)
    try:
        files = history_files(args.histories)
        if not files:
            return _fail("no history files (*.jsonl) in " + ", ".join(args.histories))
        for path in files:
            try:
                checker.add_file(path)
            except OSError as e:
                return _fail(f"cannot read {path}: {e.strerror or e}")
    except FileNotFoundError as e:
        return _fail(str(e))
    except OSError as e:  # a directory that cannot be listed
        return _fail(f"cannot read {e.filename or 'a history'}: {e.strerror or e}")
    report = checker.report()
    if args.plot:
        try:
            from chat_check.plot import plot_checker

            plot_checker(checker, args.plot, faults=faults, title=os.path.basename(args.plot))
        except ImportError:
            return _fail("--plot needs matplotlib (pip install -e '.[bench]')")
        except OSError as e:
            return _fail(f"cannot write {args.plot}: {e.strerror or e}")
    try:
        if args.json:
            print(json.dumps(report.to_json(), indent=2))
        else:
            print(report.format())
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0 if report.ok else 1
