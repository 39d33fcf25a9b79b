"""Shared test set-up: the import path of netsim.py, which core is tested, and the hypothesis
profiles.

``CHAT_CORE_DIR`` (the Makefile sets it to build/core/lib, from scripts/core.sh) runs the tests
with the mypyc-compiled core: it goes first on this process's import path (ahead of the sources
that pytest's ``pythonpath`` puts there) and on ``PYTHONPATH`` for every program a test starts.
Unset, the pure-Python sources are tested. tests/unit/test_core_kind.py checks which one ran.

Profiles (``--hypothesis-profile=NAME``; ``ci`` when none is given):

* ``ci`` - derandomized: every run draws the same examples, so ``make test`` and CI are
  reproducible. No deadline (shared CI machines stall).
* ``random`` - fresh examples each run; ``--hypothesis-seed=N`` replays one exploration.
* ``fuzz`` - ``random`` with 20 times the examples per test (``make fuzz``): every test, since
  a test's own budget is ``budget.examples(n)``, which scales with the profile (a test that
  pins ``max_examples`` to a number fails tests/unit/test_budget.py).

Initial conftest files are imported before hypothesis' pytest plugin runs its
``pytest_configure``, which loads the profile named on the command line: so the default loaded
here is replaced whenever ``--hypothesis-profile`` is given.
"""

import os
import sys
from pathlib import Path

from hypothesis import settings

# netsim.py lives beside this file and is shared by the unit tests and the benchmarks.
sys.path.insert(0, str(Path(__file__).parent))

CORE_DIR = os.environ.get("CHAT_CORE_DIR", "")
if CORE_DIR:
    if "chat_protocol" in sys.modules:
        raise RuntimeError("CHAT_CORE_DIR is set, but chat_protocol was imported before it applied")
    sys.path.insert(0, CORE_DIR)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [CORE_DIR, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )

settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("random", derandomize=False, deadline=None)
settings.register_profile("fuzz", settings.get_profile("random"), max_examples=2000)
settings.load_profile("ci")
