"""labkit.chaos.natlab's placement of a chaos run's clients on the NAT lab (no Docker)."""

from __future__ import annotations

import ipaddress

import pytest

from labkit.chaos.natlab import KINDS, LANS, lan_of
from labkit.chaos.run import Settings
from labkit.natlab import INTENDED, Behaviour, NatKind


@pytest.mark.parametrize("clients", [2, 4, 6, 10, 40])
def test_every_client_has_its_own_fixed_address_behind_a_router(clients: int) -> None:
    names = Settings(clients=clients).names()
    placed = lan_of(names)
    assert list(placed) == names
    addresses = [ip for _, ip in placed.values()]
    assert len(set(addresses)) == len(addresses)
    for lan, ip in placed.values():
        subnet = ipaddress.ip_network(f"{lan.prefix}.0/24")
        dynamic = ipaddress.ip_network(f"{lan.prefix}.128/26")  # compose.nat.yaml's ip_range
        address = ipaddress.ip_address(ip)
        assert address in subnet and address not in dynamic
        assert ip not in (f"{lan.prefix}.10", f"{lan.prefix}.11", lan.router)


def test_the_default_run_takes_every_path() -> None:
    """Six clients: two behind each router, so pairs meet on private addresses; a x b can only
    use the relay (port-restricted x symmetric); c, behind a full cone, punches to both."""
    lans = [lan.network for lan, _ in lan_of(Settings().names()).values()]
    assert all(lans.count(lan.network) == 2 for lan in LANS)
    a, b = INTENDED[KINDS["NAT_A"]], INTENDED[KINDS["NAT_B"]]
    assert a.filtering is Behaviour.ADDRESS_AND_PORT_DEPENDENT
    assert b.mapping is Behaviour.ADDRESS_AND_PORT_DEPENDENT
    c = INTENDED[KINDS["NAT_C"]].behind(INTENDED[KINDS["NAT_CGN"]])
    assert c.filtering is Behaviour.ENDPOINT_INDEPENDENT and KINDS["NAT_C"] is NatKind.NONE
