"""The lab harness: one way to start, drive, break and stop the chat programs, shared by the
end-to-end suite (tests/e2e), the container suite (tests/integration), the benchmarks (bench/),
the demo and ``make up``.

- :mod:`labkit.util`: :func:`~labkit.util.wait_until` and :func:`~labkit.util.poll_until`
  (every wait is a condition with a deadline; nothing sleeps to synchronise),
  :func:`~labkit.util.in_ci` (the one notion of "this is CI": the Makefile asks it too),
  :func:`~labkit.util.unavailable` and :func:`~labkit.util.import_or_unavailable` (skip, or
  fail under CI: the only way a test is let off).
- :mod:`labkit.procs`: :func:`~labkit.procs.terminate`, the one way to stop a process tree
  (SIGTERM, then SIGKILL; descendants and a group leader's group, by psutil);
  :class:`~labkit.procs.Reaper`, which owns every process a test starts; exit codes; CPU and
  memory of a process (psutil); the programs' paths.
- :mod:`labkit.local`: ``chat-server`` on this machine (:class:`~labkit.local.ChatServer`,
  ready once it answers a PING) and ``chat-client`` processes.
- :mod:`labkit.terminal`: the client drivers, the same for a local process and a container:
  :class:`~labkit.terminal.TtyClient` (pexpect on a pseudo-terminal, escape sequences
  filtered) and :class:`~labkit.terminal.PipedClient` (stdin a pipe, output in files).
- :mod:`labkit.netns`: network namespaces on this machine.
- :mod:`labkit.faults`: loss and duplication (iptables in a namespace: a local one or a
  container's), packet counters, partition, pause and kill.
- :mod:`labkit.engine`: is there a Docker engine with Compose v2 (scripts/lab-check.sh, the
  one check, which the Makefile and the scripts make too); the docker SDK client.
- :mod:`labkit.chaos`: chaos runs (docs/CHAOS.md), and the broken client they can run
  (labkit/chaos/broken_client.py, a fault applied from outside the client).
- :mod:`labkit.compose`: :class:`~labkit.compose.Compose`, a project of compose.yaml: ``up``
  until the server is healthy (the one copy of that check), clients as ``docker compose run``,
  its containers through the SDK, and teardown.
- ``python -m labkit up|demo``: what ``make up`` and ``make demo`` run.
- The pictures (``traces/``): :mod:`labkit.capture` (every UDP datagram in a network namespace,
  AF_PACKET), :mod:`labkit.trace` (``make trace``: captures labelled from the senders' wire
  logs, and the verdict on DATA through the server), :mod:`labkit.timeline` (``make demo``'s
  timelines, from the wire logs, printed lines and faults), :mod:`labkit.pictures` (sequence
  diagrams: PNG, SVG, text) and :mod:`labkit.graph` (``make graph``: the topology, from the
  docker SDK).
"""
