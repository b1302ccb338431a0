"""Restoring backups: check files, drill containers, verified streams, incident restore."""
