"""Benchmarks (pytest-benchmark), not tests: ``make bench`` runs them; ``make test`` never does.

A package so that ``conftest.py`` can import :mod:`benchmarks.summarize` and the ratio table can
also be printed on its own: ``python -m benchmarks.summarize [RESULTS_JSON]``.
"""
