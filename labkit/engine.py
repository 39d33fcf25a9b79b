"""Is there a Docker engine to run the lab on, and the docker SDK client that talks to it."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from labkit.util import ROOT, run

if TYPE_CHECKING:
    import docker

SETUP_HINT = "make up sets it up (or, as root: make lab)"
LAB_CHECK = ROOT / "scripts" / "lab-check.sh"


def unavailable() -> str | None:
    """None when the lab can run here (an engine answering, Compose v2: scripts/lab-check.sh,
    the one check the Makefile and the scripts make too; and the docker SDK), else why not,
    with what to do."""
    try:
        r = run([str(LAB_CHECK)], check=False, timeout=70)
    except subprocess.TimeoutExpired:
        return f"scripts/lab-check.sh did not answer within 70 s; {SETUP_HINT}"
    if r.returncode != 0:
        why = r.stdout.strip() or r.stderr.strip() or f"exit {r.returncode}"
        return f"{why}; {SETUP_HINT}"
    try:
        import docker  # noqa: F401
    except ImportError:
        return "the docker Python package is missing (make install)"
    return None


def client() -> docker.DockerClient:
    """The docker SDK client for the engine the ``docker`` command uses (DOCKER_HOST or the
    local socket)."""
    import docker

    return docker.from_env()
