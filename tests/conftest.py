"""Shared test set-up: the import path of netsim.py and the hypothesis profiles.

Profiles (``--hypothesis-profile=NAME``; ``ci`` when none is given):

* ``ci`` - derandomized: every run draws the same examples, so ``make test`` and CI are
  reproducible. No deadline (shared CI machines stall).
* ``random`` - fresh examples each run; ``--hypothesis-seed=N`` replays one exploration.
* ``fuzz`` - ``random`` with many more examples per test (``make fuzz``). Tests that set their
  own ``max_examples`` keep it.

Initial conftest files are imported before hypothesis' pytest plugin runs its
``pytest_configure``, which loads the profile named on the command line: so the default loaded
here is replaced whenever ``--hypothesis-profile`` is given.
"""

import sys
from pathlib import Path

from hypothesis import settings

# netsim.py lives beside this file and is shared by the unit tests and the benchmarks.
sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("random", derandomize=False, deadline=None)
settings.register_profile("fuzz", settings.get_profile("random"), max_examples=2000)
settings.load_profile("ci")
