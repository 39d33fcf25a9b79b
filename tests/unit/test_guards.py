"""The mutation run's bookkeeping (labkit.mutate, ``make mutate``): every protection marked
``# guard: NAME`` in the product is claimed by a test (``@pytest.mark.guard("NAME")``) and every
claim names a guard that exists, so that ``make mutate`` removes each protection in turn and
runs the tests that must then fail."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labkit.mutate import Guard, GuardError, claimed_guards, find_guards


def test_every_guard_is_claimed_by_a_test_and_every_claim_names_a_guard() -> None:
    guards = {g.name for g in find_guards()}
    claims = set(claimed_guards())
    assert guards, "no '# guard:' line in the product: the mutation run would test nothing"
    assert guards - claims == set(), "guards that no test claims"
    assert claims - guards == set(), "tests claim guards that the code does not mark"


def test_a_guard_is_mutated_into_its_removal(tmp_path: Path) -> None:
    src = tmp_path / "services" / "pkg"
    src.mkdir(parents=True)
    (src / "m.py").write_text(
        "def f(x: int) -> int:\n"
        "    if x < 0:  # guard: negative\n"
        "        return 0\n"
        "    elif x > 9:  # guard: too-big =True\n"
        "        return 9\n"
        "    return x\n"
    )
    neg, big = find_guards(tmp_path)
    assert (neg.name, neg.line, neg.force_true) == ("negative", 2, False)
    assert neg.mutant() == "    if False:  # mutant of guard negative"
    assert (big.name, big.line, big.force_true) == ("too-big", 4, True)
    assert big.mutant() == "    elif True:  # mutant of guard too-big"


def test_a_guard_on_a_line_that_is_not_an_if_is_refused(tmp_path: Path) -> None:
    guard = Guard(
        name="x", path=Path("m.py"), line=1, text="    return a  # guard: x", force_true=False
    )
    with pytest.raises(GuardError, match="not an if/elif"):
        guard.mutant()


def test_the_readme_states_the_mutation_score_over_every_guard() -> None:
    """README's score counts every guard in the code (``make mutate`` proves each killed)."""
    from labkit.util import ROOT

    m = re.search(r"(\d+) of (\d+) mutants killed", (ROOT / "README.md").read_text())
    assert m, "README.md states no mutation score"
    assert int(m[1]) == int(m[2]) == len(find_guards())
