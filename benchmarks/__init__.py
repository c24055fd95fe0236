"""Benchmarks: figures that are measured, never asserted (see each module's docstring)."""
