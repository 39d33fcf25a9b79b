"""Tab completion at the terminal prompt: command words, then the names of users online.

The first word completes to a command or an alias (:data:`chat_client.commands.WORDS`); the word
after one that takes a user (``send``, ``/msg``, ``whois``, ...) completes to the names of the
last ``list`` the client saw, its own or a quiet one. Asking for names when that list is older
than :data:`NAMES_FRESH_S` asks the directory again, quietly (nothing is printed), at most once per
:data:`NAMES_FRESH_S`; the answer serves the next Tab.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from chat_client.commands import TAKES_USER, WORDS

NAMES_FRESH_S = 5.0
"""How old the list of names may be before Tab asks the directory again (and how often it may)."""


def candidates(line: str, names: Sequence[str]) -> tuple[int, list[str]]:
    """What the end of ``line`` (the text before the cursor) may complete to: (the length of the
    word being completed, the words it may become, each followed by a space)."""
    words = line.split(" ")
    last = words[-1]
    if len(words) == 1:
        low = last.lower()
        return len(last), [w + " " for w in WORDS if w.startswith(low)]
    if len(words) == 2 and words[0].lower() in TAKES_USER:
        low = last.lower()
        return len(last), [n + " " for n in names if n.lower().startswith(low)]
    return 0, []


class ChatCompleter(Completer):
    """``names()``: the names last listed; ``refresh()``: asked when completing a name (it
    decides whether to ask the directory)."""

    def __init__(self, names: Callable[[], Sequence[str]], refresh: Callable[[], None]) -> None:
        self._names = names
        self._refresh = refresh

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        before = document.text_before_cursor
        words = before.split(" ")
        if len(words) == 2 and words[0].lower() in TAKES_USER:
            self._refresh()
        size, words = candidates(before, self._names())
        for w in words:
            yield Completion(w, start_position=-size, display=w.rstrip())
