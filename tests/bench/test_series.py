"""bench.series: three bench-full runs judged together (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import goals, series


def run(loss10_ms: float, *, met: bool = True) -> dict[str, Any]:
    """A summary whose goals are all ``met`` and whose 10 % figure is ``loss10_ms``."""
    s: dict[str, Any] = {g.figure: g.limit for g in goals.GOALS}
    s["goals"] = {g.name: met for g in goals.GOALS}
    s[series.STABLE_KEY] = loss10_ms
    s["environment"] = {"commit": "abc1234"}
    return s


def test_a_steady_series_with_every_goal_met_holds() -> None:
    lines, ok = series.judge([run(100.0), run(110.0), run(80.0)])
    assert ok
    assert any("farthest 20%" in line for line in lines)


@pytest.mark.parametrize("far", [69.0, 131.0])
def test_a_run_beyond_thirty_percent_of_the_median_breaks_the_series(far: float) -> None:
    _, ok = series.judge([run(100.0), run(100.0), run(far)])
    assert not ok


def test_a_goal_missed_in_one_run_breaks_the_series() -> None:
    _, ok = series.judge([run(100.0), run(100.0, met=False), run(100.0)])
    assert not ok


def test_a_missing_figure_breaks_the_series() -> None:
    gone = run(100.0)
    del gone[series.STABLE_KEY]
    _, ok = series.judge([run(100.0), gone, run(100.0)])
    assert not ok


def test_the_command_reads_files_and_exits_by_the_verdict(tmp_path: Path) -> None:
    paths = []
    for i, ms in enumerate((100.0, 105.0, 95.0)):
        path = tmp_path / f"s{i}.json"
        path.write_text(json.dumps(run(ms)))
        paths.append(str(path))
    assert series.main(paths) == 0
    (tmp_path / "s1.json").write_text(json.dumps(run(200.0)))
    assert series.main(paths) == 1
    assert series.main([str(tmp_path / "absent.json")]) == 2


def test_a_goal_no_run_measured_is_listed_not_judged_but_one_run_missing_it_fails() -> None:
    runs = [run(100.0), run(100.0), run(100.0)]
    for r in runs:
        r["bulk_vs_enet"] = None
        r["goals"]["bulk_le_2x_enet"] = None
    lines, ok = series.judge(runs)
    assert ok
    assert any("not measured in any run: bulk_le_2x_enet" in line for line in lines)
    runs[0]["bulk_vs_enet"] = 1.0
    _, ok = series.judge(runs)
    assert not ok
