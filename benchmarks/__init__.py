"""Benchmarks for sidecar, one ``bench_*.py`` module per area.

Run one with ``python -m benchmarks.bench_wire`` or all of them, each in its own
subprocess, with ``python -m benchmarks``.  ``--json`` prints machine-readable
results on stdout (the tables then go to stderr).  ``_harness`` holds the shared
timing, table and command-line helpers.
"""
