"""Judge several ``bench.run`` summaries taken in a row (issue 24: three ``make bench-full``).

A goal holds for the series when it holds in every run (a goal no run measured, in a series of
some sections only, is listed as such and not judged); the 10 % loss figure must also stay
within ``STABLE_WITHIN`` of its median over the runs. ``python -m bench.series A.json B.json
C.json`` prints a Markdown table (one column per run) and exits 0 when everything holds, 1 when
something does not, 2 when a summary cannot be read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench import goals

STABLE_KEY = "bulk_1mib_loss10_ms"
STABLE_WITHIN = 0.30
"""Each run's figure may differ from the series' median by at most this share of it."""


def stability(values: list[float]) -> tuple[float, float]:
    """The median of ``values`` and the largest relative distance of one from it."""
    mid = statistics.median(values)
    worst = max(abs(v - mid) / mid for v in values) if mid else float("inf")
    return mid, worst


def judge(summaries: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """The table's lines and whether every goal held in every run and the 10 % figure held
    still."""
    n = len(summaries)
    head = "| Goal | " + " | ".join(f"run {i + 1}" for i in range(n)) + " | Met in all |"
    lines = [head, "| --- |" + " ---: |" * n + " --- |"]
    ok = True
    unmeasured = []
    for g in goals.GOALS:
        figures = [s.get(g.figure) for s in summaries]
        if all(v is None for v in figures):  # a series of some sections only (ONLY=...)
            unmeasured.append(g.name)
            continue
        met = [s.get("goals", {}).get(g.name) for s in summaries]
        held = all(m is True for m in met)
        ok &= held
        cells = ["n/a" if v is None else f"{v:.3g}" for v in figures]
        lines.append(
            f"| {g.name} ({goals.text(g.name)}) | " + " | ".join(cells) + f" | {_yes(held)} |"
        )
    if unmeasured:
        lines.append(f"| not measured in any run: {', '.join(unmeasured)} |" + " |" * (n + 1))
    values = [s.get(STABLE_KEY) for s in summaries]
    if any(v is None for v in values) or n < 2:
        lines.append(f"| {STABLE_KEY} within ±{STABLE_WITHIN:.0%} of its median | n/a | no |")
        return lines, False
    mid, worst = stability([float(v) for v in values if v is not None])
    steady = worst <= STABLE_WITHIN
    ok &= steady
    cells = [f"{v:.1f}" for v in values if v is not None]
    lines.append(
        f"| {STABLE_KEY} within ±{STABLE_WITHIN:.0%} of its median ({mid:.1f} ms; farthest "
        f"{worst:.0%}) | " + " | ".join(cells) + f" | {_yes(steady)} |"
    )
    return lines, ok


def _yes(b: bool) -> str:
    return "**yes**" if b else "**no**"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("summaries", nargs="+", type=Path, help="summary.json of each run, in order")
    args = p.parse_args(argv)
    loaded: list[dict[str, Any]] = []
    for path in args.summaries:
        try:
            loaded.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            print(f"bench.series: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    commits = sorted({str(s.get("environment", {}).get("commit", "?")) for s in loaded})
    print(f"## {len(loaded)} runs in a row ({', '.join(commits)})\n")
    lines, ok = judge(loaded)
    print("\n".join(lines))
    print(f"\nseries: {'every goal held in every run' if ok else 'NOT every goal held'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
