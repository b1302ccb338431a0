"""maintainer: backup, maintenance and recovery scheduler for Docker deployments around PostgreSQL."""

__version__ = "0.1.0"
