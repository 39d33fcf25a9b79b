"""The core under test is the one asked for: compiled (mypyc) when CHAT_CORE_DIR names a build
of it (scripts/core.sh), else the pure-Python sources. CI runs the unit suite both ways."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import chat_protocol

CORE_DIR = os.environ.get("CHAT_CORE_DIR", "")


def _modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(chat_protocol.__path__, "chat_protocol.")]


def test_every_core_module_is_of_the_kind_asked_for() -> None:
    names = _modules()
    assert len(names) > 30 and "chat_protocol.secure.endpoint" in names
    for name in names:
        path = Path(importlib.import_module(name).__file__ or "")
        if CORE_DIR:
            assert path.suffix == ".so" and path.is_relative_to(CORE_DIR), path
        else:
            assert path.suffix == ".py" and "services" in path.parts, path
    assert chat_protocol.compiled() is bool(CORE_DIR)


def test_a_program_started_by_a_test_runs_the_same_core() -> None:
    kind = subprocess.run(
        [sys.executable, "-c", "import chat_protocol; print(chat_protocol.core_kind())"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout.strip()
    assert kind == ("compiled core" if CORE_DIR else "pure-Python core")
