"""The exit codes of ``juggler``, defined in this one place.

A supervisor that runs workers must not restart one that exits with ``EXIT_APP_LOAD`` or
``EXIT_BAD_OPTION``: the same app and options would fail the same way again.
"""

from __future__ import annotations

EXIT_OK = 0
"""The server ran and shut down cleanly (also after SIGTERM or SIGINT)."""

EXIT_BIND_FAILED = 1
"""The listening address could not be bound, or the server could not start for a reason of
the machine's (for example ``--loop uvloop`` without uvloop installed)."""

EXIT_BAD_OPTION = 2
"""An option, environment variable or ``APP`` argument has a value juggler cannot use (a hook
that cannot be imported among them)."""

EXIT_STARTUP_FAILED = 3
"""The app failed its lifespan startup (or shutdown), or a hook raised at start-up
(``--on-starting``, or the first worker's ``--worker-start``)."""

EXIT_APP_LOAD = 4
"""The app could not be imported, its factory failed, it is not callable, or it does not speak
the interface that was asked for."""

__all__ = [
    "EXIT_APP_LOAD",
    "EXIT_BAD_OPTION",
    "EXIT_BIND_FAILED",
    "EXIT_OK",
    "EXIT_STARTUP_FAILED",
]
