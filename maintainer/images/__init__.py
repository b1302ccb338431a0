"""Base-image updates: registry digests, pulls and untagging."""
