"""Maintenance scripts: the shipped example, the shipped checkpoint, benchmarks."""
