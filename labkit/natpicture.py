"""``make nat-demo``'s picture: every pair's path and time as a grid, and, for one pair, the
routers, the mappings they made and the path its message took, all from what the run
recorded (:class:`labkit.natdemo.PairResult`: bob's line, each side's ``whois``), never by
hand.

:func:`write` makes ``STEM.png``, ``STEM.svg`` (matplotlib, the ``bench`` extra) and
``STEM.txt``, the text version a test reads::

    # make nat-demo: 16 pairs, router-a's kind (rows) x router-b's (columns)
    pair none x none: direct 214 ms
    ...
    # one message: alice behind router-a (port-restricted) -> bob behind router-b (symmetric)
    alice private 10.211.1.10:40000
    alice public (the directory saw) 198.51.100.2:40000
    alice public (bob saw) 198.51.100.2:40000
    bob private 10.211.2.10:40000
    bob public (the directory saw) 198.51.100.3:28101
    bob public (alice sends to) 198.51.100.3:5871
    path direct: alice 10.211.1.10:40000 -> router-a -> 198.51.100.2:40000 -> router-b
    198.51.100.3:5871 -> bob                                   (one line in the file)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from labkit.natdemo import PairResult

KINDS = ("none", "full-cone", "port-restricted", "symmetric")
PATH_COLOURS = {"direct": "#a5d6a7", "relay": "#ffcc80", "failed": "#ef9a9a"}
FEATURED = ("full-cone", "symmetric")
"""The pair whose message the picture follows (when the run has it): a direct path through a
symmetric NAT, whose mapping towards the peer is not the one the directory saw (so the
picture shows why the peer's own endpoint, not the directory's view, is the path)."""


def featured(rows: Sequence[PairResult], want: tuple[str, str] = FEATURED) -> PairResult | None:
    """The pair the picture follows: ``want`` if the run has it, else the last pair."""
    for r in rows:
        if (r.kind_a, r.kind_b) == want:
            return r
    return rows[-1] if rows else None


def path_line(r: PairResult) -> str:
    """The hops of the followed message, as the run saw them."""
    if r.path == "relay":
        return (
            f"path relay: alice {r.alice_private or '?'} -> router-a -> "
            f"{r.alice_public or '?'} -> directory (relay) -> {r.bob_public or '?'} -> "
            "router-b -> bob"
        )
    if r.path == "direct":
        return (
            f"path direct: alice {r.alice_private or '?'} -> router-a -> "
            f"{r.alice_seen or '?'} -> router-b {r.bob_seen or '?'} -> bob"
        )
    return "path failed: no line shown"


def text_lines(rows: Sequence[PairResult], follow: PairResult | None) -> list[str]:
    out = [f"# make nat-demo: {len(rows)} pairs, router-a's kind (rows) x router-b's (columns)"]
    for r in rows:
        ms = "-" if r.ms is None else f"{r.ms:.0f} ms"
        out.append(f"pair {r.kind_a} x {r.kind_b}: {r.path} {ms}")
    if follow is not None:
        r = follow
        out += [
            f"# one message: alice behind router-a ({r.kind_a}) -> bob behind router-b "
            f"({r.kind_b})",
            f"alice private {r.alice_private or '?'}",
            f"alice public (the directory saw) {r.alice_public or '?'}",
            f"alice public (bob saw) {r.alice_seen or '?'}",
            f"bob private {r.bob_private or '?'}",
            f"bob public (the directory saw) {r.bob_public or '?'}",
            f"bob public (alice sends to) {r.bob_seen or '?'}",
            path_line(r),
        ]
    return out


def draw(rows: Sequence[PairResult], follow: PairResult | None) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, (grid, topo) = plt.subplots(
        1, 2, figsize=(15, 6.2), gridspec_kw={"width_ratios": [1, 1.45]}
    )
    # -- every pair: its path and time
    cells = {(r.kind_a, r.kind_b): r for r in rows}
    for i, ka in enumerate(KINDS):
        for j, kb in enumerate(KINDS):
            r = cells.get((ka, kb))
            colour = PATH_COLOURS.get(r.path, "#eeeeee") if r else "#fafafa"
            grid.add_patch(Rectangle((j, -i - 1), 1, 1, fc=colour, ec="white", lw=2))
            if r is not None:
                ms = "" if r.ms is None else f"\n{r.ms:.0f} ms"
                grid.text(j + 0.5, -i - 0.5, f"{r.path}{ms}", ha="center", va="center",
                          fontsize=9)  # fmt: skip
    for k, kind in enumerate(KINDS):
        grid.text(k + 0.5, 0.1, kind, ha="center", va="bottom", fontsize=8, rotation=15)
        grid.text(-0.08, -k - 0.5, kind, ha="right", va="center", fontsize=8)
    grid.text(2, 0.75, "router-b (bob)", ha="center", fontsize=9, weight="bold")
    grid.text(-1.75, -2, "router-a (alice)", ha="center", va="center", rotation=90, fontsize=9,
              weight="bold")  # fmt: skip
    grid.set_xlim(-2.0, 4.1)
    grid.set_ylim(-4.2, 1.1)
    grid.set_aspect("equal")
    grid.axis("off")
    grid.set_title("path and ms from send to bob's screen, per pair", fontsize=10)

    # -- one message: routers, mappings, the path
    topo.axis("off")
    topo.set_xlim(0, 10)
    topo.set_ylim(0, 10)
    if follow is not None:
        r = follow

        def box(x: float, y: float, text: str, colour: str) -> None:
            topo.text(x, y, text, ha="center", va="center", fontsize=8, zorder=3,
                      bbox={"boxstyle": "round", "fc": colour})  # fmt: skip

        box(5, 9.0, "directory (and relay)\n198.51.100.10:5000", "#cfd8dc")
        box(1.9, 6.0, f"router-a\n{r.kind_a}\nRFC 5780: {r.verdict_a}", "#fff9c4")
        box(8.1, 6.0, f"router-b\n{r.kind_b}\nRFC 5780: {r.verdict_b}", "#fff9c4")
        box(1.9, 1.6, f"alice\n{r.alice_private or '?'}", "#bbdefb")
        box(8.1, 1.6, f"bob\n{r.bob_private or '?'}", "#bbdefb")
        topo.text(2.15, 3.7, f"to the directory:\n{r.alice_public or '?'}\nto bob:\n"
                  f"{r.alice_seen or '?'}", fontsize=7.5, va="center")  # fmt: skip
        topo.text(7.85, 3.7, f"to the directory:\n{r.bob_public or '?'}\nto alice:\n"
                  f"{r.bob_seen or '?'}", fontsize=7.5, va="center", ha="right")  # fmt: skip
        topo.text(5, 5.1, "mappings (private endpoint as each peer sees it)", fontsize=7.5,
                  ha="center", style="italic")  # fmt: skip
        arrow = {"arrowstyle": "-|>", "lw": 2.2, "color": "#c62828"}
        if r.path == "relay":
            topo.annotate("", (4.2, 8.6), (2.3, 6.7), arrowprops=arrow)
            topo.annotate("", (7.7, 6.7), (5.8, 8.6), arrowprops=arrow)
        elif r.path == "direct":
            topo.annotate("", (7.2, 6.0), (2.8, 6.0), arrowprops=arrow)
        if r.path != "failed":
            topo.annotate("", (1.9, 5.3), (1.9, 2.2), arrowprops=arrow)
            topo.annotate("", (8.1, 2.2), (8.1, 5.3), arrowprops=arrow)
        topo.text(5, 0.2, path_line(r), ha="center", fontsize=7, wrap=True)
        topo.set_title(
            f"one message, {r.kind_a} x {r.kind_b}: {r.path}"
            + ("" if r.ms is None else f", {r.ms:.0f} ms"),
            fontsize=10,
        )
    fig.suptitle("make nat-demo: drawn from the run (bob's line, each side's whois)", fontsize=11)
    return fig


def write(stem: Path, rows: Sequence[PairResult]) -> list[Path]:
    """``STEM.txt`` always; ``STEM.png`` and ``STEM.svg`` when matplotlib is installed."""
    follow = featured(rows)
    stem.parent.mkdir(parents=True, exist_ok=True)
    txt = stem.with_suffix(".txt")
    txt.write_text("\n".join(text_lines(rows, follow)) + "\n", encoding="utf-8")
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return [txt]
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig = draw(rows, follow)
    fig.savefig(png, dpi=100, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return [txt, png, svg]
