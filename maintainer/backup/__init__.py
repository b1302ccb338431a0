"""Backups in storage: where they live, what their manifest says, which ones exist."""
