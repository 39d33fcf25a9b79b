"""Fixtures for the container lab tests (tests/integration), on the lab harness (labkit).

Each test that takes ``compose_project`` gets its own Compose project (``chatit-<uuid8>``,
a :class:`labkit.compose.Compose`): its own bridge network and a healthy server, torn down in
a finalizer that always runs (clients stopped, ``down -v --remove-orphans``, then a sweep
through the Docker API by project label), as testcontainers does with its reaper.

Without a Docker engine the tests are skipped, except under ``CI=true``, where that is a
failure (``make up`` sets one up). The images are built once per session with ``make images``
(hermetic, see the Dockerfile) unless ``CHAT_IMAGES_READY=1`` says that they already exist
(``make integration-test`` builds them before pytest starts).

Environment: ``CHAT_IMAGE_PREFIX`` (default ``p2p-chat``) picks the images;
``CHAT_IMAGES_READY=1`` skips the build.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from labkit import engine
from labkit.compose import Compose
from labkit.util import ROOT, LabError, unavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import docker

    from labkit.natlab import NatKind, NatLab

HERE = Path(__file__).resolve().parent
IMAGE_PREFIX = os.environ.get("CHAT_IMAGE_PREFIX", "p2p-chat")

# A module-level `pytestmark` does not reach tests from a conftest: the hook below marks them.


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


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The Docker SDK client; skips (fails under CI=true) when there is no usable engine."""
    why = engine.unavailable()
    if why:
        unavailable(why, "integration tests")
    client = engine.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def chat_images(docker_client: docker.DockerClient) -> dict[str, str]:
    """Server and client image names, built once per session (``make images``)."""
    import docker.errors

    images = {
        "server": f"{IMAGE_PREFIX}-server:latest",
        "client": f"{IMAGE_PREFIX}-client:latest",
    }
    if os.environ.get("CHAT_IMAGES_READY") != "1":
        build = subprocess.run(
            ["make", "images"], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
        )
        if build.returncode != 0:
            tail = "\n".join((build.stdout + build.stderr).splitlines()[-30:])
            pytest.fail(f"`make images` failed:\n{tail}", pytrace=False)
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
) -> Compose:
    """A fresh Compose project with the server up and healthy; torn down whatever happens."""
    project = Compose(
        f"chatit-{uuid.uuid4().hex[:8]}",
        env={"CHAT_IMAGE_PREFIX": IMAGE_PREFIX},
        docker_client=docker_client,
    )

    def finalize() -> None:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"--- logs of {project.name}:\n{project.all_logs()}")
        project.close()

    # Registered before `up`, so a server that never gets healthy is cleaned up too.
    request.addfinalizer(finalize)
    try:
        project.up("server")
    except LabError as exc:
        pytest.fail(str(exc), pytrace=False)
    return project


@pytest.fixture(scope="session")
def start_nat_lab(docker_client: docker.DockerClient) -> Callable[..., NatLab]:
    """``start_nat_lab(prefix, kinds)``: a NAT lab named ``prefix-<uuid8>``, up (the caller
    closes it); one that cannot come up is closed again and fails the test."""
    from labkit.natlab import NatLab

    def start(prefix: str, kinds: Mapping[str, NatKind]) -> NatLab:
        lab = NatLab(f"{prefix}-{uuid.uuid4().hex[:8]}", kinds=kinds, docker_client=docker_client)
        try:
            lab.up_all()
        except LabError as exc:
            lab.close()
            pytest.fail(str(exc), pytrace=False)
        return lab

    return start
