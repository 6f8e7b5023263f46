"""``--reload``: a process of its own watches files with watchfiles and tells the supervisor.

The watcher runs in a forked child so that the supervisor keeps no thread (watchfiles' Rust
core starts some) and forks its workers from a single-threaded process. The child writes one
line per batch of changes, the changed paths separated by tabs, on a pipe the supervisor
reads in its loop.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .channel import read_lines
from .forking import fork
from .logging import error_logger

DEFAULT_INCLUDE = ("*.py",)
DEFAULT_EXCLUDE = (".*", "*.py[cod]", "*~", ".*.sw?")


class ReloaderUnavailable(RuntimeError):
    """watchfiles is not installed."""


class FileFilter:
    """Which changed files reload: those matching an include glob and no exclude glob. A glob
    matches the file's name, or its path below the watched directory; a directory's name
    below it excludes what is inside (the watched directory's own parents do not count, so a
    project under ``~/.projects`` still reloads)."""

    def __init__(
        self, include: Sequence[str], exclude: Sequence[str], roots: Sequence[str] = ()
    ) -> None:
        # As with Uvicorn, the globs given add to the defaults.
        self.include = (*DEFAULT_INCLUDE, *include)
        self.exclude = (*DEFAULT_EXCLUDE, *exclude)
        self.roots = tuple(Path(r) for r in roots)

    def __call__(self, change: object, path: str) -> bool:
        p = Path(path)
        rel = self._relative(p)
        if not any(
            fnmatch.fnmatch(p.name, g) or fnmatch.fnmatch(str(rel), g) for g in self.include
        ):
            return False
        return not any(
            fnmatch.fnmatch(str(rel), g) or any(fnmatch.fnmatch(n, g) for n in rel.parts)
            for g in self.exclude
        )

    def _relative(self, path: Path) -> Path:
        for root in self.roots:
            try:
                return path.relative_to(root)
            except ValueError:
                continue
        return Path(path.name)


def check_available() -> None:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ReloaderUnavailable(
            "--reload needs the watchfiles package: pip install 'juggler[reload]'"
        ) from None


def start(
    dirs: Iterable[str], include: Sequence[str], exclude: Sequence[str], close_in_child: list[int]
) -> tuple[int, int]:
    """Forks the watcher; returns its pid and the pipe's read end."""
    directories = [str(Path(d).resolve()) for d in dirs] or [os.getcwd()]
    read_fd, write_fd = os.pipe()
    file_filter = FileFilter(include, exclude, directories)

    def main() -> int:
        _watch(directories, file_filter, write_fd)
        return 0

    pid = fork(main, [*close_in_child, read_fd], "The file watcher")
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    error_logger.info("Watching for file changes in %s", ", ".join(directories))
    return pid, read_fd


def _watch(directories: list[str], file_filter: FileFilter, out: int) -> None:
    import watchfiles

    for changes in watchfiles.watch(*directories, watch_filter=file_filter, raise_interrupt=False):
        paths = sorted({path for _, path in changes})
        os.write(out, ("\t".join(paths) + "\n").encode("utf-8", "surrogateescape"))


def read_changes(fd: int, buffer: bytearray) -> tuple[list[str], bool]:
    """The changed paths the watcher reported, and whether it closed its end."""
    lines, closed = read_lines(fd, buffer)
    return [p for line in lines for p in line.split("\t") if p], closed
