"""labkit.natlab without containers: reading turnutils_natdiscovery's verdicts (from outputs
recorded in the NAT lab, tests/unit/data/natdiscovery/), chaining two NATs, the kinds'
variables and the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.natlab import (
    INTENDED,
    ROUNDS,
    ROUTERS,
    VARIABLES,
    Behaviour,
    Classification,
    ClassifierError,
    NatKind,
    Verdict,
    kinds_from,
    parse_natdiscovery,
    table,
)
from labkit.util import LabError

DATA = Path(__file__).resolve().parent / "data" / "natdiscovery"
EI = Behaviour.ENDPOINT_INDEPENDENT
AD = Behaviour.ADDRESS_DEPENDENT
APD = Behaviour.ADDRESS_AND_PORT_DEPENDENT


def recorded(name: str) -> str:
    return (DATA / f"{name}.txt").read_text()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("none", INTENDED[NatKind.NONE]),
        ("full-cone", INTENDED[NatKind.FULL_CONE]),
        ("port-restricted", INTENDED[NatKind.PORT_RESTRICTED]),
        ("symmetric", INTENDED[NatKind.SYMMETRIC]),
        ("none-behind-port-restricted", INTENDED[NatKind.PORT_RESTRICTED]),
        ("symmetric-behind-full-cone", INTENDED[NatKind.SYMMETRIC]),
    ],
)
def test_recorded_outputs_give_their_routers_verdict(name: str, expected: Verdict) -> None:
    assert parse_natdiscovery(recorded(name)) == expected


def test_every_recorded_output_is_used() -> None:
    names = {p.stem for p in DATA.glob("*.txt")}
    assert names == {
        "none",
        "full-cone",
        "port-restricted",
        "symmetric",
        "none-behind-port-restricted",
        "symmetric-behind-full-cone",
    }


def test_address_dependent_verdicts_are_read() -> None:
    # The lab makes no such NAT, but natdiscovery can say so: the third of each test.
    text = (
        recorded("symmetric")
        .replace("Address and Port Dependent Mapping!", "Address Dependent Mapping!")
        .replace("Address and Port Dependent Filtering!", "Address Dependent Filtering!")
    )
    assert parse_natdiscovery(text) == Verdict(translated=True, mapping=AD, filtering=AD)


def test_an_alg_line_does_not_end_a_section() -> None:
    # natdiscovery prints "-= ALG detected! ... =-" inside a test; only titles end one.
    text = recorded("full-cone").replace(
        "No ALG: Mapped == XOR-Mapped", "-= ALG detected! Mapped and XOR-Mapped differ! =-", 1
    )
    assert parse_natdiscovery(text) == INTENDED[NatKind.FULL_CONE]


@pytest.mark.parametrize(
    "broken",
    [
        "",  # nothing ran
        "-= Mapping Behavior Discovery =-\nSTUN receive timeout..\n"
        "-= Filtering Behavior Discovery =-\nSTUN receive timeout..\n",  # no STUN server
        "-= Mapping Behavior Discovery =-\nNAT with Endpoint Independent Mapping!\n",
    ],
    ids=["empty", "no-answer", "no-filtering-test"],
)
def test_output_without_a_verdict_is_an_error(broken: str) -> None:
    with pytest.raises(ClassifierError):
        parse_natdiscovery(broken)


def test_two_verdicts_for_one_test_is_an_error() -> None:
    text = recorded("port-restricted").replace(
        "NAT with Endpoint Independent Mapping!",
        "NAT with Endpoint Independent Mapping!\nNAT with Address Dependent Mapping!",
    )
    with pytest.raises(ClassifierError, match="2 mapping verdicts"):
        parse_natdiscovery(text)


@pytest.mark.parametrize("inner", list(NatKind))
@pytest.mark.parametrize("outer", list(NatKind))
def test_a_nat_behind_another_is_the_stricter_of_the_two(inner: NatKind, outer: NatKind) -> None:
    both = INTENDED[inner].behind(INTENDED[outer])
    assert both.translated == (inner is not NatKind.NONE or outer is not NatKind.NONE)
    for attr in ("mapping", "filtering"):
        ranks = {getattr(INTENDED[k], attr).rank for k in (inner, outer)}
        assert getattr(both, attr).rank == max(ranks)
    if outer is NatKind.NONE:
        assert both == INTENDED[inner]  # a plain router in front changes nothing
    if inner is NatKind.NONE:
        assert both == INTENDED[outer]


def test_the_intended_verdicts_follow_rfc_4787() -> None:
    assert INTENDED[NatKind.FULL_CONE] == Verdict(translated=True, mapping=EI, filtering=EI)
    assert INTENDED[NatKind.PORT_RESTRICTED] == Verdict(translated=True, mapping=EI, filtering=APD)
    assert INTENDED[NatKind.SYMMETRIC] == Verdict(translated=True, mapping=APD, filtering=APD)
    assert not INTENDED[NatKind.NONE].translated
    assert str(INTENDED[NatKind.PORT_RESTRICTED]) == "NAT EIM APDF"
    assert str(INTENDED[NatKind.NONE]) == "no NAT EIM EIF"


def test_the_rounds_put_every_kind_alone_in_front_of_a_host() -> None:
    alone = [r.variable for r in ROUTERS if r.host is not None and r.outer is None]
    for kind in NatKind:
        assert any(rnd[var] is kind for rnd in ROUNDS for var in alone), kind
    for rnd in ROUNDS:
        assert set(rnd) == set(VARIABLES)


def test_kinds_come_from_the_variables() -> None:
    assert kinds_from({"NAT_A": "full-cone", "NAT_B": " symmetric ", "NAT_C": ""}) == {
        "NAT_A": NatKind.FULL_CONE,
        "NAT_B": NatKind.SYMMETRIC,
    }
    with pytest.raises(LabError, match="NAT_A=cone: not a NAT kind"):
        kinds_from({"NAT_A": "cone"})


def test_the_table_says_which_rows_disagree() -> None:
    good = Classification(
        router="router-a",
        kinds=(NatKind.FULL_CONE,),
        intended=INTENDED[NatKind.FULL_CONE],
        observed=INTENDED[NatKind.FULL_CONE],
    )
    bad = Classification(
        router="router-c behind router-cgn",
        kinds=(NatKind.SYMMETRIC, NatKind.NONE),
        intended=INTENDED[NatKind.SYMMETRIC],
        observed=INTENDED[NatKind.PORT_RESTRICTED],
    )
    lines = table([good, bad]).splitlines()
    assert lines[0].split()[:2] == ["router", "kind"]
    assert lines[1].split() == [
        "router-a",
        "full-cone",
        "NAT",
        "EIM",
        "EIF",
        "NAT",
        "EIM",
        "EIF",
        "yes",
    ]
    assert lines[2].endswith("NO")
    assert "symmetric behind none" in lines[2]
    assert good.agrees and not bad.agrees
    assert bad.as_json()["kinds"] == ["symmetric", "none"]


def test_the_readmes_table_of_kinds_says_what_intended_says() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].strip("`") in {k.value for k in NatKind}:
            rows[NatKind(cells[0].strip("`"))] = cells[1]
    assert set(rows) == set(NatKind)
    for kind, text in rows.items():
        verdict = INTENDED[kind]
        expected = (
            f"{verdict.mapping.value} / {verdict.filtering.value}"
            if verdict.translated
            else "no translation / none"
        )
        assert text == expected, kind
