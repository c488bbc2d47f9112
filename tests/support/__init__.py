"""Helpers for tests and benchmarks (real servers, bus harnesses, test apps); never shipped."""
