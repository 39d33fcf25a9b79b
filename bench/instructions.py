"""Machine instructions and Python calls per direct message, for this checkout or a git ref.

Timings on this shared machine move by 2x between runs; instruction counts do not. This runs
``N`` small messages between two client cores through a server core in memory (the three cores
of ``bench.corecost``: send -> LOOKUP -> reply -> DATA -> ACK -> delivered, a fake clock moved
by hand, no sockets) and gives per message:

* ``instructions``: the interpreter's instructions under ``valgrind --tool=callgrind`` (when
  valgrind is installed), taken as the difference between a run of ``--messages`` and one of
  ``--messages // 5`` messages after the same warm-up, so start-up and handshakes cancel out
  (a run before them writes the bytecode caches of a fresh worktree, which both then read);
* ``calls``: the Python function calls (``sys.setprofile`` "call" events, generator resumptions
  included) and ``c_calls`` the calls of built-in functions ("c_call"), counted over the
  ``--messages`` messages after the warm-up;
* ``top``: with ``--top K``, the K source files with the most bytecodes per message (opcode
  tracing), to show where the work is.

A git ref is checked out in a temporary worktree (removed afterwards) and driven on its own
pure-Python core; the driver below only uses the ``ClientCore``/``ServerCore`` calls every tree
since 2026-12-01 has. ``python -m bench.instructions [--ref REV ...] [--messages N]`` prints one
JSON object: ``{"<tree>": {"instructions": ..., "calls": ..., ...}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 20
"""Messages sent before counting: the clients' handshake, the receiver's lookup, caches."""
STEP_S = 0.001
"""Fake seconds between two messages."""


def _drive(messages: int, mode: str) -> dict[str, Any]:
    """In the child: warm up, then count ``mode`` over ``messages`` messages."""
    import importlib  # the child imports the tree's own core, by the name it has there

    def first(attr: str, *modules: str) -> Any:
        for name in modules:
            try:
                return getattr(importlib.import_module(name), attr)
            except (ImportError, AttributeError):
                continue
        raise ImportError(attr)

    client_core = first("ClientCore", "chat_protocol.client.core", "chat_protocol.client")
    server_core = first("ServerCore", "chat_protocol.server.core", "chat_protocol.server")
    key_pair = first("KeyPair", "chat_protocol.secure.noise", "chat_protocol.noise")
    events_module = importlib.import_module("chat_protocol.events")
    delivered, failed = events_module.MessageDelivered, events_module.SendFailed

    server_addr = ("127.0.0.1", 5000)
    server = server_core(identity=key_pair.generate(os.urandom))
    a_addr, b_addr = ("127.0.0.2", 1), ("127.0.0.3", 1)
    clients = {
        addr: client_core(
            name=name,
            server=server_addr,
            identity=key_pair.generate(os.urandom),
            server_key=server.identity.public,
            clock_offset_s=1.7e9,
        )
        for name, addr in (("a", a_addr), ("b", b_addr))
    }
    a = clients[a_addr]
    clock = [0.0]

    def deliver(out: list[tuple[bytes, Any]], src: Any) -> None:
        for data, dst in out:
            core = server if dst == server_addr else clients[dst]
            core.receive_datagram(data, src, clock[0])

    def settle() -> list[Any]:
        events: list[Any] = []
        moved = True
        while moved:
            out = server.datagrams_to_send(clock[0])
            server.events()
            moved = bool(out)
            deliver(out, server_addr)
            for src, core in clients.items():
                out = core.datagrams_to_send(clock[0])
                events.extend(core.events())
                moved = moved or bool(out)
                deliver(out, src)
            if not moved:  # a pacer's timer a few ms away (issue 24): fire it
                for core in clients.values():
                    at = core.next_timer()
                    if at is not None and at <= clock[0] + 0.01:
                        clock[0] = max(clock[0], at)
                        core.handle_timer(clock[0])
                        moved = True
        return events

    forget = getattr(a, "forget_answers", None)

    def one(i: int) -> None:
        if forget is not None:  # a whole send, LOOKUP included, as in older trees
            forget()
        clock[0] += STEP_S
        h = a.send("b", f"ping {i:06d}", clock[0])
        for ev in settle():
            if isinstance(ev, delivered) and ev.handle == h:
                return
            if isinstance(ev, failed):
                raise RuntimeError(str(ev))
        raise RuntimeError("not delivered in one pass")

    for c in clients.values():
        c.connect(clock[0])
    settle()
    for i in range(WARM_UP):
        one(i)
    if mode == "plain":
        for i in range(messages):
            one(WARM_UP + i)
        return {}
    ops: dict[str, int] = {}
    n_calls = [0, 0]

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            n_calls[0] += 1
        elif event == "c_call":
            n_calls[1] += 1

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if event == "call":
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
        elif event == "opcode":
            code = frame.f_code
            f = f"{code.co_filename}:{code.co_qualname}"
            ops[f] = ops.get(f, 0) + 1
        return trace

    if mode == "calls":
        sys.setprofile(profile)
    else:
        sys.settrace(trace)
    for i in range(messages):
        one(WARM_UP + i)
    sys.setprofile(None)
    sys.settrace(None)
    return {"calls": n_calls[0], "c_calls": n_calls[1], "ops": ops}


def _env(tree: Path) -> dict[str, str]:
    """``tree``'s pure-Python core first on the path; no compiled core, a fixed hash seed."""
    env = {k: v for k, v in os.environ.items() if k != "CHAT_CORE_DIR"}
    services = sorted(p for p in (tree / "services").iterdir() if p.is_dir())
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *map(str, services)])
    env["PYTHONHASHSEED"] = "0"
    return env


def _child(tree: Path, messages: int, mode: str, valgrind: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(messages)]
    out_file = None
    if valgrind:
        out_file = Path(tempfile.mkstemp(prefix="callgrind.")[1])
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", *cmd]
    r = subprocess.run(cmd, env=_env(tree), cwd=tree, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{tree}: {r.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    if out_file is not None:
        summary = [ln for ln in out_file.read_text().splitlines() if ln.startswith("summary:")]
        out_file.unlink()
        result["ir"] = int(summary[0].split()[1])
    return result


def measure(tree: Path, messages: int, top: int) -> dict[str, Any]:
    """Per-message figures of the core in ``tree`` (see the module's docstring)."""
    small = max(1, messages // 5)
    n = messages - small
    out: dict[str, Any] = {}
    if shutil.which("valgrind"):
        _child(tree, 1, "plain")  # writes the tree's bytecode caches: both runs below read them
        lo = _child(tree, small, "plain", valgrind=True)["ir"]
        hi = _child(tree, messages, "plain", valgrind=True)["ir"]
        out["instructions"] = (hi - lo) / n
    counted = _child(tree, messages, "calls")
    out["calls"] = counted["calls"] / messages
    out["c_calls"] = counted["c_calls"] / messages
    if top:
        ops: dict[str, int] = _child(tree, messages, "ops")["ops"]
        out["bytecodes"] = sum(ops.values()) / messages
        files: dict[str, int] = {}
        for where, count in ops.items():
            name = where.rsplit(":", 1)[0]
            name = os.path.relpath(name, tree) if name.startswith(str(tree)) else name
            files[name] = files.get(name, 0) + count
        out["top_files"] = _ranked(files, top, messages)
        out["top_functions"] = _ranked(ops, top, messages, strip=f"{tree}/services/protocol/")
    return out


def _ranked(counts: dict[str, int], k: int, messages: int, strip: str = "") -> dict[str, float]:
    best = sorted(counts.items(), key=lambda kv: -kv[1])[:k]
    return {name.removeprefix(strip): round(c / messages, 1) for name, c in best}


def _worktree(rev: str) -> Path:
    tree = Path(tempfile.mkdtemp(prefix="bench-instr-")) / rev
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), rev],
        check=True,
        capture_output=True,
    )
    return tree


def _drop(tree: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
    )
    shutil.rmtree(tree.parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(_drive(int(argv[2]), argv[1])))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ref", action="append", default=[], help="a git ref to measure too")
    p.add_argument("--messages", type=int, default=500)
    p.add_argument("--top", type=int, default=0, help="the K files with the most bytecodes")
    p.add_argument("--no-worktree", action="store_true", help="only the given refs")
    args = p.parse_args(argv)
    results: dict[str, Any] = {}
    for rev in args.ref:
        tree = _worktree(rev)
        try:
            results[rev] = measure(tree, args.messages, args.top)
        finally:
            _drop(tree)
    if not args.no_worktree:
        results["worktree"] = measure(ROOT, args.messages, args.top)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
