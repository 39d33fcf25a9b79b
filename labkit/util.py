"""Bounded waits, short failure messages, commands, and whether this run is CI."""

from __future__ import annotations

import importlib
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import NoReturn, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
"""The checkout: compose.yaml, the Makefile and scripts/ are here."""


class LabError(RuntimeError):
    """Something the lab needs did not work (a command failed, a server never got ready)."""


def poll_until(
    probe: Callable[[], T | None], timeout: float, interval: float = 0.02
) -> T | None:
    """Poll ``probe`` every ``interval`` s until it returns something truthy (returned), for at
    most ``timeout`` s (then None: the caller decides what a timeout means). The probe runs at
    least once, and once more at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    detail: Callable[[], str] = str,
    interval: float = 0.02,
) -> T:
    """:func:`poll_until` that must succeed: after ``timeout`` s an AssertionError with ``what``
    and ``detail()`` in the message. Every bounded wait of the lab, the tests and the
    benchmarks is one of these two."""
    value = poll_until(probe, timeout, interval)
    if not value:
        extra = detail()
        raise AssertionError(
            f"timed out after {timeout:.1f} s waiting for {what}" + (f"\n{extra}" if extra else "")
        )
    return value


def tail(text: str, n: int = 2000) -> str:
    """The last ``n`` characters of ``text`` (``...`` in front when cut)."""
    return text if len(text) <= n else "..." + text[-n:]


def run(
    argv: Sequence[str],
    *,
    timeout: float = 30.0,
    check: bool = True,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, output captured as text; with ``check``, a non-zero exit
    is a :class:`LabError` quoting the command and its stderr."""
    r = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False
    )
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {r.returncode}: {(r.stderr or r.stdout).strip()}")
    return r


def in_ci() -> bool:
    """``CI`` is set to 1, true or yes."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str, what: str) -> NoReturn:
    """In a test (or at a test module's top): skip for ``reason``; under CI (:func:`in_ci`)
    fail instead, because ``what`` must run there. The one way a test is let off: every
    import-skip, root-only skip and missing tool goes through here."""
    import pytest

    if in_ci():
        pytest.fail(f"{reason} (CI=true: {what} must run)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def import_or_unavailable(module: str, what: str) -> ModuleType:
    """``import module`` for a test, or :func:`unavailable` (skip; under CI, fail) naming it:
    ``pytest.importorskip`` that CI cannot pass by skipping."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        unavailable(f"{module} is not installed ({exc})", what)
