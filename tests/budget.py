"""Hypothesis budgets relative to the profile (tests/conftest.py): ``@settings(max_examples=
examples(300))`` runs 300 examples under the ``ci`` and ``random`` profiles (100 examples a
test by default) and 20 times as many under ``fuzz`` (2,000 by default), so ``make fuzz``
deepens every property test, those with a budget of their own too.

A test never pins ``max_examples`` to a number: tests/unit/test_budget.py fails if one does.
Imported by the test modules at collection, after the hypothesis plugin has loaded the profile
named on the command line (or conftest's default).
"""

from __future__ import annotations

from hypothesis import settings

BASE_EXAMPLES = 100
"""The examples a test gets under the ``ci`` profile (hypothesis' default): a budget of ``n`` is
``n`` there, and scales with the loaded profile's default beside this."""


def examples(n: int, *, profile: settings | None = None) -> int:
    """``n`` examples scaled by the loaded profile (or ``profile``): ``n`` times its default
    ``max_examples`` over :data:`BASE_EXAMPLES`, at least 1."""
    scale = profile or settings.default
    assert scale is not None  # hypothesis always has a default profile
    return max(1, round(n * scale.max_examples / BASE_EXAMPLES))
