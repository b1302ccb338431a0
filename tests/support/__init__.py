"""Helpers behind the fixtures in tests/conftest.py: real PostgreSQL containers,
moto S3 servers and clean-up of everything a test run put into Docker."""
