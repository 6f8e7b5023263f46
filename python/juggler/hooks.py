"""Server hooks: the user's functions juggler calls at points of its life.

``on_starting``, ``on_reload`` and ``on_exit`` run in the supervisor; ``worker_start`` (after
the fork, before the app is imported) and ``worker_exit`` (after draining) in each worker.
Every hook is called with one argument, the resolved ``Config``. They are imported once, in
the supervisor at start-up, so that a hook that cannot be imported stops juggler before any
worker starts; workers inherit them through the fork.
"""

from __future__ import annotations

import dataclasses
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from .config import BY_NAME, Config
from .importer import ImportFromStringError, import_from_string
from .logging import error_logger

#: The hooks, in the order of juggler's life.
NAMES = ("on_starting", "on_reload", "worker_start", "worker_exit", "on_exit")

Hook = Callable[[Config], object]


class HookImportError(Exception):
    """A hook could not be imported, or is not callable: a bad option."""


class HookFailed(Exception):
    """A hook raised; the message names it and what it raised, on one line."""


@dataclasses.dataclass(frozen=True)
class Hooks:
    """The hooks that were given, by name, ready to call."""

    config: Config
    functions: Mapping[str, Hook] = dataclasses.field(default_factory=dict)

    def run(self, name: str) -> None:
        """Calls the hook ``name`` if it was given; HookFailed if it raises."""
        function = self.functions.get(name)
        if function is None:
            return
        try:
            function(self.config)
        except Exception as exc:
            raise HookFailed(_describe_failure(name, self.config.values[name], exc)) from exc

    def run_logged(self, name: str) -> None:
        """Calls the hook ``name``; one that raises is logged with its traceback, and juggler
        goes on (once serving, a broken hook must not take the server down)."""
        try:
            self.run(name)
        except HookFailed as exc:
            error_logger.error("%s", exc, exc_info=exc.__cause__)


def load(config: Config) -> Hooks:
    """Imports the hooks ``config`` names (with ``--app-dir`` on ``sys.path``, where the app
    would be found too)."""
    functions: dict[str, Hook] = {}
    for name in NAMES:
        value = config.values.get(name)
        if value is None:
            continue
        flag = BY_NAME[name].flag
        if isinstance(value, str):
            if config.app_dir and config.app_dir not in sys.path:
                sys.path.insert(0, config.app_dir)
            try:
                value = import_from_string(value)
            except ImportFromStringError as exc:
                raise HookImportError(f"cannot import the {flag} hook: {exc}") from None
        if not callable(value):
            raise HookImportError(
                f"the {flag} hook {config.values[name]!r} is not callable"
                f" (got {type(value).__name__})"
            )
        functions[name] = value
    return Hooks(config, functions)


def _describe_failure(name: str, given: Any, exc: Exception) -> str:
    what = given if isinstance(given, str) else getattr(given, "__qualname__", repr(given))
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        where = f" (at {frames[-1].filename}, line {frames[-1].lineno})"
    return f"the {name} hook {what} raised {type(exc).__name__}: {exc}{where}"
