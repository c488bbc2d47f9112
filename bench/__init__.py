"""Benchmarks, run on demand with `make bench`; each prints its figure and its ratio to a baseline measured in the same run."""
