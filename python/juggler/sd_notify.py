"""Telling systemd how the service is doing (``sd_notify(3)``): a datagram of ``KEY=value``
lines to the socket named by ``NOTIFY_SOCKET``, and the watchdog's period from
``WATCHDOG_USEC``.

Only the supervisor notifies (the unit's ``NotifyAccess=main``): the variables are read once
and removed from the environment, so that neither the workers nor an app's subprocesses
speak for the service. A notification that cannot be sent is logged once and never raises:
systemd going away must not stop juggler serving.
"""

from __future__ import annotations

import socket
import time
from collections.abc import MutableMapping

from .logging import error_logger

VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

READY = "READY=1"
STOPPING = "STOPPING=1"
WATCHDOG = "WATCHDOG=1"


class NotifyError(Exception):
    """The environment names a notification socket or watchdog juggler cannot use."""


def address(value: str) -> str | bytes:
    """The socket address of a ``NOTIFY_SOCKET`` value: a path, or ``@name`` for a name in
    the abstract namespace."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    raise NotifyError(f"NOTIFY_SOCKET is neither a path nor an abstract socket (@name): {value!r}")


def watchdog_period(usec: str | None, for_pid: str | None, pid: int) -> float | None:
    """How often to send ``WATCHDOG=1``: half the watchdog's timeout, as systemd advises (None:
    no watchdog for this process)."""
    if usec is None:
        return None
    if for_pid is not None and for_pid != str(pid):
        return None
    try:
        timeout = int(usec)
    except ValueError:
        raise NotifyError(f"WATCHDOG_USEC is not a number: {usec!r}") from None
    if timeout <= 0:
        raise NotifyError(f"WATCHDOG_USEC must be positive, got {timeout}")
    return timeout / 2e6


def message(*lines: str) -> bytes:
    """One datagram of ``KEY=value`` lines (a value's own newlines would start a new key)."""
    return "".join(line.replace("\n", " ") + "\n" for line in lines).encode()


def status(text: str) -> str:
    return f"STATUS={text}"


def reloading(now_ns: int | None = None) -> tuple[str, str]:
    """``RELOADING=1`` with the monotonic time systemd (``Type=notify-reload``) matches it
    against."""
    ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC) if now_ns is None else now_ns
    return ("RELOADING=1", f"MONOTONIC_USEC={ns // 1000}")


class Notifier:
    """Sends notifications to one socket; ``watchdog`` is the period of ``WATCHDOG=1`` (None:
    not asked for)."""

    def __init__(self, target: str | bytes | None, watchdog: float | None) -> None:
        self.target = target
        self.watchdog = watchdog
        self._sock: socket.socket | None = None
        self._failed = False
        #: When ``WATCHDOG=1`` is due next (monotonic seconds).
        self.watchdog_due = time.monotonic() if watchdog is not None else None

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str], pid: int) -> Notifier | None:
        """The notifier the environment asks for (None: not run by systemd as ``Type=notify``);
        removes the variables from ``environ``. Raises ``NotifyError`` on nonsense."""
        value, usec, for_pid = (environ.pop(name, None) for name in VARIABLES)
        watchdog = watchdog_period(usec, for_pid, pid)
        if not value:
            return None
        return cls(address(value), watchdog)

    @property
    def where(self) -> str:
        if isinstance(self.target, bytes):
            return "@" + self.target[1:].decode(errors="replace")
        return str(self.target)

    def send(self, *lines: str) -> bool:
        """Sends ``lines`` as one datagram; False if it could not be (logged the first time)."""
        if self.target is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(message(*lines), self.target)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                error_logger.warning(
                    "Cannot notify systemd at %s (%s); juggler goes on serving, and says"
                    " nothing more of later notifications that fail",
                    self.where,
                    exc.strerror or exc,
                )
            return False
        return True

    def watchdog_wait(self, now: float) -> float | None:
        """Seconds until ``WATCHDOG=1`` is due (None: no watchdog)."""
        if self.watchdog_due is None:
            return None
        return max(0.0, self.watchdog_due - now)

    def keep_alive(self, now: float) -> None:
        """Sends ``WATCHDOG=1`` if it is due."""
        if self.watchdog is None or self.watchdog_due is None or now < self.watchdog_due:
            return
        self.send(WATCHDOG)
        # From now, not from when it was due: a supervisor that was stopped for a while
        # sends one, not a burst.
        self.watchdog_due = now + self.watchdog

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
