"""Operator and developer commands: bring-up, status, simulators, benchmarks."""
