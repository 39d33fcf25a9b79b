"""make nat-demo's picture (labkit.natpicture) and what it is drawn from: the endpoints parsed
from bob's line and from each side's whois (labkit.natdemo), checked on its text form."""

from __future__ import annotations

import itertools
from pathlib import Path

from labkit import natpicture
from labkit.natdemo import PairResult, Whois, parse_whois, seen_in
from labkit.natpicture import KINDS, featured, text_lines


def row(kind_a: str, kind_b: str, path: str = "direct", **mappings: str) -> PairResult:
    return PairResult(
        kind_a=kind_a, kind_b=kind_b, path=path, ms=None if path == "failed" else 120.0,
        verdict_a="NAT EIM APDF", verdict_b="NAT APDM APDF", agrees_a=True, agrees_b=True,
        **mappings,
    )  # fmt: skip


def test_the_endpoints_come_from_the_line_and_the_whois_answer() -> None:
    assert seen_in("alice-1 (198.51.100.2:40000) (new): hi (there)") == "198.51.100.2:40000"
    assert seen_in("alice-1 (via relay) (new): hi") == ""
    answer = [
        "bob: key XXXX",
        "  safety number with bob: 1",
        "  new: not pinned yet; ...",
        "  endpoints: 198.51.100.3:28101 (public), 10.211.2.10:40000 (private)",
        "  path: direct, to 198.51.100.3:5871",
    ]
    assert parse_whois(answer) == Whois("198.51.100.3:28101", "10.211.2.10:40000",
                                        "198.51.100.3:5871")  # fmt: skip
    relayed = [*answer[:4], "  path: via relay (the directory forwards the session's ciphertext)"]
    assert parse_whois(relayed).path_to == ""


def test_text_form_lists_every_pair_then_follows_one_message(tmp_path: Path) -> None:
    mappings = {
        "alice_private": "10.211.1.10:40000", "alice_public": "198.51.100.2:40000",
        "alice_seen": "198.51.100.2:40000", "bob_private": "10.211.2.10:40000",
        "bob_public": "198.51.100.3:40000", "bob_seen": "198.51.100.3:40000",
    }  # fmt: skip
    relayed = {("port-restricted", "symmetric"), ("symmetric", "port-restricted"),
               ("symmetric", "symmetric")}  # fmt: skip
    rows = [
        row(a, b, "relay" if (a, b) in relayed else "direct",
            **(mappings if (a, b) == natpicture.FEATURED else {}))
        for a, b in itertools.product(KINDS, KINDS)
    ]  # fmt: skip
    follow = featured(rows)
    assert follow is not None and (follow.kind_a, follow.kind_b) == natpicture.FEATURED
    lines = text_lines(rows, follow)
    assert lines[0].startswith("# make nat-demo: 16 pairs")
    assert "pair symmetric x symmetric: relay 120 ms" in lines
    assert lines[17].startswith("# one message: alice behind router-a (full-cone)")
    assert "bob public (alice sends to) 198.51.100.3:40000" in lines
    assert lines[-1] == (
        "path direct: alice 10.211.1.10:40000 -> router-a -> 198.51.100.2:40000 -> "
        "router-b 198.51.100.3:40000 -> bob"
    )
    via_relay = text_lines(rows, row("symmetric", "symmetric", "relay", **mappings))
    assert "-> directory (relay) ->" in via_relay[-1]
    written = natpicture.write(tmp_path / "nat-demo", rows)
    assert (tmp_path / "nat-demo.txt").read_text().splitlines() == lines
    assert all(p.stat().st_size > 0 for p in written)


def test_without_the_featured_pair_the_last_is_followed() -> None:
    rows = [row("none", "full-cone"), row("symmetric", "symmetric", "failed")]
    follow = featured(rows)
    assert follow is rows[-1]
    assert text_lines(rows, follow)[-1] == "path failed: no line shown"
    assert featured([]) is None
