"""Configuration snapshots: collect, mask, archive, list, extract and compare."""
