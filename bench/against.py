"""An earlier commit's figures beside this checkout's, taken in the same run.

Absolute timings move by 2x between runs on this machine, so "no worse than before" and "twice as
fast as at the start" can only be judged within one run. Each function here checks the earlier
commit out in a temporary git worktree (removed afterwards), runs that commit's own benchmark
program from it (its own core, its own harness, as its ``make bench`` ran them) interleaved with
this checkout's, and gives both figures of every repetition:

* :func:`p2p`: the direct DATA -> ACK round trip (``bench.p2p``, p50) of both, each divided by
  the raw UDP ping-pong (``bench.baselines udp``) of the same repetition. Issue 10: encryption
  adds at most 0.3 to that ratio (against :data:`PRE_ENCRYPTION`).
* :func:`core`: the cores' work per message (``bench.corecost``, ``core_message_us``) of both.
  Issue 13: at least 2x faster than at its start (:data:`ISSUE_13_START`). Also the server's
  work per lookup, per sign-in and per heartbeat of both (:data:`CORE_FIGURES`; issues 18 and
  19: no worse than noise), each with min / median / max and the ratio now / before.

``python -m bench.against p2p|core REV [--reps N]`` prints one JSON object. An earlier tree runs
on its pure-Python core (before 2026-12 there was no compiled one); this checkout's figures use
whatever core the environment gives (``make bench``: the compiled one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import procs

PRE_ENCRYPTION = "2f89edd"
"""The last commit before secure sessions were wired in (f8f4bb4): the chat in clear."""
ISSUE_13_START = "82e0820"
"""The commit the issue "Close to the wire" was measured at."""


def unavailable(rev: str) -> str | None:
    """Why ``rev`` cannot be checked out here (no git, a shallow clone), or None."""
    try:
        r = subprocess.run(
            ["git", "-C", str(procs.ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"git is not usable here ({exc})"
    if r.returncode != 0:
        return f"commit {rev} is not in this clone (a shallow clone? git fetch --unshallow)"
    return None


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """``rev`` checked out (detached) in a temporary directory, removed on exit."""
    why = unavailable(rev)
    if why is not None:
        raise RuntimeError(why)
    tmp = Path(tempfile.mkdtemp(prefix="bench-against-"))
    tree = tmp / rev
    git = ["git", "-C", str(procs.ROOT)]
    subprocess.run(
        [*git, "worktree", "add", "--detach", "--quiet", str(tree), rev],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield tree
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([*git, "worktree", "prune"], capture_output=True)


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that runs ``tree``'s code: its checkout and its services first on the
    path, and no compiled core of this checkout (CHAT_CORE_DIR)."""
    env = procs.loop_env("uvloop")
    env.pop("CHAT_CORE_DIR", None)
    services = sorted(p for p in (tree / "services").iterdir() if p.is_dir())
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *map(str, services)])
    probe = subprocess.run(
        [procs.PY, "-c", "import chat_protocol; print(chat_protocol.__file__)"],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=60,
    )
    where = probe.stdout.strip()
    if probe.returncode != 0 or not where.startswith(str(tree)):
        raise RuntimeError(f"the worktree's core is not the one imported ({where or probe.stderr})")
    return env


def _p50(xs: list[float]) -> float:
    return float(statistics.median(xs))


def p2p(rev: str, *, reps: int, pings: int, warmup: int = 200) -> dict[str, Any]:
    """Per repetition: raw UDP p50, ``rev``'s and this checkout's DATA -> ACK p50 (µs)."""
    opts = ["--pings", str(pings), "--warmup", str(warmup)]
    p2p_args = [procs.PY, "-m", "bench.p2p", *opts, "--bulk-reps", "0"]
    raw: list[float] = []
    before: list[float] = []
    now: list[float] = []
    with worktree(rev) as tree:
        env = tree_env(tree)
        for _ in range(reps):
            r = procs.run_json(
                [procs.PY, "-m", "bench.baselines", "udp", *opts, "--size", "64"], timeout_s=120
            )
            raw.append(_p50(r["rtt_us"]))
            r = procs.run_json(p2p_args, timeout_s=180, env=env, cwd=tree)
            before.append(_p50(r["data_ack_us"]))
            r = procs.run_json(p2p_args, timeout_s=180)
            now.append(_p50(r["data_ack_us"]))
    return {
        "rev": rev,
        "raw_udp_p50_us": raw,
        "before_p50_us": before,
        "now_p50_us": now,
        "before_vs_raw": [b / r for b, r in zip(before, raw, strict=True)],
        "now_vs_raw": [n / r for n, r in zip(now, raw, strict=True)],
    }


CORE_FIGURES = ("core_message_us", "core_lookup_us", "core_sign_in_us", "core_heartbeat_us")
"""The ``bench.corecost`` figures :func:`core` gives for both trees (issues 18 and 19: the work
per message, per server lookup, per sign-in and per heartbeat)."""


def _spread(xs: list[float]) -> dict[str, float]:
    return {"min": min(xs), "median": float(statistics.median(xs)), "max": max(xs)}


def core(rev: str, *, reps: int, messages: int, users: int = 2000) -> dict[str, Any]:
    """Per repetition: ``rev``'s and this checkout's ``core_message_us`` (µs), and, under
    ``figures``, each of :data:`CORE_FIGURES` of both (a figure an older tree lacks is left
    out), with their min / median / max."""
    args = [procs.PY, "-m", "bench.corecost", "--users", str(users), "--rounds", "1"]
    args += ["--messages", str(messages), "--bulk-reps", "1"]
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "now": []}
    with worktree(rev) as tree:
        env = tree_env(tree)
        for _ in range(reps):
            runs["before"].append(procs.run_json(args, timeout_s=600, env=env, cwd=tree))
            runs["now"].append(procs.run_json(args, timeout_s=600))
    before = [r["core_message_us"] for r in runs["before"]]
    now = [r["core_message_us"] for r in runs["now"]]
    figures: dict[str, Any] = {}
    for name in CORE_FIGURES:
        if not all(name in r for rs in runs.values() for r in rs):
            continue
        b = [float(r[name]) for r in runs["before"]]
        n = [float(r[name]) for r in runs["now"]]
        figures[name] = {
            "before": b,
            "now": n,
            "before_spread": _spread(b),
            "now_spread": _spread(n),
            "now_over_before": _spread([y / x for x, y in zip(b, n, strict=True)]),
        }
    return {
        "rev": rev,
        "before_us": before,
        "now_us": now,
        "speedup": [b / n for b, n in zip(before, now, strict=True)],
        "figures": figures,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=["p2p", "core"])
    p.add_argument("rev", nargs="?", help="the earlier commit (default: the goal's own)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--pings", type=int, default=1500)
    p.add_argument("--messages", type=int, default=3000)
    args = p.parse_args(argv)
    if args.what == "p2p":
        out = p2p(args.rev or PRE_ENCRYPTION, reps=args.reps, pings=args.pings)
    else:
        out = core(args.rev or ISSUE_13_START, reps=args.reps, messages=args.messages)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
