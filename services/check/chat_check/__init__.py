"""Chat histories and their checker (issue 12).

:mod:`chat_history` (a package of its own, which the client imports too) is the record format
and the :class:`~chat_history.HistoryWriter` the client appends with; :mod:`chat_check.checker`
reads the histories of every client of a run and judges them against the README's promise;
:mod:`chat_check.cli` is ``chat-check``. The format and the verdicts are documented in
docs/HISTORY.md.
"""
