"""``python -m labkit.chaos`` (``make chaos``): one seeded chaos run; prints chat-check's report
and exits with its status (0 no violations, 1 violations, 2 it could not check, 3 the lab
failed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labkit.chaos.run import Settings, run


def main(argv: list[str] | None = None) -> int:
    d = Settings()
    p = argparse.ArgumentParser(prog="python -m labkit.chaos", description=__doc__)
    p.add_argument("--seed", type=int, default=d.seed, help="the fault schedule and the texts")
    p.add_argument(
        "--duration", type=float, default=d.duration_s, help="seconds of traffic (%(default)s)"
    )
    p.add_argument("--clients", type=int, default=d.clients, help="(%(default)s)")
    p.add_argument(
        "--rate", type=float, default=d.rate, help="messages/s per client (%(default)s)"
    )
    p.add_argument(
        "--broken",
        action="store_true",
        help="the first client drops one message it acknowledged (the checker must say lost)",
    )
    p.add_argument("--out", type=Path, help="run directory (default: chaos-runs/seed<N>-<time>)")
    p.add_argument("--project", help="compose project (default: chaos-<seed>-<random>)")
    a = p.parse_args(argv)
    if a.clients < 2:
        p.error("--clients: at least 2")
    if a.duration < 30:
        p.error("--duration: at least 30 s (warm-up and the quiet end take 20)")
    s = Settings(
        seed=a.seed, duration_s=a.duration, clients=a.clients, rate=a.rate, broken=a.broken,
        out=a.out, project=a.project,
    )  # fmt: skip
    try:
        return run(s)
    except KeyboardInterrupt:  # run() has removed the project on its way out
        print("chaos: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
