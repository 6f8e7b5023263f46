"""Loading "module:attribute" import strings, with errors that name what is missing."""

from __future__ import annotations

import importlib
import sys
from typing import Any


class ImportFromStringError(Exception):
    """The app could not be loaded; the message is meant for the user as it is."""


def import_from_string(import_str: Any) -> Any:
    if not isinstance(import_str, str):
        return import_str
    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise ImportFromStringError(
            f'Import string "{import_str}" must be in format "<module>:<attribute>".'
        )
    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        # Only a missing app module is ours to explain; a missing dependency of it is the app's.
        if exc.name is not None and module_str.startswith(exc.name):
            raise ImportFromStringError(f'Could not import module "{module_str}".') from None
        raise ImportFromStringError(
            f'Error importing "{module_str}": {type(exc).__name__}: {exc}'
        ) from exc
    except SyntaxError as exc:
        where = f" ({exc.filename}, line {exc.lineno})" if exc.filename else ""
        raise ImportFromStringError(
            f'Error importing "{module_str}": SyntaxError: {exc.msg}{where}'
        ) from exc
    except Exception as exc:
        raise ImportFromStringError(
            f'Error importing "{module_str}": {type(exc).__name__}: {exc}'
        ) from exc
    instance: Any = module
    try:
        for attr in attrs_str.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        raise ImportFromStringError(
            f'Attribute "{attrs_str}" not found in module "{module_str}".'
        ) from None
    return instance


def load_app(app: Any, *, factory: bool, app_dir: str | None) -> Any:
    """Imports (and with ``factory`` calls) the app, checking it can be called."""
    if app_dir is not None and isinstance(app, str):
        sys.path.insert(0, app_dir)
    loaded = import_from_string(app)
    if factory:
        if not callable(loaded):
            raise ImportFromStringError(f"The factory {app!r} is not callable.")
        try:
            loaded = loaded()
        except Exception as exc:
            raise ImportFromStringError(
                f"Error calling factory {app!r}: {type(exc).__name__}: {exc}"
            ) from exc
    if not callable(loaded):
        raise ImportFromStringError(
            f"The application {app!r} is not callable (got {type(loaded).__name__})."
        )
    return loaded
