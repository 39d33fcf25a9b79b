"""``python -m labkit up`` (``make up``): start the lab's server and wait until it is healthy.
``python -m labkit demo`` (``make demo``): a scripted conversation between two clients, then a
fault scenario; each ends by drawing its timeline in traces/.
Both need the images (``make images``)."""

from __future__ import annotations

import argparse
import os
import sys

from labkit.compose import UP_TIMEOUT_S, Compose
from labkit.demo import demo, fault_demo
from labkit.util import LabError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the server (docker compose up -d) until it is healthy")
    up.add_argument("-p", "--project", help="compose project (default: compose.yaml's name)")
    up.add_argument("--timeout", type=float, default=UP_TIMEOUT_S, help="seconds (%(default)s)")
    show = sub.add_parser("demo", help="two client containers hold a scripted conversation")
    show.add_argument("-p", "--project", default=os.environ.get("DEMO_PROJECT", "p2p-chat-demo"))
    show.add_argument("--wait", type=float, default=20.0, help="bound of each step, seconds")
    args = parser.parse_args(argv)

    if args.command == "demo":
        return demo(args.project, args.wait) or fault_demo(args.project, args.wait)
    lab = Compose(args.project)
    print(f"Starting the server: docker compose -p {lab.name} up -d --wait server")
    try:
        lab.up("server", timeout=args.timeout)
    except LabError as exc:
        print(f"make up: error: {exc}", file=sys.stderr)
        return 1
    print(f"The server is up at {lab.container_ip('server')}:5000/udp on {lab.network_name}.")
    print("A client:  docker compose run --rm client -u alice")
    print("(another terminal: -u bob).  Logs: make logs.  Stop: make down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
