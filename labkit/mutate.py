"""The mutation run (``make mutate``): every protection is removed in turn, and the tests that
claim it must fail.

A protection is a line of the product marked ``# guard: NAME`` (``NAME``: lowercase words and
dashes). The marked line is an ``if`` or ``elif`` whose condition, when true, refuses something
(drops a datagram, refuses a sign-in, ...). The mutant replaces that condition with ``False``:
the protection is gone and everything else is the same. A line marked ``# guard: NAME =True``
is one whose condition, when false, refuses; its mutant forces ``True``.

The tests that claim a protection carry ``@pytest.mark.guard("NAME")`` (several names allowed).
For each guard this runs only those tests, on a copy of the checkout with that one line mutated:
the mutant is *killed* if they fail, *survives* if they pass. Before that, the unmutated copy
must pass them all (a test that fails anyway proves nothing). tests/unit/test_guards.py checks,
in ``make test``, that every guard in the code has a claiming test and every claim a guard.

Usage: ``python -m labkit.mutate [--only NAME ...] [--json FILE]``; exit 0 when every mutant is
killed, 1 otherwise. As a pytest plugin (``-p labkit.mutate --guard NAME``) it keeps only the
tests that claim NAME.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit.util import ROOT

PRODUCT_DIRS = ("services",)
"""Where guards are looked for (the product; tests and the lab carry none)."""

GUARD_RE = re.compile(r"#\s*guard:\s*(?P<name>[a-z0-9][a-z0-9-]*)(?P<force>\s*=True)?\s*$")
IF_RE = re.compile(r"^(?P<indent>\s*)(?P<kw>if|elif)\s+(?P<cond>.+?):\s*(?P<comment>#.*)?$")
MARK_RE = re.compile(r"""pytest\.mark\.guard\((?P<args>[^)]*)\)""")
NAME_RE = re.compile(r"""["']([a-z0-9][a-z0-9-]*)["']""")

TEST_TIMEOUT_S = 900.0
"""Bound on one mutant's test run (its tests are a few unit and e2e tests)."""


class GuardError(ValueError):
    """A marked line this tool cannot mutate (not an if/elif with its condition on one line)."""


@dataclass(frozen=True, kw_only=True)
class Guard:
    name: str
    path: Path  # relative to the checkout
    line: int  # 1-based
    text: str
    force_true: bool

    def mutant(self) -> str:
        """The line with the protection removed."""
        m = IF_RE.match(self.text)
        if m is None:
            raise GuardError(
                f"{self.path}:{self.line}: '# guard:' marks a line that is not an if/elif"
            )
        value = "True" if self.force_true else "False"
        return f"{m['indent']}{m['kw']} {value}:  # mutant of guard {self.name}"


def find_guards(root: Path = ROOT) -> list[Guard]:
    """Every marked line of the product, in file order."""
    guards = []
    for top in PRODUCT_DIRS:
        for path in sorted((root / top).rglob("*.py")):
            for number, text in enumerate(path.read_text().splitlines(), start=1):
                m = GUARD_RE.search(text)
                if m is None:
                    continue
                guard = Guard(
                    name=m["name"],
                    path=path.relative_to(root),
                    line=number,
                    text=text,
                    force_true=bool(m["force"]),
                )
                guard.mutant()  # raises GuardError if the line cannot be mutated
                guards.append(guard)
    return guards


def claimed_guards(root: Path = ROOT) -> dict[str, list[Path]]:
    """Guard name -> test files that claim it (``pytest.mark.guard("NAME", ...)``)."""
    claims: dict[str, list[Path]] = {}
    for path in sorted((root / "tests").rglob("test_*.py")):
        for m in MARK_RE.finditer(path.read_text()):
            for name in NAME_RE.findall(m["args"]):
                files = claims.setdefault(name, [])
                rel = path.relative_to(root)
                if rel not in files:
                    files.append(rel)
    return claims


# --- as a pytest plugin: keep only the tests that claim the guards named ---------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--guard", action="append", default=[], help="keep tests that claim NAME")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(config.getoption("--guard"))
    if not wanted:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        names = {n for mark in item.iter_markers("guard") for n in mark.args}
        (keep if names & wanted else drop).append(item)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Outcome:
    guard: Guard
    tests: tuple[str, ...]
    result: str  # killed | survived | untested | error
    seconds: float
    detail: str = ""


def _copy_checkout(dest: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "clean-copy.sh"), str(dest)], check=True)


def _pytest(
    copy: Path, names: Iterable[str], files: Sequence[Path]
) -> subprocess.CompletedProcess[str]:
    paths = [
        copy / top
        for top in (
            "services/protocol",
            "services/shell",
            "services/server",
            "services/client",
            "services/check",
            "services/history",
        )
    ]
    env = dict(os.environ)
    env.pop("CHAT_CORE_DIR", None)  # the pure-Python core: the mutant is in its sources
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths if p.is_dir()), str(copy)])
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-x",
        "-p",
        "no:cacheprovider",
        "-p",
        "labkit.mutate",
        *(f"--guard={n}" for n in names),
        *(str(f) for f in files),
    ]
    return subprocess.run(
        argv, cwd=copy, env=env, capture_output=True, text=True, timeout=TEST_TIMEOUT_S, check=False
    )


def _last_lines(text: str, n: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def run(only: Sequence[str] = ()) -> list[Outcome]:
    guards = [g for g in find_guards() if not only or g.name in only]
    claims = claimed_guards()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="p2p-chat-mutate-") as tmp:
        copy = Path(tmp) / "src"
        _copy_checkout(copy)
        names = sorted({g.name for g in guards if g.name in claims})
        files = sorted({f for n in names for f in claims[n]})
        if files:
            t0 = time.monotonic()
            base = _pytest(copy, names, files)
            if base.returncode != 0:
                raise SystemExit(
                    "mutate: the claiming tests fail without any mutant; fix them first:\n"
                    + _last_lines(base.stdout + base.stderr, 30)
                )
            print(
                f"mutate: unmutated, {len(files)} test files pass ({time.monotonic() - t0:.0f} s)"
            )
        for guard in guards:
            tests = tuple(str(f) for f in claims.get(guard.name, []))
            if not tests:
                outcomes.append(Outcome(guard=guard, tests=(), result="untested", seconds=0.0))
                continue
            target = copy / guard.path
            original = target.read_text()
            lines = original.splitlines(keepends=True)
            lines[guard.line - 1] = guard.mutant() + "\n"
            target.write_text("".join(lines))
            t0 = time.monotonic()
            try:
                r = _pytest(copy, [guard.name], claims[guard.name])
            finally:
                target.write_text(original)
            seconds = time.monotonic() - t0
            if r.returncode == 1:
                result = "killed"
            elif r.returncode == 0:
                result = "survived"
            else:
                result = "error"
            outcomes.append(
                Outcome(
                    guard=guard,
                    tests=tests,
                    result=result,
                    seconds=seconds,
                    detail=_last_lines(r.stdout + r.stderr, 3),
                )
            )
            print(
                f"mutate: {guard.name:<22} {guard.path}:{guard.line}  {result} ({seconds:.0f} s)",
                flush=True,
            )
    return outcomes


def report(outcomes: Sequence[Outcome]) -> str:
    killed = sum(o.result == "killed" for o in outcomes)
    rows = ["| guard | where | killed by | result |", "| --- | --- | --- | --- |"]
    for o in outcomes:
        rows.append(
            f"| `{o.guard.name}` | `{o.guard.path}:{o.guard.line}` | "
            f"{', '.join(f'`{t}`' for t in o.tests) or '-'} | {o.result} |"
        )
    rows.append("")
    rows.append(f"mutation score: {killed} of {len(outcomes)} mutants killed")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labkit.mutate", description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=[], help="only the guards named")
    ap.add_argument("--json", type=Path, help="also write the outcomes here")
    args = ap.parse_args(argv)
    try:
        outcomes = run(args.only)
    except GuardError as e:
        print(f"mutate: {e}", file=sys.stderr)
        return 2
    if not outcomes:
        print("mutate: no '# guard:' lines found", file=sys.stderr)
        return 1
    print(report(outcomes))
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "guard": o.guard.name,
                        "where": f"{o.guard.path}:{o.guard.line}",
                        "tests": list(o.tests),
                        "result": o.result,
                        "seconds": round(o.seconds, 1),
                        "detail": o.detail,
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    return 0 if all(o.result == "killed" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
