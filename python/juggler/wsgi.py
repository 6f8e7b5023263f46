"""What the WSGI side needs from Python: ``wsgi.errors``, a stream onto ``juggler.error``."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from .logging import error_logger


class ErrorStream:
    """``environ["wsgi.errors"]``: text written here becomes ERROR lines on ``juggler.error``.

    Writes are buffered per thread until a newline or ``flush()``, so that an app writing a
    message in pieces still logs one line, and two threads never mix their pieces.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def _buffer(self) -> list[str]:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = []
        return buf

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors.write() takes str, not {type(text).__name__}")
        buf = self._buffer()
        buf.append(text)
        if "\n" in text:
            joined = "".join(buf)
            *lines, rest = joined.split("\n")
            buf[:] = [rest] if rest else []
            for line in lines:
                error_logger.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        buf = self._buffer()
        if buf:
            error_logger.error("%s", "".join(buf))
            buf.clear()
