"""Orion's version: the one place it is written (pyproject.toml reads it, the API reports it)."""

__version__ = "0.6.0"
