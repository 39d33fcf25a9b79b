"""A UDP endpoint driven line by line, for the NAT lab's reachability checks (labkit.natlab).

It runs in the chat client image (python3, standard library only), in the network namespace
of a lab host: ``python3 /lab/udpprobe.py PORT``. It binds 0.0.0.0:PORT, prints
``bound PORT``, then, until stdin closes or ``quit``:

- a line ``send IP PORT TEXT`` on stdin sends TEXT from the bound socket and prints
  ``sent IP PORT TEXT``;
- every datagram received is printed as ``recv IP PORT TEXT`` (IP and PORT: its source).

Each output line is flushed at once, so that the driver can wait on it.
"""

from __future__ import annotations

import selectors
import socket
import sys


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: udpprobe.py PORT", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", int(argv[0])))
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "udp")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    say(f"bound {sock.getsockname()[1]}")
    while True:
        for key, _ in sel.select():
            if key.data == "udp":
                data, (ip, port) = sock.recvfrom(65535)
                say(f"recv {ip} {port} {data.decode('utf-8', 'replace')}")
                continue
            line = sys.stdin.readline()
            words = line.split(maxsplit=3)
            if not words or words[0] == "quit":
                return 0
            if words[0] != "send" or len(words) != 4 or not words[2].isdigit():
                say(f"error: not a command: {line.strip()!r}")
                continue
            _, ip, port, text = words
            sock.sendto(text.encode(), (ip, int(port)))
            say(f"sent {ip} {port} {text}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
