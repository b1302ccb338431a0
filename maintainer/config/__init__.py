"""schedules.yaml: the model, and the loader that validates it."""

from maintainer.config.loader import find_config, load_config, parse_config
from maintainer.config.models import Config, DatabaseSpec, StorageSpec

__all__ = ["Config", "DatabaseSpec", "StorageSpec", "find_config", "load_config", "parse_config"]
