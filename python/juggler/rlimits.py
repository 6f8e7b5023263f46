"""The open-files limit, raised to what the system allows before anything is opened.

Each connection costs a worker a descriptor, and the soft limit many systems start processes
with (1024) is far below the hard one: a busy worker would refuse connections it has the
memory for. nginx and Go raise it the same way. Workers inherit it from the supervisor.
"""

from __future__ import annotations

import resource

from .logging import error_logger


def raise_open_files_limit() -> None:
    """Raises the soft RLIMIT_NOFILE to the hard one; logs the value in force at debug."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError) as exc:
        error_logger.debug("Cannot read the open files limit: %s", exc)
        return
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:
            # A container may forbid it; the lower limit still works.
            error_logger.debug("Cannot raise the open files limit from %d: %s", soft, exc)
            return
        error_logger.debug("Open files limit raised from %d to %d.", soft, hard)
        return
    error_logger.debug(
        "Open files limit: %s.", "unlimited" if soft == resource.RLIM_INFINITY else soft
    )
