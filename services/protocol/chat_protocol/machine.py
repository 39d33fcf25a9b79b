"""State machines as tables (after h11's ``_state.py``).

Each machine is one dict: ``{state: {trigger: next_state}}``. :class:`StateMachine` is the one
place a state changes; a trigger the table lacks for the current state raises
:class:`~chat_protocol.errors.IllegalTransition` (a local bug, never the network's fault: the
cores check what the network sent before they fire a trigger).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Generic, TypeVar

from chat_protocol.errors import IllegalTransition

S = TypeVar("S", bound=Enum)
T = TypeVar("T", bound=Enum)

Table = Mapping[S, Mapping[T, S]]


class StateMachine(Generic[S, T]):
    __slots__ = ("state", "table")

    def __init__(self, table: Mapping[S, Mapping[T, S]], initial: S) -> None:
        self.table = table
        self.state = initial

    def can(self, trigger: T) -> bool:
        return trigger in self.table[self.state]

    def fire(self, trigger: T) -> S:
        """Move along ``trigger``; raise :class:`IllegalTransition` if the table has no such row."""
        self.state = transition(self.table, self.state, trigger)
        return self.state


def transition(table: Mapping[S, Mapping[T, S]], state: S, trigger: T) -> S:
    """The state ``trigger`` leads to from ``state`` (for machines kept as a bare field)."""
    try:
        return table[state][trigger]
    except KeyError:
        raise IllegalTransition(f"{trigger.name} is not allowed in state {state.name}") from None


def rows(table: Mapping[S, Mapping[T, S]]) -> list[tuple[S, T, S]]:
    """Every legal transition, for documentation and table-driven tests."""
    return [(s, t, n) for s, moves in table.items() for t, n in moves.items()]
