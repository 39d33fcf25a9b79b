"""The build's one optional step: with ``P2P_CHAT_MYPYC=1`` the sans-I/O core (chat_protocol)
is compiled with mypyc into C extensions, as black and mypy ship themselves; without it the
package is pure Python (the same code, slower). Everything else about the package is in
pyproject.toml. scripts/core.sh and scripts/wheels.sh build the compiled form."""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

ext_modules = []
if os.environ.get("P2P_CHAT_MYPYC") == "1":
    from mypyc.build import mypycify

    core = sorted(str(p) for p in Path("services/protocol/chat_protocol").rglob("*.py"))
    ext_modules = mypycify(core, opt_level="3")

setup(ext_modules=ext_modules)
