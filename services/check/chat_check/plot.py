"""A timeline of a run, as a PNG: delivery and latency over wall time, faults shaded.

Two panels share the x axis (seconds since the run's first send, by the ``wall`` clocks):

* top: per time bin, the messages sent (bars, left axis) and, of those, the fraction shown to
  their receiver and the fraction reported not delivered (lines, right axis);
* bottom: the latency send → first shown of every shown message (dots, log scale) and the
  per-bin median (line).

Fault intervals come from a ``faults.json`` (docs/HISTORY.md): a JSON list of objects
``{"start": wall, "end": wall, "kind": str, "target": str}``; each is shaded on both panels and
labelled ``kind target``. matplotlib (the ``bench`` extra) is imported only when a plot is drawn.

The PNG says what it shaded: a text chunk :data:`SHADED_KEY` holds a JSON list of
``{"kind", "target", "x0", "x1", "as"}`` (seconds on the x axis; ``as``: ``span`` or ``line``),
one per fault drawn, which :func:`read_shaded` reads back (the chaos tests do).
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from chat_check.checker import Checker, open_regular

Timeline = Iterable[tuple[float, str, float | None, float | None]]
"""What :meth:`chat_check.checker.Checker.timeline` yields: (send wall, outcome, outcome wall,
latency)."""


SHADED_KEY = "chat-check faults"
"""The PNG text chunk listing the faults the plot shaded."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Fault:
    start: float
    end: float
    kind: str
    target: str


class FaultsError(ValueError):
    """A faults file that is not a list of fault objects."""


def parse_faults(data: object) -> list[Fault]:
    if not isinstance(data, list):
        raise FaultsError("faults: expected a JSON list of objects")
    out: list[Fault] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise FaultsError(f"faults[{i}]: not an object")
        start, end = item.get("start"), item.get("end")
        kind, target = item.get("kind"), item.get("target", "")
        if not _number(start) or not _number(end):
            raise FaultsError(f"faults[{i}]: 'start' and 'end' must be numbers (wall clock)")
        assert isinstance(start, int | float) and isinstance(end, int | float)
        if end < start:
            raise FaultsError(f"faults[{i}]: 'end' is before 'start'")
        if not isinstance(kind, str) or not kind or not isinstance(target, str):
            raise FaultsError(f"faults[{i}]: 'kind' must be a non-empty string, 'target' a string")
        out.append(Fault(start=float(start), end=float(end), kind=kind, target=target))
    return out


def _number(x: object) -> bool:
    return type(x) in (int, float) and math.isfinite(x)  # type: ignore[arg-type]


def load_faults(path: str | os.PathLike[str]) -> list[Fault]:
    """Read a faults.json (``OSError``, :class:`FaultsError`; :class:`NotAHistory` if it is not a
    regular file)."""
    with open_regular(path) as f:
        try:
            data = json.load(f)
        except (ValueError, RecursionError) as e:
            raise FaultsError(f"{os.fspath(path)}: not JSON: {e}") from None
    return parse_faults(data)


def _bin_width(span: float) -> float:
    """A round bin width giving about 60 bins over ``span`` seconds."""
    raw = max(span / 60, 1e-3)
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag  # pragma: no cover


def plot_timeline(
    timeline: Timeline,
    out: str | os.PathLike[str],
    *,
    faults: Sequence[Fault] = (),
    title: str = "chat run",
) -> None:
    """Draw the PNG. ``ImportError`` if matplotlib is not installed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(timeline, key=lambda r: r[0])
    t0 = rows[0][0] if rows else (faults[0].start if faults else 0.0)
    span = max([r[0] - t0 for r in rows] + [f.end - t0 for f in faults] + [1e-3])
    width = _bin_width(span)
    nbins = int(span / width) + 1
    sent = [0] * nbins
    shown = [0] * nbins
    failed = [0] * nbins
    lat_bins: list[list[float]] = [[] for _ in range(nbins)]
    xs: list[float] = []
    ys: list[float] = []
    for wall, outcome, _outcome_wall, latency in rows:
        b = min(nbins - 1, int((wall - t0) / width))
        sent[b] += 1
        if outcome == "not_delivered":
            failed[b] += 1
        if latency is not None:
            shown[b] += 1
            lat = max(latency, 1e-6)
            lat_bins[b].append(lat)
            xs.append(wall - t0)
            ys.append(lat)
    centers = [(i + 0.5) * width for i in range(nbins)]

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 7), layout="constrained")
    top.bar(centers, sent, width=width * 0.9, color="#c8d4e3", label="sent")
    top.set_ylabel(f"messages sent per {width:g} s")
    rate = top.twinx()
    with_sends = [i for i in range(nbins) if sent[i]]
    rate.plot([centers[i] for i in with_sends], [shown[i] / sent[i] for i in with_sends],
              color="#1b7837", marker=".", label="shown")  # fmt: skip
    rate.plot([centers[i] for i in with_sends], [failed[i] / sent[i] for i in with_sends],
              color="#b2182b", marker=".", label="not delivered")  # fmt: skip
    rate.set_ylim(-0.02, 1.02)
    rate.set_ylabel("fraction of the bin's sends")
    handles = top.get_legend_handles_labels()
    more = rate.get_legend_handles_labels()
    top.legend(handles[0] + more[0], handles[1] + more[1], loc="lower left", fontsize="small")
    top.set_title(title)

    if ys:
        bottom.scatter(xs, ys, s=4, alpha=0.4, color="#2166ac", label="send → shown")
        med = [(centers[i], sorted(v)[len(v) // 2]) for i, v in enumerate(lat_bins) if v]
        bottom.plot([m[0] for m in med], [m[1] for m in med], color="black", label="median")
        bottom.set_yscale("log")
        bottom.legend(loc="upper left", fontsize="small")
    bottom.set_ylabel("latency (s, wall clocks)")
    bottom.set_xlabel("seconds since the first send")

    colors = ("#fdae61", "#abd9e9", "#d9ef8b", "#f4a582", "#cab2d6")
    kinds: dict[str, str] = {}
    shaded: list[dict[str, object]] = []
    for f in faults:
        color = kinds.setdefault(f.kind, colors[len(kinds) % len(colors)])
        line = f.end - f.start < width / 10  # an instant (a kill): a line
        for ax in (top, bottom):
            if line:
                ax.axvline(f.start - t0, color=color, lw=2)
            else:
                ax.axvspan(f.start - t0, f.end - t0, color=color, alpha=0.35, lw=0)
        top.annotate(f"{f.kind} {f.target}".strip(), xy=(f.start - t0, 1.0),
                     xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                     fontsize="x-small")  # fmt: skip
        shaded.append({"kind": f.kind, "target": f.target, "x0": round(f.start - t0, 3),
                       "x1": round(f.end - t0, 3), "as": "line" if line else "span"})  # fmt: skip
    fig.savefig(os.fspath(out), dpi=110, metadata={SHADED_KEY: json.dumps(shaded)})
    plt.close(fig)


def read_shaded(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The faults a PNG drawn by :func:`plot_timeline` shaded (its :data:`SHADED_KEY` text
    chunk); ``ValueError`` if it has none."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{os.fspath(path)}: not a PNG")
    i = 8
    while i + 8 <= len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind, body = data[i + 4 : i + 8], data[i + 8 : i + 8 + length]
        i += 12 + length
        if kind == b"tEXt":
            key, _, text = body.partition(b"\0")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            text = zlib.decompress(rest[1:])
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _tkey, _, text = rest.partition(b"\0")
            text = zlib.decompress(text) if compressed else text
        else:
            continue
        if key.decode("latin-1") == SHADED_KEY:
            loaded = json.loads(text.decode("utf-8" if kind == b"iTXt" else "latin-1"))
            if not isinstance(loaded, list):
                raise ValueError(f"{os.fspath(path)}: {SHADED_KEY!r} is not a list")
            return loaded
    raise ValueError(f"{os.fspath(path)}: no {SHADED_KEY!r} text chunk")


def plot_checker(
    checker: Checker,
    out: str | os.PathLike[str],
    *,
    faults: Sequence[Fault] = (),
    title: str = "chat run",
) -> None:
    """The timeline of a checker that has made its report."""
    plot_timeline(checker.timeline(), out, faults=faults, title=title)
