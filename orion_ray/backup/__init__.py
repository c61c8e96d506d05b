"""Backups and restore of Orion's store (docs/backups.md): snapshots, verified restores, a replica.

The ``backup`` config block is ``orion_ray/backup_config.py`` (a model-layer module) and the
commands are ``orion_ray/backup_cli.py`` (they read ``cluster.json``): this package imports
neither the CLI nor ``cluster``, so no import cycle runs through it.
"""
