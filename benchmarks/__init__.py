"""Benchmarks of Orion (see ../shared/BENCHMARKS.md): run as ``python -m benchmarks.<id>``."""
