"""Backups and restore of Orion's store (docs/backups.md): snapshots, verified restores, a replica.

Nothing is imported here, so ``config.py`` can import ``backup.config`` without pulling the rest.
"""
