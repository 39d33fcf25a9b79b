"""Is there a Docker engine to run the lab on, and the docker SDK client that talks to it."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

from labkit.util import run

if TYPE_CHECKING:
    import docker

SETUP_HINT = "make up sets it up (or, as root: make lab)"


def compose_version() -> str | None:
    """``docker compose version --short`` if it is Compose v2, else None."""
    try:
        r = run(["docker", "compose", "version", "--short"], check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = r.stdout.strip()
    return version if r.returncode == 0 and version.lstrip("v").startswith("2.") else None


def unavailable() -> str | None:
    """None when the lab can run here (the docker command, an engine answering, Compose v2,
    the docker SDK), else why not, with what to do."""
    if shutil.which("docker") is None:
        return f"no docker command; {SETUP_HINT}"
    try:
        info = run(["docker", "info"], check=False)
    except subprocess.TimeoutExpired:
        return f"`docker info` did not answer within 30 s; {SETUP_HINT}"
    if info.returncode != 0:
        lines = [ln for ln in info.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else "no output"
        return f"no Docker engine answering ({why}); {SETUP_HINT}"
    if compose_version() is None:
        return f"no Docker Compose v2 (`docker compose`); {SETUP_HINT}"
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
