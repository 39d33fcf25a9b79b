"""The harness. Its one way to stop a process tree (labkit.procs.terminate): SIGTERM to the process,
everything under it and, for a group leader, its whole group; SIGKILL what is left; all reaped.
Nothing of a tree outlives it, not even a grandchild whose parent has already exited. And its one
way to let a test off: skip, but fail under CI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from labkit.procs import terminate
from labkit.util import import_or_unavailable, in_ci, wait_until

pytestmark = pytest.mark.e2e

SLEEPER = "import time; time.sleep(300)"
TREE = f"""
import subprocess, sys
kids = [subprocess.Popen([sys.executable, "-c", {SLEEPER!r}]) for _ in range(2)]
print(" ".join(str(k.pid) for k in kids), flush=True)
{"{}"}
"""


def start(tail: str, *, session: bool) -> tuple[subprocess.Popen[str], list[int]]:
    """A Python process with two sleeping children; then ``tail`` runs in it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE.replace("{}", tail)],
        stdout=subprocess.PIPE, text=True, start_new_session=session,
    )  # fmt: skip
    assert proc.stdout is not None
    kids = [int(pid) for pid in proc.stdout.readline().split()]
    assert len(kids) == 2
    return proc, kids


def gone(pids: list[int]) -> bool:
    def ended(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(ended(pid) for pid in pids)


def test_a_process_and_its_children_are_stopped() -> None:
    proc, kids = start("import time; time.sleep(300)", session=False)
    terminate([proc], grace_s=3)
    assert proc.returncode == -signal.SIGTERM
    wait_until(lambda: gone(kids), 5, "the children to end")


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    tail = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    proc, kids = start(tail, session=False)
    t0 = time.monotonic()
    terminate([proc], grace_s=0.5)
    assert proc.returncode == -signal.SIGKILL and time.monotonic() - t0 >= 0.5
    wait_until(lambda: gone(kids), 5, "the children to end")


def test_the_orphans_of_a_group_leader_that_exited_are_stopped() -> None:
    """The benchmarks' case: a child started with start_new_session exits and leaves its own
    children running, reparented: only its process group still names them."""
    proc, kids = start("", session=True)  # exits at once, its children run on
    assert proc.wait(10) == 0
    assert not gone(kids)
    terminate([proc], grace_s=3)
    wait_until(lambda: gone(kids), 5, "the orphans to end")


# --- being let off: skip, or fail under CI -------------------------------------------------------


@pytest.mark.parametrize(("ci", "outcome"), [("", "skipped"), ("true", "failed"), ("1", "failed")])
def test_a_missing_module_skips_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    monkeypatch.setenv("CI", ci)
    assert in_ci() == bool(ci)
    raised = pytest.skip.Exception if outcome == "skipped" else pytest.fail.Exception
    with pytest.raises(raised, match="no_such_module_here is not installed"):
        import_or_unavailable("no_such_module_here", "this test")
    assert import_or_unavailable("json", "this test").dumps([1]) == "[1]"
