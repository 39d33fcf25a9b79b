"""Smoke test of the container lab: the server comes up healthy on its own network."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from labkit.compose import SERVER_PORT, Compose

pytestmark = pytest.mark.integration


def test_server_is_healthy(compose_project: Compose) -> None:
    # `up --wait` returned, so the healthcheck (`chat-server --probe`, a real UDP round trip)
    # has passed at least once; Docker's own record must agree.
    assert compose_project.health("server") == "healthy"
    server = compose_project.container("server")
    server.reload()
    assert server.status == "running"
    assert server.attrs["Config"]["User"] == "chat"  # not root
    ip = ipaddress.ip_address(compose_project.container_ip("server"))
    assert ip.is_private
    assert compose_project.container_pid("server") > 0
    # And the probe answers on demand, from inside the container.
    code, output = compose_project.exec(
        "server", ["chat-server", "--probe", "-sp", str(SERVER_PORT)]
    )
    assert code == 0, output


def test_the_images_run_the_compiled_core_when_one_was_built(compose_project: Compose) -> None:
    # scripts/wheels.sh puts the compiled core's wheel (scripts/core.sh) in the images when
    # there is one for the images' Python; else the pure-Python core.
    wheels = Path(__file__).resolve().parents[2] / "build" / "core" / "wheel"
    built = any(wheels.glob("p2p_chat-*-cp3*.whl"))
    code, output = compose_project.exec(
        "server", ["/opt/venv/bin/python", "-c", "import chat_protocol as c; print(c.core_kind())"]
    )
    assert code == 0, output
    assert output.strip() == ("compiled core" if built else "pure-Python core")
