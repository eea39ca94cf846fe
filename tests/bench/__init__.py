"""Benchmarks: plain scripts, not pytest tests (`python -m tests.bench.<name>`, or `make bench`).

Every script measures its baseline in the same run and prints ratios; none has thresholds.
"""
