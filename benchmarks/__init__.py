"""Benchmarks of cvxlpgd against cvxpylayers: ``python -m benchmarks.run`` (see run.py)."""
