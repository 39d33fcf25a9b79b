"""The Markdown table and the PNG plots of a benchmark summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import goals
from bench.against import ISSUE_13_START as START
from bench.against import PRE_ENCRYPTION as PRE
from chat_protocol.const import DEFAULT_TIMINGS

FULL_USERS = 100_000


def _num(v: float | None, unit: str = "", digits: int = 0) -> str:
    if v is None:
        return "n/a"
    text = f"{v:,.{digits}f}"
    return f"{text} {unit}".strip()


def _ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}×"


def _ns(s: dict[str, Any], key: str, unit: str = "", digits: int = 0) -> str:
    """The figure ``key`` as :func:`_num` shows it, with the min-max of its repetitions."""
    return _num(s.get(key), unit, digits) + _spread(s, key, f",.{digits}f")


def _rs(s: dict[str, Any], key: str) -> str:
    """The ratio ``key`` of the summary, with the min-max of its repetitions (issue 24: every
    figure with its spread)."""
    return _ratio(s.get(key)) + _spread(s, key, ".2f")


def _spread(s: dict[str, Any], key: str, fmt: str) -> str:
    """' (min–max)' of the figure ``key``'s repetitions, when it has a value and more than one;
    else nothing."""
    sp = s.get("spread", {}).get(key)
    if s.get(key) is None or not sp or sp.get("n", 0) <= 1:
        return ""
    return f" ({sp['min']:{fmt}}–{sp['max']:{fmt}})"


def _met(goals: dict[str, bool | None], key: str) -> str:
    v = goals.get(key)
    return "n/a" if v is None else ("**yes**" if v else "**no**")


def _goal(goals_met: dict[str, bool | None], name: str) -> tuple[str, str]:
    """The Goal and Met columns of the goal ``name`` (bench/goals.py)."""
    return goals.text(name), _met(goals_met, name)


def _row(
    goal_no: str,
    measure: str,
    ours: str,
    baseline: str = "",
    ratio: str = "",
    goal: str = "",
    met: str = "",
) -> tuple[str, str, str, str, str, str, str]:
    """A line of the table; the columns a line leaves out are blank."""
    return (goal_no, measure, ours, baseline, ratio, goal, met)


def table(s: dict[str, Any]) -> str:
    g = s.get("goals", {})
    env = s.get("environment", {})
    loop = s.get("loop", "?")
    t = DEFAULT_TIMINGS
    users = s.get("users_count")
    users_txt = _count(users)
    projected = users is not None and users < FULL_USERS
    hb_rate = s.get("heartbeats_per_s")
    rows = [
        _row(
            "1",
            f"Directory lookups/s, peak ({loop})",
            _num(s.get("lookup_per_s"), "/s"),
            f"echo {_num(s.get('echo_ceiling_per_s'), '/s')}",
            _rs(s, "lookup_vs_echo"),
        ),
        _row(
            "1",
            "… per second of server CPU",
            _num(s.get("lookup_per_cpu_s"), "/s"),
            f"echo {_num(s.get('echo_per_cpu_s'), '/s')}",
            _rs(s, "lookup_vs_echo_per_cpu"),
        ),
        _row(
            "1",
            "… ceiling: echo + the server's decrypt and encrypt alone / + all of ServerCore "
            "(nothing else costs)",
            f"{_num(s.get('crypto_server_lookup_us'), 'µs', 1)} / "
            f"{_num(s.get('core_lookup_us'), 'µs', 1)} per lookup",
            f"echo {_num(_per(s.get('echo_per_cpu_s')), 'µs', 1)} per reply",
            f"{_ratio(s.get('lookup_ceiling_crypto'))} / {_ratio(s.get('lookup_ceiling_core'))}",
        ),
        _row(
            "24",
            "… lookups per CPU second against that encrypted ceiling (issue 24)",
            _rs(s, "lookup_vs_echo_per_cpu"),
            f"ceiling {_ratio(s.get('lookup_ceiling_crypto'))}",
            _rs(s, "lookup_vs_ceiling"),
            *_goal(g, "lookups_per_cpu_ge_0.8x_ceiling"),
        ),
        _row(
            "1",
            "… CPU shares at the peaks: server / load generator (1 = a core)",
            f"{_num(s.get('lookup_server_cpu_share'), '', 2)} / "
            f"{_num(s.get('lookup_loadgen_cpu_share'), '', 2)}",
            f"echo {_num(s.get('echo_server_cpu_share'), '', 2)} / "
            f"{_num(s.get('echo_loadgen_cpu_share'), '', 2)}",
        ),
    ]
    if s.get("lookup_per_s_asyncio") is not None:
        rows.append(
            _row(
                "1",
                "Directory lookups/s, peak (asyncio)",
                _num(s.get("lookup_per_s_asyncio"), "/s"),
                f"echo {_num(s.get('echo_ceiling_per_s_asyncio'), '/s')}",
                _rs(s, "lookup_vs_echo_asyncio"),
            )
        )
    rows += [
        _row(
            "2",
            "Direct message round trip p50 (DATA → ACK)",
            _ns(s, "p2p_rtt_p50_us", "µs"),
            f"raw UDP {_num(s.get('raw_udp_rtt_p50_us'), 'µs')}",
            _rs(s, "p2p_vs_raw"),
        ),
        _row(
            "2",
            "… of which the secure layer: encrypt + decrypt of the DATA and its ACK (no I/O)",
            _num(s.get("crypto_us_per_message"), "µs", 1),
            "",
            _share(s.get("crypto_us_per_message"), s.get("p2p_rtt_p50_us")),
        ),
        _row(
            "2",
            "Direct message round trip p99",
            _ns(s, "p2p_rtt_p99_us", "µs"),
            f"raw UDP {_num(s.get('raw_udp_rtt_p99_us'), 'µs')}",
            _rs(s, "p2p_p99_vs_raw"),
        ),
        _row(
            "2",
            "… a whole send to a live session (LOOKUP cached under the liveness bound), p50",
            _num(s.get("send_rtt_p50_us"), "µs"),
            f"raw UDP {_num(s.get('raw_udp_rtt_p50_us'), 'µs')}",
            _rs(s, "send_vs_raw"),
        ),
        _row(
            "2",
            "… the three cores' Python work alone, encryption included (no I/O)",
            _num(s.get("core_message_us"), "µs"),
            f"raw UDP {_num(s.get('raw_udp_rtt_p50_us'), 'µs')}",
            f"{_ratio(s.get('core_vs_raw'))} "
            f"({_share(s.get('crypto_send_us'), s.get('core_message_us'), 'crypto')})",
            *_goal(g, "core_message_le_0.75x_raw_udp"),
        ),
        _row(
            "2",
            f"… the cores' work vs the start of issue 13 ({START}), both in this run",
            _num(s.get("core_message_us_beside_it"), "µs"),
            f"{START} {_num(s.get('core_message_us_issue_start'), 'µs')}",
            f"{_num(s.get('core_speedup_vs_issue_start'), '', 2)}× faster",
            *_goal(g, "core_message_2x_faster_than_issue_start"),
        ),
        _row(
            "2",
            f"… DATA → ACK / raw UDP, vs before encryption ({PRE}), both in this run",
            _rs(s, "p2p_vs_raw_beside_it"),
            f"{PRE} {_ratio(s.get('p2p_vs_raw_before_encryption'))}",
            _signed(s.get("encryption_adds_to_p2p_vs_raw")),
            *_goal(g, "encryption_adds_le_0.3_to_p2p_vs_raw"),
        ),
        _row(
            "2",
            "Direct message round trip p50 vs ENet",
            _ns(s, "p2p_rtt_p50_us", "µs"),
            f"ENet {_ns(s, 'enet_rtt_p50_us', 'µs')}",
            _rs(s, "p2p_vs_enet"),
            *_goal(g, "p2p_p50_le_2x_enet"),
        ),
        _row(
            "24",
            "… the encrypted Python floor: a sealed ping-pong, no protocol (bench.floor), p50",
            _ns(s, "floor_rtt_p50_us", "µs"),
            f"ENet {_ns(s, 'enet_rtt_p50_us', 'µs')}",
            f"{_rs(s, 'floor_rtt_vs_enet')}; ours {_rs(s, 'p2p_vs_floor')} of it",
        ),
        _row(
            "24",
            "Direct message round trip p99 vs ENet",
            _ns(s, "p2p_rtt_p99_us", "µs"),
            f"ENet {_ns(s, 'enet_rtt_p99_us', 'µs')}",
            _rs(s, "p2p_p99_vs_enet"),
            *_goal(g, "p2p_p99_le_2x_enet"),
        ),
        _row(
            "24",
            "A first send (LOOKUP + handshake + the receiver's name check + DATA → ACK), p50",
            _ns(s, "first_send_p50_us", "µs"),
            f"ENet {_ns(s, 'enet_rtt_p50_us', 'µs')}",
            _rs(s, "first_send_vs_enet"),
            *_goal(g, "first_send_le_5x_enet"),
        ),
        _row(
            "24",
            "… its floor: the Noise IK handshake's work alone, both sides, no I/O",
            _num(s.get("core_handshake_us"), "µs"),
            f"ENet {_ns(s, 'enet_rtt_p50_us', 'µs')}",
            _rs(s, "first_send_ceiling_vs_enet"),
        ),
        _row(
            "3",
            "1 MiB message, 0 % loss",
            _ns(s, "bulk_1mib_ms", "ms", 1),
            f"ENet {_ns(s, 'enet_bulk_1mib_ms', 'ms', 1)}",
            _rs(s, "bulk_vs_enet"),
            *_goal(g, "bulk_le_2x_enet"),
        ),
        _row(
            "3",
            "… the cores' Python work alone (no I/O)",
            _num(s.get("core_bulk_1mib_ms"), "ms", 1),
        ),
        _row(
            "24",
            "… the encrypted Python floor: the same datagrams sealed, sent and acknowledged "
            "by the chat's window and ACK policy, no protocol (bench.floor)",
            _ns(s, "floor_bulk_1mib_ms", "ms", 1),
            f"ENet {_ns(s, 'enet_bulk_1mib_ms', 'ms', 1)}",
            f"{_rs(s, 'floor_bulk_vs_enet')}; ours {_rs(s, 'bulk_vs_floor')} of it",
        ),
        _row(
            "3",
            "1 MiB message, 10 % loss",
            _ns(s, "bulk_1mib_loss10_ms", "ms", 1),
            f"ENet {_ns(s, 'enet_bulk_1mib_loss10_ms', 'ms', 1)}",
            _rs(s, "bulk_loss10_vs_enet"),
            *_goal(g, "bulk_loss10_le_1x_enet"),
        ),
        *[
            _row(
                "24",
                f"1 MiB message, {pct} % loss",
                _ns(s, f"bulk_1mib_loss{pct}_ms", "ms", 1),
                f"ENet {_ns(s, f'enet_bulk_1mib_loss{pct}_ms', 'ms', 1)}",
                _rs(s, f"bulk_loss{pct}_vs_enet"),
                *_goal(g, f"bulk_loss{pct}_le_1x_enet"),
            )
            for pct in (1, 5, 20)
        ],
        _row(
            "24",
            "8 MiB alone through a 20 Mbit/s tbf bottleneck: goodput / link rate",
            _ns(s, "bottleneck_goodput_ratio", "", 2),
            "link rate",
            "",
            *_goal(g, "bottleneck_goodput_ge_0.8"),
        ),
        _row(
            "24",
            "… of its DATA datagrams, retransmitted",
            _ns(s, "bottleneck_retransmit_share", "", 3),
            "",
            "",
            *_goal(g, "bottleneck_retransmit_le_0.02"),
        ),
        _row(
            "24",
            "… two senders through it at once: Jain's fairness index",
            _ns(s, "bottleneck_jain", "", 2),
            "",
            "",
            *_goal(g, "bottleneck_jain_ge_0.9"),
        ),
        _row(
            "24",
            "… a TCP transfer beside one message: TCP's share of the link",
            _ns(s, "bottleneck_tcp_share", "", 2),
            "",
            "",
            *_goal(g, "bottleneck_tcp_share_ge_0.4"),
        ),
        _row(
            "4",
            f"100k users: server RSS{f' (projected from {users_txt})' if projected else ''}",
            _num(s.get("users_100k_rss_mb"), "MB"),
            f"idle server {_num(s.get('users_idle_rss_mb'), 'MB')}",
            f"{_num(s.get('users_bytes_per_user'), 'B')}/user",
            *_goal(g, "users_100k_rss_le_150mb"),
        ),
    ]
    if projected:
        rows.append(
            _row("4", f"… measured with {users_txt} users", _num(s.get("users_rss_mb"), "MB"))
        )
    rows += [
        _row(
            "4",
            f"{users_txt} users: heartbeat CPU ({_num(hb_rate, '/s')}, every "
            f"{_num(s.get('heartbeat_interval_s'), 's', 2)})",
            f"{_num(s.get('users_100k_hb_cpu_pct'), '%')} of a core",
            f"echo, same rate {_num(s.get('users_100k_echo_cpu_pct'), '%')}",
            _rs(s, "hb_vs_echo_cpu"),
        ),
        _row(
            "4",
            "… server CPU per heartbeat: all / ServerCore alone",
            f"{_num(s.get('heartbeat_cpu_us'), 'µs', 1)} / "
            f"{_num(s.get('core_heartbeat_us'), 'µs', 1)}",
        ),
        _row(
            "4",
            "… ceiling: echo + the server's decrypt and encrypt alone / + all of ServerCore "
            "(nothing else costs)",
            f"{_num(s.get('crypto_server_heartbeat_us'), 'µs', 1)} / "
            f"{_num(s.get('core_heartbeat_us'), 'µs', 1)} per heartbeat",
            "",
            f"{_ratio(s.get('hb_ceiling_crypto'))} / {_ratio(s.get('hb_ceiling_core'))}",
        ),
        _row(
            "24",
            "… heartbeat CPU against that encrypted ceiling (issue 24)",
            _rs(s, "hb_vs_echo_cpu"),
            f"ceiling {_ratio(s.get('hb_ceiling_crypto'))}",
            _rs(s, "hb_vs_ceiling"),
            *_goal(g, "heartbeat_cpu_le_1.25x_ceiling"),
        ),
        _row(
            "4",
            f"… signing the {users_txt} users in first (a handshake each)",
            _num(s.get("users_sign_in_s"), "s", 1),
            f"ServerCore {_num(s.get('core_sign_in_us'), 'µs')} per sign-in",
        ),
        _row(
            "5",
            "kill -9 client → gone from directory",
            _num(s.get("client_crash_detect_s"), "s", 2),
            f"client timeout {t.client_timeout_s:g} s",
        ),
        _row(
            "5",
            "kill -9 server → clients exit",
            _num(s.get("server_crash_detect_s"), "s", 2),
            f"server timeout {t.server_timeout_s:g} s",
        ),
    ]
    out = [
        f"## Benchmarks ({s.get('mode')}, {loop}, {env.get('cpus', '?')} CPUs, "
        f"Python {env.get('python', '?')}, commit {env.get('commit', '?')}, {env.get('date', '')})",
        "",
        "| # | Measure | Ours | Baseline | Ratio | Goal | Met |",
        "| --- | --- | ---: | --- | ---: | --- | --- |",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    unavailable = s.get("unavailable") or {}
    if unavailable:
        out += ["", "Not measured:"]
        out += [f"- `{k}`: {v}" for k, v in sorted(unavailable.items())]
    if s.get("errors"):
        out += ["", "Errors:"] + [f"- {e}" for e in s["errors"]]
    out += [
        "",
        "Ratios compare figures taken in the same run; absolute numbers move from run to run. "
        "Notes on each figure: summary.json, `notes`.",
        "",
    ]
    return "\n".join(out)


def _per(per_s: float | None) -> float | None:
    """Microseconds each, of a rate per second."""
    return None if not per_s else 1e6 / per_s


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


def _count(n: float | None) -> str:
    """30000 -> '30k'."""
    if not n:
        return "?"
    return f"{n / 1000:.0f}k" if n >= 1000 else f"{n:.0f}"


def _share(part: float | None, whole: float | None, what: str = "") -> str:
    """'12 % of it' (of the row's figure)."""
    if part is None or not whole:
        return ""
    return f"{what} {100 * part / whole:.0f} %".strip()


def plots(s: dict[str, Any], samples: dict[str, list[float]], out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made: list[Path] = []
    label = {
        "ours": "ours: direct DATA → ACK",
        "ours_send": "ours: whole send (with LOOKUP)",
        "raw_udp": "raw UDP ping-pong (blocking)",
        "enet": "ENet reliable ping-pong",
    }
    if samples:
        fig, ax = plt.subplots(figsize=(8, 4.8))
        for key in ("ours", "ours_send", "raw_udp", "enet"):
            xs = sorted(samples.get(key) or [])
            if not xs:
                continue
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", label=f"{label[key]} (p50 {xs[len(xs) // 2]:.0f} µs)")
        ax.set_xscale("log")
        ax.set_xlabel("round trip (µs, log scale)")
        ax.set_ylabel("fraction of messages ≤ x")
        ax.set_title(f"Reliable message round trip on loopback ({s.get('loop')})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = out / "rtt_distribution.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    curves = (s.get("details") or {}).get("lookup_curves") or {}
    if curves:
        fig, ax = plt.subplots(figsize=(8, 4.8))
        styles = {"uvloop": "-", "asyncio": "--"}
        for loop, curve in curves.items():
            for mode, color, name in (
                ("echo", "tab:gray", "echo ceiling"),
                ("lookup", "tab:blue", "chat-server lookups"),
            ):
                pts = curve.get(mode) or []
                if not pts:
                    continue
                xs = [p["clients"] for p in pts]
                ys = [p["per_s"] for p in pts]
                err = [
                    [y - p["min"] for y, p in zip(ys, pts, strict=True)],
                    [p["max"] - y for y, p in zip(ys, pts, strict=True)],
                ]
                ax.errorbar(
                    xs,
                    ys,
                    yerr=err,
                    fmt=styles.get(loop, "-") + "o",
                    color=color,
                    capsize=3,
                    label=f"{name} ({loop})",
                )
        ax.set_xscale("log", base=2)
        ticks = sorted({p["clients"] for c in curves.values() for m in c.values() for p in m})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("concurrent clients (each with a fixed number of LOOKUPs outstanding)")
        ax.set_ylabel("replies per second")
        ax.set_ylim(bottom=0)
        ax.set_title("Directory lookups vs the echo ceiling (median, min-max of repetitions)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / "lookup_throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    made.extend(_loss_curve(s, out, plt))
    return made


def _loss_curve(s: dict[str, Any], out: Path, plt: Any) -> list[Path]:
    """1 MiB's time against random loss, ours and ENet's (median, min-max): loss_curve.png."""
    spread = s.get("spread") or {}
    levels = [0, 1, 5, 10, 20]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    drawn = False
    for who, stem, color in (
        ("ours", "bulk_1mib", "tab:blue"),
        ("ENet", "enet_bulk_1mib", "tab:gray"),
    ):
        pts = []
        for pct in levels:
            key = f"{stem}_ms" if pct == 0 else f"{stem}_loss{pct}_ms"
            sp = spread.get(key)
            if s.get(key) is not None and sp:
                pts.append((pct, sp["median"], sp["min"], sp["max"]))
        if not pts:
            continue
        drawn = True
        ax.errorbar(
            [p[0] for p in pts],
            [p[1] for p in pts],
            yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
            fmt="-o",
            color=color,
            capsize=3,
            label=who,
        )
    if not drawn:
        plt.close(fig)
        return []
    ax.set_yscale("log")
    ax.set_xlabel("random loss of every UDP datagram (%)")
    ax.set_ylabel("1 MiB send -> delivered (ms, log scale)")
    ax.set_title("One 1 MiB message against loss (median, min-max of repetitions)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "loss_curve.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


README_BEGIN = "<!-- bench table: bench/results/summary.md; paste with python -m bench.report -->"
README_END = "<!-- end of bench table -->"


def readme_with_table(readme: str, table_md: str) -> str:
    """``readme`` with the text between its two bench-table markers replaced by ``table_md``
    (the README shows the committed bench/results/summary.md, never a hand-edited copy)."""
    head, sep, rest = readme.partition(README_BEGIN)
    _, sep2, tail = rest.partition(README_END)
    if not sep or not sep2:
        raise ValueError("README.md has no bench-table markers")
    return f"{head}{README_BEGIN}\n{as_readme_section(table_md)}\n{README_END}{tail}"


def as_readme_section(table_md: str) -> str:
    """summary.md as the README shows it: its heading one level down (a subsection)."""
    text = table_md.strip()
    return "#" + text if text.startswith("## ") else text


def readme_table(readme: str) -> str:
    """The table the README shows between its markers."""
    return readme.partition(README_BEGIN)[2].partition(README_END)[0].strip()


def main() -> int:
    """Render bench/results/summary.md again from summary.json (this code's table, the run's
    figures) and paste it into README.md."""
    import json

    root = Path(__file__).resolve().parent.parent
    results = root / "bench" / "results"
    table_md = table(json.loads((results / "summary.json").read_text()))
    (results / "summary.md").write_text(table_md)
    readme = root / "README.md"
    readme.write_text(readme_with_table(readme.read_text(), table_md))
    print(f"bench.report: rendered {results / 'summary.md'} and pasted it into {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
