"""``make fuzz`` deepens every property test: no test pins ``max_examples`` to a number (each
budget goes through ``budget.examples``, which scales it with the profile), and the scaling does
what it says."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import settings

from budget import BASE_EXAMPLES, examples

TESTS = Path(__file__).resolve().parents[1]


def pinned_budgets(source: str) -> list[int]:
    """Lines of ``settings(...)`` calls (``@settings``, ``hypothesis.settings``, a stateful
    machine's ``TestCase.settings = settings(...)``) whose ``max_examples`` is anything but a
    call of ``examples(...)``. Profiles (``settings.register_profile``) are not such calls."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", "")
        for kw in node.keywords if name == "settings" else ():
            v = kw.value
            scaled = (
                isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "examples"
            )
            if kw.arg == "max_examples" and not scaled:
                out.append(node.lineno)
    return out


def test_no_property_test_pins_its_number_of_examples() -> None:
    pinned = {
        str(path.relative_to(TESTS)): lines
        for path in sorted(TESTS.rglob("*.py"))
        if (lines := pinned_budgets(path.read_text(encoding="utf-8")))
    }
    assert not pinned, f"max_examples pinned (use budget.examples(n)): {pinned}"


def test_the_scan_finds_a_pinned_budget_in_each_form() -> None:
    source = (
        "@settings(max_examples=30, deadline=None)\ndef a(): pass\n"
        "@hypothesis.settings(max_examples=N)\ndef b(): pass\n"
        "@settings(max_examples=examples(30))\ndef c(): pass\n"
        "Machine.TestCase.settings = settings(max_examples=50)\n"
        "settings.register_profile('fuzz', max_examples=2000)\n"
    )
    assert pinned_budgets(source) == [1, 3, 7]


settings.register_profile("test-budget-base", max_examples=BASE_EXAMPLES)
settings.register_profile("test-budget-fuzz", max_examples=20 * BASE_EXAMPLES)
settings.register_profile("test-budget-tiny", max_examples=10)


def test_a_budget_scales_with_the_profile() -> None:
    assert examples(300, profile=settings.get_profile("test-budget-base")) == 300
    assert examples(300, profile=settings.get_profile("test-budget-fuzz")) == 6000
    assert examples(1, profile=settings.get_profile("test-budget-tiny")) == 1  # never zero
    loaded = settings.default
    assert loaded is not None
    assert examples(40) == round(40 * loaded.max_examples / BASE_EXAMPLES)
