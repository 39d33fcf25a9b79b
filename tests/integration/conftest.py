"""Fixtures for the container lab tests (tests/integration).

Each test that takes ``compose_project`` gets its own Compose project (``chatit-<uuid8>``):
its own bridge network and a healthy server, torn down in a finalizer that always runs
(``down -v --remove-orphans``, then a sweep through the Docker API by project label), as
testcontainers does with its reaper.

Without a Docker engine the tests are skipped, except under ``CI=true``, where that is a
failure: run ``scripts/lab-setup.sh`` first. The images are built once per session with
``make images`` (hermetic, see the Dockerfile) unless ``CHAT_IMAGES_READY=1`` says that they
already exist (``make integration-test`` builds them before pytest starts).

Environment: ``CHAT_IMAGE_PREFIX`` (default ``p2p-chat``) picks the images;
``CHAT_IMAGES_READY=1`` skips the build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from chatlab import IMAGE_PREFIX, ROOT, UP_TIMEOUT_S, ComposeProject
from testkit import unavailable

if TYPE_CHECKING:
    import docker

HERE = Path(__file__).resolve().parent

# A module-level `pytestmark` does not reach tests from a conftest: the hook below marks them.


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail under CI=true, where a missing lab must not pass unnoticed."""
    unavailable(reason, "integration tests")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# --- hooks -------------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration is marked ``integration``."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so a finalizer knows whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# --- session fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The Docker SDK client; skips (fails under CI=true) when there is no usable engine."""
    if shutil.which("docker") is None:
        _unavailable("no docker command; run scripts/lab-setup.sh")
    try:
        info = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        _unavailable("`docker info` did not answer within 30 s; run scripts/lab-setup.sh")
    if info.returncode != 0:
        _unavailable(f"no Docker engine ({_last_line(info.stderr)}); run scripts/lab-setup.sh")
    version = subprocess.run(
        ["docker", "compose", "version", "--short"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if version.returncode != 0 or not version.stdout.strip().lstrip("v").startswith("2."):
        _unavailable("no Docker Compose v2 (`docker compose`); run scripts/lab-setup.sh")
    try:
        import docker
    except ImportError:
        _unavailable("the docker Python package is missing: pip install -e '.[dev]'")
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="session")
def chat_images(docker_client: docker.DockerClient) -> dict[str, str]:
    """Server and client image names, built once per session (``make images``)."""
    images = {
        "server": f"{IMAGE_PREFIX}-server:latest",
        "client": f"{IMAGE_PREFIX}-client:latest",
    }
    if os.environ.get("CHAT_IMAGES_READY") != "1":
        build = subprocess.run(
            ["make", "images"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if build.returncode != 0:
            tail = "\n".join((build.stdout + build.stderr).splitlines()[-30:])
            pytest.fail(f"`make images` failed:\n{tail}", pytrace=False)
    import docker.errors

    for name in images.values():
        try:
            docker_client.images.get(name)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {name} missing; run `make images`", pytrace=False)
    return images


@pytest.fixture
def compose_project(
    request: pytest.FixtureRequest,
    docker_client: docker.DockerClient,
    chat_images: dict[str, str],
) -> ComposeProject:
    """A fresh Compose project with the server up and healthy; torn down whatever happens."""
    project = ComposeProject(
        name=f"chatit-{uuid.uuid4().hex[:8]}",
        docker=docker_client,
        env={**os.environ, "CHAT_IMAGE_PREFIX": IMAGE_PREFIX},
    )

    def finalize() -> None:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            try:
                print(f"--- logs of {project.name}:")
                print(
                    project.compose(
                        "--profile", "*", "logs", "--no-color", check=False, timeout=30
                    ).stdout
                )
            except Exception as exc:
                print(f"(no logs: {exc!r})")
        project.close()

    # Registered before `up`, so a server that never gets healthy is cleaned up too.
    request.addfinalizer(finalize)
    up = project.compose(
        "up",
        "-d",
        "--no-build",
        "--wait",
        "--wait-timeout",
        str(UP_TIMEOUT_S),
        "server",
        check=False,
        timeout=UP_TIMEOUT_S + 30,
    )
    # Compose v2.40 `up --wait` exits 0 even when the container exited instead of getting
    # healthy: check Docker's record ourselves.
    health = "none"
    if up.returncode == 0:
        try:
            health = project.health("server")
        except LookupError:
            health = "missing"
    if health != "healthy":
        logs = project.compose("logs", "--no-color", "server", check=False, timeout=30)
        pytest.fail(
            f"server of {project.name} did not become healthy (up: exit {up.returncode},"
            f" health: {health}):\n{up.stdout}{up.stderr}\n"
            f"--- server logs:\n{logs.stdout[-4000:]}",
            pytrace=False,
        )
    return project
