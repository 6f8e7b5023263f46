"""systemd's socket activation: the listening sockets a service manager passed to this process.

The protocol (``sd_listen_fds(3)``): ``LISTEN_FDS`` says how many descriptors were passed,
starting at 3; ``LISTEN_PID`` names the process they are for (a child that inherited the
environment must not take them); ``LISTEN_FDNAMES`` optionally names them, colon-separated.
The variables are read once, by the supervisor, and removed from the environment: the workers
inherit the sockets by forking, and nothing they start (an app's subprocess) may take them.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
from collections.abc import MutableMapping

#: The first descriptor passed (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3
VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


class ActivationError(Exception):
    """The passed descriptors cannot be served; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Passed:
    """One passed descriptor and its name ("" when none was given)."""

    fd: int
    name: str


def take_environment(environ: MutableMapping[str, str], pid: int) -> list[Passed] | None:
    """The descriptors passed to process ``pid`` (None: socket activation is not in use, or
    is meant for another process). Removes the variables from ``environ`` in every case.
    Raises ``ActivationError`` on values that make no sense."""
    count, for_pid, names = (environ.pop(name, None) for name in VARIABLES)
    if count is None:
        return None
    if for_pid is None:
        raise ActivationError("LISTEN_FDS is set but LISTEN_PID is not")
    try:
        wanted_pid = int(for_pid)
    except ValueError:
        raise ActivationError(f"LISTEN_PID is not a process id: {for_pid!r}") from None
    if wanted_pid != pid:
        # Inherited from a parent that was activated itself: not ours to take.
        return None
    try:
        n = int(count)
    except ValueError:
        raise ActivationError(f"LISTEN_FDS is not a number: {count!r}") from None
    if n < 0:
        raise ActivationError(f"LISTEN_FDS is negative: {n}")
    if n == 0:
        return None
    if names is None:
        labels = [""] * n
    else:
        labels = names.split(":")
        if len(labels) != n:
            raise ActivationError(
                f"LISTEN_FDNAMES has {len(labels)} name(s) for {n} descriptor(s): {names!r}"
            )
    return [Passed(LISTEN_FDS_START + i, label) for i, label in enumerate(labels)]


def adopt(passed: Passed) -> socket.socket:
    """A socket object for a passed descriptor, checked to be a listening stream socket of a
    family juggler serves; close-on-exec from now on, so that an app's subprocesses do not
    keep the service's socket."""
    what = f"socket activation: descriptor {passed.fd}" + (
        f" ({passed.name})" if passed.name else ""
    )
    try:
        mode = os.fstat(passed.fd).st_mode
    except OSError as exc:
        raise ActivationError(f"{what} is not open: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ActivationError(f"{what} is not a socket")
    sock = socket.socket(fileno=passed.fd)
    try:
        if sock.family not in FAMILIES:
            raise ActivationError(f"{what} is a {_name(sock.family)} socket, not TCP or UNIX")
        if sock.type != socket.SOCK_STREAM:
            raise ActivationError(f"{what} is not a stream socket ({_name(sock.type)})")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ActivationError(f"{what} is not listening")
    except ActivationError:
        # The descriptor belongs to the service manager's protocol: leave it open.
        sock.detach()
        raise
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock


def _name(constant: int) -> str:
    # An unknown family or type comes back as a plain int.
    return getattr(constant, "name", str(constant))
