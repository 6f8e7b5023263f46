"""The open-files limit, raised to what the system allows before anything is opened.

Each connection costs a worker a descriptor, and the soft limit many systems start processes
with (1024) is far below the hard one: a busy worker would refuse connections it has the
memory for. nginx and Go raise it the same way. Workers inherit it from the supervisor, and
so do the processes an app starts: some containers set a hard limit of a billion, which old
programs that close every possible descriptor would loop over, so it is raised no further
than ``MAX_OPEN_FILES``.
"""

from __future__ import annotations

import resource

from .logging import error_logger

#: A million connections per process is past what anything else allows.
MAX_OPEN_FILES = 1 << 20


def raise_open_files_limit() -> None:
    """Raises the soft RLIMIT_NOFILE to the hard one (at most ``MAX_OPEN_FILES``); logs the
    value in force at debug."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError) as exc:
        error_logger.debug("Cannot read the open files limit: %s", exc)
        return
    target = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            # A container may forbid it; the lower limit still works.
            error_logger.debug("Cannot raise the open files limit from %d: %s", soft, exc)
            return
        error_logger.debug("Open files limit raised from %d to %d.", soft, target)
        return
    error_logger.debug(
        "Open files limit: %s.", "unlimited" if soft == resource.RLIM_INFINITY else soft
    )
