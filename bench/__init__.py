"""Benchmarks of the P2P UDP chat, each measured beside its baseline in the same run.

``python -m bench.run --quick`` (``make bench``) or ``--full`` (``make bench-full``) writes
bench/results/summary.json, summary.md and PNG plots. See bench/run.py for what is measured.
"""
