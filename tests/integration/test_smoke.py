"""Smoke test of the container lab: the server comes up healthy on its own network."""

from __future__ import annotations

import ipaddress

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
