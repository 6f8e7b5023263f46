"""Worker processes: the supervisor's record of each, forking one, and what runs in it.

A worker loads the app (unless it was preloaded), binds its own socket with --reuse-port,
and runs a ``Worker`` that reports to the supervisor over a pipe (``channel.py``).
"""

from __future__ import annotations

import dataclasses
import faulthandler
import os
import random
import select
import signal
import socket
import time
from collections.abc import Iterable
from typing import Any

from . import _juggler
from .channel import SupervisorChannel, WorkerChannel
from .config import Config
from .exit_codes import EXIT_APP_LOAD, EXIT_BIND_FAILED, EXIT_STARTUP_FAILED
from .fatal import fatal
from .forking import fork
from .hooks import HookFailed, Hooks
from .importer import ImportFromStringError, load_app
from .interfaces import describe_interface, resolve_interface
from .logging import error_logger
from .policy import WorkerRecord
from .sockets import BindError, bind_reuse_port
from .worker import Worker

#: The supervisor asks a worker for the Python stacks of all its threads with this signal
#: (answered by faulthandler from C, so a worker stuck in a CPU loop answers too).
DUMP_SIGNAL = signal.SIGUSR2
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(kw_only=True)
class WorkerProcess(WorkerRecord):
    """The supervisor's record of one worker (its phase and times: ``WorkerRecord``) and the
    process's ends: its pipes."""

    #: Its place in the shared connection counts and metrics (None: beyond them).
    slot: int | None
    channel: SupervisorChannel
    #: Where the worker's faulthandler writes its stacks.
    dump_fd: int

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass  # It exited; waitpid will tell.

    def rss(self) -> int | None:
        """Its resident memory in bytes, from /proc (None once it is gone): one small read,
        which costs the worker nothing."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                resident_pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return resident_pages * PAGE_SIZE

    def close(self) -> None:
        self.channel.close()
        os.close(self.dump_fd)


@dataclasses.dataclass
class WorkerSpec:
    """What every worker is started with."""

    config: Config
    #: The shared listening socket, or None with --reuse-port (each worker binds its own).
    sock: socket.socket | None
    #: With --reuse-port: the address each worker binds (the port resolved by the supervisor).
    reuse_port_address: tuple[str, int] | None
    #: The preloaded app (or an app object given to juggler.run()), else None.
    app: Any
    #: Where workers sharing ``sock`` publish their connection counts (None with
    #: --reuse-port, where the kernel spreads connections itself).
    slots: _juggler.LoadSlots | None = None
    #: Where workers count what --metrics-bind serves (None without it).
    metrics: _juggler.Metrics | None = None
    #: How many worker slots there are: the metrics' (when on), else the connection counts'.
    slot_count: int = 0
    #: The user's hooks (worker_start and worker_exit run in the worker).
    hooks: Hooks | None = None


def spawn(
    spec: WorkerSpec, announce: bool, close_in_child: Iterable[int], slot: int | None
) -> WorkerProcess:
    """Forks a worker. ``announce``: it logs which interface it serves (the first one does).
    ``close_in_child``: the supervisor's descriptors the child must not keep. ``slot``: its
    place in ``spec.slots`` and ``spec.metrics``."""
    channel_r, channel_w = os.pipe()
    try:
        dump_r, dump_w = os.pipe()
    except OSError:
        os.close(channel_r)
        os.close(channel_w)
        raise
    try:
        pid = fork(
            lambda: _worker_main(spec, announce, channel_w, dump_w, slot),
            [*close_in_child, channel_r, dump_r],
            "Worker",
        )
    except OSError:
        for fd in (channel_r, channel_w, dump_r, dump_w):
            os.close(fd)
        raise
    os.close(channel_w)
    os.close(dump_w)
    os.set_blocking(dump_r, False)
    return WorkerProcess(
        pid=pid,
        slot=slot,
        channel=SupervisorChannel(channel_r),
        dump_fd=dump_r,
        started=time.monotonic(),
    )


def _worker_main(
    spec: WorkerSpec, announce: bool, channel_w: int, dump_w: int, slot: int | None
) -> int:
    faulthandler.register(DUMP_SIGNAL, file=dump_w, all_threads=True, chain=False)
    config = spec.config
    app = spec.app
    hooks = spec.hooks or Hooks(config)
    try:
        # Before the app is imported, so that what the hook sets up (a tracer provider, an
        # error reporter) is there for the app's module-level code; and after the fork, as
        # their threads and connections would not survive it.
        hooks.run("worker_start")
    except HookFailed as exc:
        fatal(str(exc))
        return EXIT_STARTUP_FAILED
    try:
        if app is None:
            app = load_app(config.app, factory=config.factory, app_dir=config.app_dir)
        interface, how = resolve_interface(
            app, config.interface, name=config.app if isinstance(config.app, str) else None
        )
    except ImportFromStringError as exc:
        fatal(str(exc))
        return EXIT_APP_LOAD
    if announce:
        error_logger.info("%s", describe_interface(config, interface, how))
        if interface == "wsgi" and (config.loop_watchdog or config.max_loop_lag):
            error_logger.warning(
                "--loop-watchdog and --max-loop-lag watch the event loop, which runs no WSGI"
                " code: they are ignored (--timeout-worker watches WSGI calls)."
            )
    sock = spec.sock
    if sock is None:
        assert spec.reuse_port_address is not None
        try:
            sock = bind_reuse_port(*spec.reuse_port_address, config.backlog)
        except BindError as exc:
            fatal(str(exc))
            return EXIT_BIND_FAILED
    max_requests = config.max_requests
    if max_requests:
        max_requests += random.randint(0, config.max_requests_jitter)
    # The connection counts have fewer slots than the metrics: a worker beyond them runs
    # unbalanced.
    load_slot = (
        (spec.slots, slot)
        if spec.slots is not None and slot is not None and slot < len(spec.slots)
        else None
    )
    metrics_slot = (spec.metrics, slot) if spec.metrics is not None and slot is not None else None
    worker = Worker(
        config,
        sock,
        app,
        interface,
        WorkerChannel(channel_w),
        max_requests,
        load_slot,
        metrics_slot,
        on_exit=lambda: hooks.run_logged("worker_exit"),
    )
    try:
        return worker.run()
    except RuntimeError as exc:
        fatal(str(exc))
        return EXIT_BIND_FAILED


def read_stacks(worker: WorkerProcess, wait: float = 1.0) -> str:
    """Asks ``worker`` for its threads' Python stacks; returns what it wrote within ``wait``
    seconds (faulthandler writes them from the signal handler, at once)."""
    worker.signal(DUMP_SIGNAL)
    chunks: list[bytes] = []
    deadline = time.monotonic() + wait
    while True:
        # Once something came, a short silence means the dump is complete.
        timeout = 0.1 if chunks else deadline - time.monotonic()
        if timeout <= 0:
            break
        readable, _, _ = select.select([worker.dump_fd], [], [], timeout)
        if not readable:
            break
        try:
            chunk = os.read(worker.dump_fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            break
        chunks.append(chunk)
        if time.monotonic() > deadline:
            break
    return b"".join(chunks).decode("utf-8", "replace").rstrip()
