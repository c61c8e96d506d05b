"""The scheduled snapshots' actor's name (in Orion's namespace), apart from ``actor.py`` so that
``cluster.py`` can name it without importing Ray."""

BACKUP_NAME = "orion-backup"
