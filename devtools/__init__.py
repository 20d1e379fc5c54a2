"""Maintenance tools run by make targets (ship, bench, the example, benchmarks); not in the wheel."""
