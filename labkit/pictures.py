"""Sequence diagrams of what happened in the lab, drawn from what was captured or recorded
(``make trace``, ``make demo``), never by hand: one lifeline per host, one arrow per datagram
labelled with its kind, size and time, the lines each client printed, and the faults.

:func:`write` makes ``STEM.png``, ``STEM.svg`` (matplotlib, the ``bench`` extra) and
``STEM.txt``, the text version the tests read. Its lines, one per event, in time order::

    # TITLE
    # host server server 172.18.0.2
    # host alice client 172.18.0.3
      +0.000s  alice  -> server  HANDSHAKE_INIT          256 B  arrived +0.001s
      +0.420s  alice  -> bob     DATA                     91 B  lost  (bytes 0-24 of 24)
      +1.000s  alice  printed    alice (172.18.0.3:40211): hi
      +2.000s  FAULT  server     server stopped (docker stop)

Rows are events, not a time scale (as Wireshark's flow graph): a burst of datagrams stays
readable; each label carries its time since the first event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROLES = ("server", "client", "router", "stun", "host")

# One colour per family of kinds (the rest grey).
_COLOURS = {
    "DATA": "#c62828",
    "ACK": "#ef6c00",
    "HANDSHAKE_INIT": "#1565c0",
    "HANDSHAKE_RESPONSE": "#1565c0",
    "COOKIE_REPLY": "#1565c0",
    "KEY_REQUEST": "#6a1b9a",
    "KEY_REPLY": "#6a1b9a",
    "LOOKUP": "#2e7d32",
    "LOOKUP_REPLY": "#2e7d32",
}


@dataclass(frozen=True, kw_only=True)
class Host:
    name: str
    role: str
    addr: str


@dataclass(frozen=True, kw_only=True)
class Datagram:
    """One datagram: from host ``src`` to host ``dst`` at ``sent`` (wall clock, s), arrived at
    ``arrived`` (None: never seen arriving), ``kind`` as its sender logged it."""

    sent: float
    arrived: float | None
    src: str
    dst: str
    kind: str
    size: int
    detail: str = ""
    """More of what its sender logged (a DATA chunk: which bytes of the message)."""


@dataclass(frozen=True, kw_only=True)
class Note:
    """A line ``host`` printed (or, ``what="typed"``, a line typed into it) at ``t``."""

    t: float
    host: str
    text: str
    what: str = "printed"


@dataclass(frozen=True, kw_only=True)
class Fault:
    """A fault done to ``host`` at ``t`` (server stopped, client killed, ...)."""

    t: float
    host: str
    text: str


Event = Datagram | Note | Fault


def _time(e: Event) -> float:
    return e.sent if isinstance(e, Datagram) else e.t


def ordered(events: Sequence[Event]) -> list[Event]:
    return sorted(events, key=_time)


def text_lines(title: str, hosts: Sequence[Host], events: Sequence[Event]) -> list[str]:
    """The text version (module docstring)."""
    lines = [f"# {title}"] + [f"# host {h.name} {h.role} {h.addr}" for h in hosts]
    evs = ordered(events)
    t0 = _time(evs[0]) if evs else 0.0
    for e in evs:
        at = f"{_time(e) - t0:+8.3f}s"
        if isinstance(e, Datagram):
            fate = "lost" if e.arrived is None else f"arrived {e.arrived - t0:+.3f}s"
            detail = f"  ({e.detail})" if e.detail else ""
            lines.append(
                f"{at}  {e.src:<6} -> {e.dst:<7} {e.kind:<20} {e.size:5d} B  {fate}{detail}"
            )
        elif isinstance(e, Note):
            lines.append(f"{at}  {e.host:<6} {e.what:<10} {e.text}")
        else:
            lines.append(f"{at}  FAULT  {e.host:<10} {e.text}")
    return lines


def write(
    stem: Path, title: str, hosts: Sequence[Host], events: Sequence[Event], *, footer: str = ""
) -> list[Path]:
    """``STEM.txt``, ``STEM.png`` and ``STEM.svg``; the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    txt = stem.with_suffix(".txt")
    lines = text_lines(title, hosts, events)
    if footer:
        lines += [f"# {line}" for line in footer.splitlines()]
    txt.write_text("\n".join(lines) + "\n", encoding="utf-8")
    figure = draw(title, hosts, events, footer=footer)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    # No date in the SVG's metadata: the same run draws the same file.
    figure.savefig(png, dpi=110, bbox_inches="tight", metadata={"Software": None})
    figure.savefig(svg, bbox_inches="tight", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(figure)
    return [txt, png, svg]


def draw(title: str, hosts: Sequence[Host], events: Sequence[Event], *, footer: str = ""):  # type: ignore[no-untyped-def]
    """The matplotlib figure (Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evs = ordered(events)
    t0 = _time(evs[0]) if evs else 0.0
    x = {h.name: i * 3.2 for i, h in enumerate(hosts)}
    rows = max(len(evs), 1)
    width = max(3.2 * len(hosts) + 2.5, 8.0)
    fig, ax = plt.subplots(figsize=(width, 1.2 + 0.32 * rows))
    top, bottom = 0.0, -(rows + 0.5)
    for h in hosts:
        data_free = h.role == "server"
        ax.plot(
            [x[h.name], x[h.name]], [top, bottom],
            color="#2e7d32" if data_free else "#555555", lw=3 if data_free else 1.5, zorder=1,
        )  # fmt: skip
        ax.text(
            x[h.name], 0.6, f"{h.name}\n{h.role} {h.addr}",
            ha="center", va="bottom", fontsize=9, fontweight="bold",
            bbox={"boxstyle": "round", "fc": "#e3f2fd" if h.role == "client" else "#f1f8e9"},
        )  # fmt: skip
    for row, e in enumerate(evs, start=1):
        y = -row
        when = f"+{_time(e) - t0:.3f}s"
        if isinstance(e, Datagram):
            if e.src not in x or e.dst not in x:
                continue
            colour = _COLOURS.get(e.kind, "#616161")
            style = "-" if e.arrived is not None else "--"
            ax.annotate(
                "", xy=(x[e.dst], y), xytext=(x[e.src], y),
                arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.6, "ls": style},
                zorder=3,
            )  # fmt: skip
            label = f"{e.kind} {e.size} B {when}" + ("" if e.arrived is not None else " lost")
            label += f" ({e.detail})" if e.detail else ""
            ax.text(
                (x[e.src] + x[e.dst]) / 2, y + 0.08, label,
                ha="center", va="bottom", fontsize=7, color=colour, zorder=4,
                bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none"},
            )  # fmt: skip
        elif isinstance(e, Note):
            ax.text(
                x.get(e.host, 0.0) + 0.1, y, f"{when} {e.what}: {e.text[:60]}",
                ha="left", va="center", fontsize=7, style="italic",
                bbox={"boxstyle": "square", "ec": "#fbc02d",
                      "fc": "#fffde7" if e.what == "printed" else "#e8eaf6"}, zorder=4,
            )  # fmt: skip
        else:
            ax.axhline(y, color="#b71c1c", lw=1, ls=":", zorder=2)
            ax.plot([x.get(e.host, 0.0)], [y], marker="X", ms=14, color="#b71c1c", zorder=5)
            ax.text(
                x.get(e.host, 0.0) + 0.25, y + 0.1, f"FAULT {when}: {e.text}",
                ha="left", va="bottom", fontsize=8, color="#b71c1c", fontweight="bold", zorder=5,
            )  # fmt: skip
    for h in hosts:
        if h.role == "server":
            touched = sum(
                1 for e in evs if isinstance(e, Datagram) and e.kind == "DATA"
                and h.name in (e.src, e.dst)
            )  # fmt: skip
            ax.text(
                x[h.name], bottom - 0.1, f"DATA datagrams here: {touched}",
                ha="center", va="top", fontsize=8, fontweight="bold",
                color="#2e7d32" if touched == 0 else "#b71c1c",
            )  # fmt: skip
    ax.set_xlim(-1.5, max(x.values(), default=0.0) + 2.5)
    ax.set_ylim(bottom - (1.2 if footer else 0.8), 2.0)
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    if footer:
        ax.text(-1.4, bottom - 0.7, footer, ha="left", va="top", fontsize=8)
    return fig
