"""What every command gets: the global options and the config, loaded once on first use.

Apart from cli.main so that the command modules can use it while main imports them.
"""

from __future__ import annotations

from pathlib import Path

import click

from maintainer.config import find_config, load_config


class App:
    """Global options, and the config loaded once on first use."""

    def __init__(self, config_path: str | None, log_format: str | None, debug: bool):
        self.config_path = config_path
        self.log_format = log_format
        self.debug = debug
        self._config = None
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = find_config(self.config_path)
        return self._path

    def config(self):
        if self._config is None:
            self._config = load_config(self.path)
        return self._config


pass_app = click.make_pass_decorator(App)
