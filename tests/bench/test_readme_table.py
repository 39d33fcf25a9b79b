"""The README's benchmark table is the committed run's, rendered by this code (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import goals, report

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"


def test_summary_md_is_rendered_from_summary_json_by_this_code() -> None:
    summary = json.loads((RESULTS / "summary.json").read_text())
    assert (RESULTS / "summary.md").read_text() == report.table(summary)


def test_the_readme_shows_summary_md_unedited() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = report.readme_table(readme)
    assert shown == report.as_readme_section((RESULTS / "summary.md").read_text())


def test_the_committed_run_judged_every_goal_of_the_table_as_this_code_would() -> None:
    summary = json.loads((RESULTS / "summary.json").read_text())
    assert summary["goals"] == goals.judge(summary)
    assert set(summary["goals"]) == {g.name for g in goals.GOALS}


def test_the_readme_shows_the_loss_curve() -> None:
    assert "](bench/results/loss_curve.png)" in (ROOT / "README.md").read_text()
    assert (RESULTS / "loss_curve.png").stat().st_size > 0


def test_pasting_replaces_only_the_marked_block() -> None:
    readme = f"intro\n{report.README_BEGIN}\nold\n{report.README_END}\nrest\n"
    out = report.readme_with_table(readme, "## Benchmarks (x)\n\n| a |\n")
    table = "### Benchmarks (x)\n\n| a |"
    assert out == f"intro\n{report.README_BEGIN}\n{table}\n{report.README_END}\nrest\n"
    with pytest.raises(ValueError):
        report.readme_with_table("no markers", "t")
