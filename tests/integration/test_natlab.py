"""The NAT lab (compose.nat.yaml, labkit.natlab): every router is of the kind it was asked to
be, by two measures that do not share code with the routers' rules:

- coturn's ``turnutils_natdiscovery`` (RFC 5780), run from behind each router against the STUN
  server on wan, gives the (mapping, filtering) behaviour that the kind intends;
- plain UDP endpoints (scripts/nat/udpprobe.py in the chat client image) see what that
  behaviour means: a stranger on wan cannot reach a host behind a port-restricted or
  symmetric NAT, even at the public endpoint it uses; a full-cone NAT lets it in once that
  endpoint exists; a plain router lets anything through; two hosts behind one router reach
  each other on their private addresses; and a chat client behind two NATs signs in.

Each round of :data:`labkit.natlab.ROUNDS` is one lab (module-scoped fixture), so every kind
is checked alone in front of a host and two pairs behind the carrier-grade NAT.

"Not delivered" is decided against a positive control: after the stranger's datagram, one
from an endpoint the router must let through is sent along the same path and waited for;
the stranger's, sent first, would have arrived before it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from labkit.natlab import (
    INTENDED,
    ROUNDS,
    ROUTERS,
    STUN_IP,
    Behaviour,
    Classification,
    NatKind,
    NatLab,
    Router,
    table,
)
from labkit.util import ROOT

if TYPE_CHECKING:
    import docker

SERVER_IP = "198.51.100.10"  # compose.nat.yaml's host-server (the directory's namespace)
INSIDE_PORT = 40000
ECHO_PORT = 40001
STRANGER_PORT = 40002
BY_NAME = {r.service: r for r in ROUTERS}


def round_id(kinds: dict[str, NatKind]) -> str:
    return ",".join(f"{var.removeprefix('NAT_')}={kind.value}" for var, kind in kinds.items())


@pytest.fixture(scope="session")
def router_image(docker_client: docker.DockerClient) -> str:
    """scripts/router-image.sh: reuses the image, or builds it offline (mmdebstrap)."""
    r = subprocess.run(
        ["scripts/router-image.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip
    if r.returncode != 0:
        pytest.fail(f"scripts/router-image.sh failed:\n{r.stderr[-2000:]}", pytrace=False)
    return r.stdout.strip()


@pytest.fixture(scope="module", params=ROUNDS, ids=round_id)
def nat_lab(
    request: pytest.FixtureRequest,
    start_nat_lab: Callable[..., NatLab],
    chat_images: dict[str, str],
    router_image: str,
) -> Iterator[NatLab]:
    lab = start_nat_lab("natlab-it", request.param)
    yield lab
    lab.close()


@pytest.fixture
def lab(nat_lab: NatLab) -> Iterator[NatLab]:
    """The round's lab, its probes stopped after each test (they hold fixed ports)."""
    yield nat_lab
    nat_lab.stop_probes()


@pytest.fixture(scope="module")
def classified(nat_lab: NatLab) -> dict[str, Classification]:
    """One classifier run per round, shared by the per-router tests."""
    return {row.router: row for row in nat_lab.classify()}


@pytest.mark.parametrize("router", ["router-a", "router-b", "router-c behind router-cgn"])
def test_the_classifier_agrees_with_the_intended_kind(
    nat_lab: NatLab, classified: dict[str, Classification], router: str
) -> None:
    row = classified[router]
    service = router.split()[0]
    assert row.kinds[0] == nat_lab.kinds[BY_NAME[service].variable]  # it runs what we asked
    assert row.observed == row.intended, f"\n{table(list(classified.values()))}"


@pytest.mark.parametrize("service", ["router-a", "router-b"])
def test_unsolicited_datagrams_pass_only_where_the_kind_lets_them(
    lab: NatLab, service: str
) -> None:
    nat_lab = lab
    router: Router = BY_NAME[service]
    kind = nat_lab.kinds[router.variable]
    assert router.host is not None
    inside_ip = nat_lab.address(router.host)
    # Where a stranger would aim before the host has sent anything: the router's public
    # address on the host's port; a plain router routes the private address itself.
    target = inside_ip if kind is NatKind.NONE else nat_lab.public_address(router)
    inside = nat_lab.probe(router.host, INSIDE_PORT)
    echo = nat_lab.probe("host-server", ECHO_PORT)
    stranger = nat_lab.probe("stun", STRANGER_PORT)

    stranger.send(target, INSIDE_PORT, "before")
    inside.send(SERVER_IP, ECHO_PORT, "hello")
    hello = echo.wait_recv("hello")
    mapped = hello.source  # the host's public endpoint, as the echo saw it
    echo.send(*mapped, "welcome")
    inside.wait_recv("welcome")  # the control: answers from where the host sent to pass

    stranger.send(*mapped, "after")  # a stranger, once the mapping exists
    echo.send(*mapped, "again")
    inside.wait_recv("again")
    texts = {d.text for d in inside.received()}

    if kind is NatKind.NONE:
        assert mapped == (inside_ip, INSIDE_PORT)  # no translation
        inside.wait_recv("before")
        inside.wait_recv("after")
    else:
        assert mapped[0] == nat_lab.public_address(router)
        assert "before" not in texts  # no mapping yet: nothing gets in
        if INTENDED[kind].filtering is Behaviour.ENDPOINT_INDEPENDENT:
            inside.wait_recv("after")  # endpoint-independent filtering
        else:
            assert "after" not in texts  # address-and-port-dependent filtering

    # Mapping, measured apart from the classifier: the endpoint a second destination sees.
    inside.send(STUN_IP, STRANGER_PORT, "second-destination")
    seen = stranger.wait_recv("second-destination").source
    if INTENDED[kind].mapping is Behaviour.ENDPOINT_INDEPENDENT:
        assert seen == mapped  # endpoint-independent mapping
    else:
        assert seen[0] == mapped[0] and seen[1] != mapped[1]  # a port per destination


def test_two_hosts_behind_one_router_talk_on_their_private_addresses(lab: NatLab) -> None:
    nat_lab = lab
    port = INSIDE_PORT + 10
    a1_ip, a2_ip = nat_lab.address("host-a1"), nat_lab.address("host-a2")
    a1 = nat_lab.probe("host-a1", port)
    a2 = nat_lab.probe("host-a2", port)
    a1.send(a2_ip, port, "next-door")
    assert a2.wait_recv("next-door").source == (a1_ip, port)  # not translated
    a2.send(a1_ip, port, "hi-back")
    assert a1.wait_recv("hi-back").source == (a2_ip, port)

    # And no hairpin: a2's public endpoint (as a wan host sees it) does not lead back in
    # from a1, whatever the kind; the control is the wan host's answer on the same path.
    echo = nat_lab.probe("host-server", ECHO_PORT)
    a2.send(SERVER_IP, ECHO_PORT, "where-am-i")
    public = echo.wait_recv("where-am-i").source
    a1.send(*public, "hairpin")
    echo.send(*public, "control")
    a2.wait_recv("control")
    if nat_lab.kinds["NAT_A"] is not NatKind.NONE:
        assert "hairpin" not in {d.text for d in a2.received()}


def test_a_chat_client_behind_two_nats_signs_in(nat_lab: NatLab) -> None:
    # client-c sits behind router-c behind router-cgn; the directory sees the outermost
    # translation's address (or the private one if neither translates).
    cgn, home = BY_NAME["router-cgn"], BY_NAME["router-c"]
    if nat_lab.kinds[cgn.variable] is not NatKind.NONE:
        expected = nat_lab.public_address(cgn)
    elif nat_lab.kinds[home.variable] is not NatKind.NONE:
        expected = nat_lab.public_address(home)
    else:
        expected = nat_lab.address("host-c1")
    r = subprocess.run(
        nat_lab.argv("run", "--rm", "-T", "client-c", "-u", "carol"),
        input="exit\n", capture_output=True, text=True, timeout=60, cwd=ROOT, env=nat_lab.env,
        check=False,
    )  # fmt: skip
    assert "signed in as carol" in r.stdout, r.stdout + r.stderr
    ip, _port = nat_lab.signed_in_address("carol")
    assert ip == expected
