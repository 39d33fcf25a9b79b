import sys
from pathlib import Path

# netsim.py lives beside this file and is shared by the unit tests and the benchmarks.
sys.path.insert(0, str(Path(__file__).parent))
