"""Chaos runs (``make chaos``): scripted clients in containers message each other at a steady
rate while a seeded schedule of faults runs (loss and duplication, partitions and pauses of a
client or the server, kill -9 of clients that come back under the same name); then
``chat-check`` judges their histories. docs/CHAOS.md.

- :mod:`labkit.chaos.schedule`: the faults of a seed (pure);
- :mod:`labkit.chaos.fleet`: the clients, one ``docker compose run`` per incarnation, started
  again when one ends;
- :mod:`labkit.chaos.traffic`: the messages;
- :mod:`labkit.chaos.nemesis`: carrying out the schedule, and faults.json;
- :mod:`labkit.chaos.run`: one run, start to end; ``python -m labkit.chaos`` its command.
"""
