"""Table-driven tests of the cores' state machines: every row of each table, and every move
the tables lack, is taken once (after h11's test of ``_state.py``)."""

from __future__ import annotations

from enum import Enum

import pytest

from chat_protocol.client.directory import CLIENT_TRANSITIONS, State, Trigger
from chat_protocol.errors import IllegalTransition
from chat_protocol.machine import StateMachine, rows, transition
from chat_protocol.server.users import USER_TRANSITIONS, User, UserState, UserTrigger


@pytest.mark.parametrize(
    ("state", "trigger", "expected"),
    rows(CLIENT_TRANSITIONS),
    ids=lambda v: v.name if isinstance(v, Enum) else str(v),
)
def test_every_client_row(state: State, trigger: Trigger, expected: State) -> None:
    m = StateMachine(CLIENT_TRANSITIONS, state)
    assert m.can(trigger)
    assert m.fire(trigger) is expected and m.state is expected


@pytest.mark.parametrize(
    ("state", "trigger", "expected"),
    rows(USER_TRANSITIONS),
    ids=lambda v: v.name if isinstance(v, Enum) else str(v),
)
def test_every_server_user_row(state: UserState, trigger: UserTrigger, expected: UserState) -> None:
    assert transition(USER_TRANSITIONS, state, trigger) is expected


@pytest.mark.parametrize("state", list(UserState), ids=lambda s: s.name)
def test_a_users_request_is_the_tables_request_row(state: UserState) -> None:
    """User.request skips the lookup for an online user: the same as the table's row."""
    user = User(name="a", key="a", addr=("10.0.0.1", 1), token=b"t" * 8, expires=0.0)
    user.state = state
    if UserTrigger.REQUEST not in USER_TRANSITIONS[state]:
        with pytest.raises(IllegalTransition):
            user.request()
        return
    user.request()
    assert user.state is USER_TRANSITIONS[state][UserTrigger.REQUEST]


def test_every_move_a_table_lacks_is_refused() -> None:
    refused = 0
    for state in State:
        for trigger in Trigger:
            if trigger in CLIENT_TRANSITIONS[state]:
                continue
            m = StateMachine(CLIENT_TRANSITIONS, state)
            with pytest.raises(IllegalTransition, match=trigger.name):
                m.fire(trigger)
            assert m.state is state  # a refused move changes nothing
            refused += 1
    for us in UserState:
        for ut in UserTrigger:
            if ut not in USER_TRANSITIONS[us]:
                with pytest.raises(IllegalTransition):
                    transition(USER_TRANSITIONS, us, ut)
                refused += 1
    assert refused > 0


def test_every_state_is_in_its_table_and_gone_is_final() -> None:
    assert set(CLIENT_TRANSITIONS) == set(State)
    assert set(USER_TRANSITIONS) == set(UserState)
    assert CLIENT_TRANSITIONS[State.GONE] == {} and USER_TRANSITIONS[UserState.GONE] == {}
    reachable = {State.SIGNING_IN}
    for _ in State:
        reachable |= {n for s in reachable for n in CLIENT_TRANSITIONS[s].values()}
    assert reachable == set(State)
