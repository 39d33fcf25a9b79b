"""bench.instructions runs and gives sane per-message counts (no timing, no valgrind: the
Python-level counts, which need no tool beyond the interpreter)."""

from __future__ import annotations

from bench import instructions


def test_calls_and_bytecodes_per_message_are_positive_and_sane() -> None:
    calls = instructions._child(instructions.ROOT, 5, "calls")
    # A small message crosses three cores and the secure layer: dozens of calls, not millions.
    assert 50 < calls["calls"] / 5 < 10_000
    assert calls["c_calls"] > 0
    ops = instructions._child(instructions.ROOT, 5, "ops")["ops"]
    per_message = sum(ops.values()) / 5
    assert 1_000 < per_message < 200_000
    assert any("chat_protocol/transfer/outbound.py" in where for where in ops)
