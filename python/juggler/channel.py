"""What a worker tells its supervisor, one line per message on a pipe.

``ready``                   the app is loaded, its lifespan started, the server accepts
``beat``                    the event loop turned (sent every ``beat_interval`` seconds)
``beat SECONDS WHAT``       the same, while a WSGI call ``WHAT`` has made no progress for so long
``recycle REQUESTS``        ``--max-requests`` reached: replace me

The worker writes without blocking: if the supervisor fell behind by a whole pipe buffer, a
heartbeat is dropped rather than stalling the event loop (the next one carries the same news).

The other way, the supervisor signals: SIGTERM (drain), SIGQUIT (stop at once), and
``LEAVE_SIGNAL`` (fail health checks from now on, and go on serving: ``--shutdown-delay``).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal

#: The supervisor tells a ready worker to fail its health checks while it goes on serving.
#: Ignored in a worker until its handler is installed (``forking.py``), so that a worker still
#: loading its app is not killed by it.
LEAVE_SIGNAL = signal.SIGUSR1


def beat_interval(timeout_worker: float) -> float:
    """How often a worker reports, so that a few beats fit in one ``--timeout-worker``."""
    if timeout_worker <= 0:
        return 1.0
    return min(1.0, max(0.01, timeout_worker / 4))


class WorkerChannel:
    """The worker's end: a non-blocking pipe to the supervisor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def ready(self) -> None:
        self._send("ready")

    def beat(self, longest_call: tuple[float, str] | None) -> None:
        if longest_call is None:
            self._send("beat")
        else:
            age, what = longest_call
            # Short enough to be written whole: a pipe takes up to 4 KiB at once.
            self._send(f"beat {age:.3f} {what[:512]}")

    def recycle(self, requests: int) -> None:
        self._send(f"recycle {requests}")

    def _send(self, line: str) -> None:
        data = (line.replace("\n", " ") + "\n").encode("utf-8", "replace")
        try:
            os.write(self.fd, data)
        except BlockingIOError:
            pass
        except OSError as exc:
            # The supervisor is gone; the worker notices through its parent-death signal.
            if exc.errno != errno.EPIPE:
                raise


@dataclasses.dataclass
class Message:
    kind: str
    #: ``beat``: how long the oldest WSGI call has gone without progress, and what it serves.
    call_age: float | None = None
    call: str = ""
    #: ``recycle``: requests taken so far.
    requests: int = 0


class SupervisorChannel:
    """The supervisor's end: reads whole lines as they come."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self._buffer = bytearray()

    def read(self) -> tuple[list[Message], bool]:
        """The messages that arrived, and whether the worker closed its end."""
        lines, closed = read_lines(self.fd, self._buffer)
        return [parse(line) for line in lines if line], closed

    def close(self) -> None:
        os.close(self.fd)


def read_lines(fd: int, buffer: bytearray) -> tuple[list[str], bool]:
    """Reads what a non-blocking pipe holds into ``buffer``; returns the whole lines taken
    out of it, and whether the writer closed its end (a partial line stays for next time)."""
    closed = False
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            closed = True
            break
        buffer += chunk
    *lines, rest = bytes(buffer).split(b"\n")
    buffer[:] = rest
    return [line.decode("utf-8", "replace") for line in lines], closed


def parse(line: str) -> Message:
    kind, _, rest = line.partition(" ")
    if kind == "beat" and rest:
        age, _, what = rest.partition(" ")
        try:
            return Message("beat", call_age=float(age), call=what)
        except ValueError:
            return Message("beat")
    if kind == "recycle":
        try:
            return Message("recycle", requests=int(rest))
        except ValueError:
            return Message("recycle")
    return Message(kind)
