"""Continuous protection: the WAL archive and physical base backups in storage."""
