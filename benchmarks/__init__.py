"""Benchmarks: `make bench-*` targets that print numbers (never timed tests)."""
