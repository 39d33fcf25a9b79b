"""User names: the rule, and that names compare without regard to case."""

from __future__ import annotations

import pytest

from chat_protocol.errors import UsageError
from chat_protocol.wire.names import check_name, name_key


@pytest.mark.guard("name-rule")
@pytest.mark.parametrize("name", ["", "a b", "-lead", "x" * 33, "al\x1bice", "bob\u202e"])
def test_a_name_outside_the_rule_is_refused_with_the_rule(name: str) -> None:
    with pytest.raises(UsageError, match=r"invalid user name .*: use 1-32 characters"):
        check_name(name)


@pytest.mark.parametrize("name", ["a", "Bob", "x" * 32, "a.b-c_9"])
def test_a_name_inside_the_rule_is_kept_as_typed(name: str) -> None:
    assert check_name(name) == name


def test_names_are_one_user_without_regard_to_case() -> None:
    assert name_key("Bob") == name_key("bob") == name_key("BOB")
    assert name_key("bob") != name_key("bobby")
