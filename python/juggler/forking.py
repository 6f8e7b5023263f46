"""Forking the supervisor's children (workers, the file watcher) the same careful way.

A child drops the supervisor's descriptors and signal handling, arranges to die with its
parent, runs its main function and leaves through ``os._exit``: it never returns into the
supervisor's code, and never runs the supervisor's clean-up.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable

from .channel import LEAVE_SIGNAL
from .logging import error_logger

_PR_SET_PDEATHSIG = 1
CHILD_SIGNALS = {
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGCHLD,
    signal.SIGTTIN,
    signal.SIGTTOU,
}


def fork(child_main: Callable[[], int], close_in_child: Iterable[int], what: str) -> int:
    """Forks; the child runs ``child_main`` and exits with its result. Returns the child's pid."""
    parent = os.getpid()
    close = list(close_in_child)
    flush_std_streams()
    # Signals stay blocked across the fork until the child has dropped the supervisor's
    # handlers: one arriving in between would otherwise be queued for a loop that does not
    # run in the child, and lost.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, CHILD_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return pid
    code = 1
    try:
        for fd in close:
            try:
                os.close(fd)
            except OSError:
                pass
        _reset_signals()
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        _die_with_parent(parent)
        code = child_main()
    except BaseException:  # nothing may escape into the supervisor's code
        error_logger.exception("%s [%d] failed", what, os.getpid())
    finally:
        flush_std_streams()
        logging.shutdown()
        os._exit(code)


def _reset_signals() -> None:
    # The supervisor's handlers only queue signals for its loop; here they would do nothing.
    # SIGINT is ignored: Ctrl+C reaches the whole process group, and the supervisor decides
    # what it means for its children.
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGINT, signal.SIGTTIN, signal.SIGTTOU, LEAVE_SIGNAL):
        signal.signal(sig, signal.SIG_IGN)


def _die_with_parent(parent: int) -> None:
    """A child must not outlive its supervisor (killed with -9, say): the kernel sends it
    SIGTERM, and a worker drains as on any graceful stop."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        # The supervisor died before prctl took effect.
        os._exit(0)


def flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
