"""The supervisor: binds the sockets, forks the workers, and then only watches over them.

It restarts a worker that dies, kills one whose event loop stopped turning, recycles one whose
WSGI call hangs or that reached --max-requests, reloads on SIGHUP and on file changes, adds
and removes workers on SIGTTIN/SIGTTOU, and drains on SIGTERM/SIGINT. Signal handlers only
queue the signal; one loop (``Supervisor.run``) acts on everything. The supervisor imports
no app code (unless --preload) and starts no thread and no Tokio runtime, so forking it is safe.
"""

from __future__ import annotations

import collections
import errno
import os
import selectors
import signal
import socket
import time
from typing import Any

from . import _juggler, metrics_endpoint, reloader, tls
from . import logging as jlogging
from .channel import Message, beat_interval
from .children import WorkerProcess, WorkerSpec, read_stacks, spawn
from .config import Config, ConfigError
from .exit_codes import EXIT_APP_LOAD, EXIT_BAD_OPTION, EXIT_BIND_FAILED, EXIT_OK
from .fatal import fatal, install_fatal_formatter
from .importer import ImportFromStringError, load_app
from .interfaces import resolve_interface
from .logging import error_logger
from .metrics_endpoint import MetricsBindError, MetricsEndpoint
from .rlimits import raise_open_files_limit
from .sockets import BindError, bind, describe, reserve_reuse_port

#: Workers that can share their connection counts, at least (workers beyond the slots, added
#: with SIGTTIN, run unbalanced).
MIN_LOAD_SLOTS = 8
#: Workers that can be counted by --metrics-bind, at least.
MIN_METRICS_SLOTS = 64
#: Consecutive start failures of replacement workers after which the supervisor gives up.
MAX_START_FAILURES = 5
#: A worker asked to stop gracefully is killed this long after the graceful timeout (it gives
#: apps 1 s to end after their disconnect, waits up to 5 s for cancelled tasks, and runs the
#: lifespan shutdown).
STOP_MARGIN = 10.0
#: A worker that dies this soon after it became ready counts as failing to start (back-off).
CRASH_WINDOW = 2.0
#: A worker asked to stop at once (SIGQUIT) is killed after this long.
FAST_STOP_TIMEOUT = 5.0
#: Why a worker is replaced: it died, hung (--timeout-worker), reached --max-requests, or a
#: reload replaced it.
RESTART_REASONS = ("died", "timeout", "recycled", "reload")
HANDLED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)


def run(config: Config) -> int:
    """Runs juggler with ``config`` until it is stopped; returns the exit code."""
    if config.log_config:
        try:
            jlogging.load_config(config.log_config)
        except jlogging.LogConfigError as exc:
            jlogging.configure(config.log_level)
            install_fatal_formatter()
            fatal(str(exc))
            return EXIT_BAD_OPTION
    jlogging.configure(config.log_level)
    install_fatal_formatter()
    raise_open_files_limit()
    problem = _check_environment(config)
    if problem:
        message, code = problem
        fatal(message)
        return code
    app = None if isinstance(config.app, str) else config.app
    if config.preload and app is None:
        try:
            app = load_app(config.app, factory=config.factory, app_dir=config.app_dir)
            resolve_interface(app, config.interface, name=config.app)
        except ImportFromStringError as exc:
            fatal(str(exc))
            return EXIT_APP_LOAD
    reserved: socket.socket | None = None
    metrics_sock: socket.socket | None = None
    # A slot per worker, with room for the new workers of a reload (which start while the old
    # ones still hold theirs) and for workers added by SIGTTIN. The shared connection counts
    # have an eventfd per slot in every process, so fewer; a metrics slot is 7 KiB.
    load_slots = max(MIN_LOAD_SLOTS, 2 * int(config.workers))
    slots = max(MIN_METRICS_SLOTS, 4 * int(config.workers)) if config.metrics_bind else load_slots
    try:
        metrics = _juggler.Metrics(slots) if config.metrics_bind else None
        if config.reuse_port:
            reserved = reserve_reuse_port(config.host, config.port)
            host, port = reserved.getsockname()[:2]
            spec = WorkerSpec(config, None, (host, port), app, None, metrics, slots)
            where = describe(reserved, tls=bool(config.ssl_certfile))
        else:
            sock = bind(config)
            load = _juggler.LoadSlots(load_slots)
            spec = WorkerSpec(config, sock, None, app, load, metrics, slots)
            where = describe(sock, tls=bool(config.ssl_certfile))
        if config.metrics_bind:
            metrics_sock = metrics_endpoint.bind(config.metrics_bind)
    except (BindError, MetricsBindError) as exc:
        fatal(str(exc))
        return EXIT_BIND_FAILED
    except OSError as exc:
        fatal(f"cannot set up the workers' shared state: {exc}")
        return EXIT_BIND_FAILED
    try:
        return Supervisor(config, spec, where, metrics_sock).run()
    finally:
        for s in (spec.sock, reserved, metrics_sock):
            if s is not None:
                s.close()


def _check_environment(config: Config) -> tuple[str, int] | None:
    """What would make every worker fail, or cannot work, found once here instead: the
    message and the exit code."""
    if config.reload and not isinstance(config.app, str):
        return (
            "--reload needs the app as an import string ('module:attribute') to re-import it",
            EXIT_BAD_OPTION,
        )
    if config.reload and config.preload:
        return (
            "--reload and --preload cannot be used together: preloaded code never reloads",
            EXIT_BAD_OPTION,
        )
    if config.reload:
        try:
            reloader.check_available()
        except reloader.ReloaderUnavailable as exc:
            return str(exc), EXIT_BAD_OPTION
    if config.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "--loop uvloop was asked for, but uvloop is not installed", EXIT_BIND_FAILED
    try:
        tls.settings(config)
    except ConfigError as exc:
        return str(exc), EXIT_BAD_OPTION
    try:
        # What the Rust core checks of the options (an access log format, say), once here.
        _juggler.CoreConfig(**config.core_options())
    except ValueError as exc:
        return str(exc).removeprefix("invalid option: "), EXIT_BAD_OPTION
    return None


class Supervisor:
    def __init__(
        self,
        config: Config,
        spec: WorkerSpec,
        where: str,
        metrics_sock: socket.socket | None = None,
    ) -> None:
        self.config = config
        self.spec = spec
        self.where = where
        self.target = int(config.workers)
        self.workers: dict[int, WorkerProcess] = {}
        self.signals: collections.deque[int] = collections.deque()
        self.selector = selectors.DefaultSelector()
        #: "graceful" or "fast" once stopping.
        self.stopping: str | None = None
        self.exit_code = EXIT_OK
        #: A worker has been ready once: the app can start, so a later death is respawned.
        self.ever_ready = False
        self.announced = False
        self.start_failures = 0
        self.respawn_at = 0.0
        self.reloader_pid: int | None = None
        self.reloader_fd: int | None = None
        self.reloader_buffer = bytearray()
        self._wakeup_r, self._wakeup_w = os.pipe()
        self._pid_file_written = False
        self._last_check = time.monotonic()
        self.metrics_sock = metrics_sock
        self.metrics: MetricsEndpoint | None = None
        #: Workers replaced, by why (for the metrics; every reason from 0, so that a scraper
        #: sees the first one as an increase).
        self.restarts: collections.Counter[str] = collections.Counter(
            {reason: 0 for reason in RESTART_REASONS}
        )

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(self._wakeup_w, False)
        signal.set_wakeup_fd(self._wakeup_w)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._queue_signal)
        self.selector.register(self._wakeup_r, selectors.EVENT_READ)
        if self.metrics_sock is not None:
            self.metrics = MetricsEndpoint(self.metrics_sock, self.selector, self._render_metrics)
            error_logger.info(
                "Metrics on %s%s", self.metrics.address, metrics_endpoint.METRICS_PATH
            )
        try:
            self._write_pid_file()
        except OSError as exc:
            fatal(f"cannot write --pid file {self.config.pid}: {exc.strerror or exc}")
            self._cleanup()
            return EXIT_BAD_OPTION
        try:
            if self.config.reload:
                self._start_reloader()
            self._spawn(announce=True)
            while self.workers or not self.stopping:
                self._wait()
                self._handle_signals()
                self._reap()
                self._enforce_stop_deadlines()
                if self.stopping:
                    continue
                self._check_health()
                self._retire_replaced()
                self._maintain()
        finally:
            self._cleanup()
        return self.exit_code

    def _queue_signal(self, signum: int, frame: Any) -> None:
        # Runs between two bytecodes of the loop; the wake-up fd interrupts its select().
        self.signals.append(signum)

    def _wait(self) -> None:
        timeout = beat_interval(self.config.timeout_worker) / 2
        for key, mask in self.selector.select(timeout):
            if key.fd == self._wakeup_r:
                try:
                    while os.read(self._wakeup_r, 512):
                        pass
                except BlockingIOError:
                    pass
            elif key.fd == self.reloader_fd:
                self._read_reloader()
            elif self.metrics is not None and self.metrics.owns(key):
                self.metrics.on_ready(key, mask)
            else:
                self._read_worker(key.data)
        if self.metrics is not None:
            self.metrics.expire()

    def _render_metrics(self, openmetrics: bool) -> tuple[str, str]:
        assert self.spec.metrics is not None
        workers = [(w.slot, w.pid) for w in self.workers.values() if w.slot is not None]
        restarts = sorted(self.restarts.items())
        content_type, text = self.spec.metrics.render(workers, restarts, openmetrics)
        return content_type, text

    # -- workers --------------------------------------------------------------------------

    def _spawn(self, announce: bool = False) -> WorkerProcess | None:
        try:
            worker = spawn(self.spec, announce, self._descriptors(), self._free_slot())
        except OSError as exc:
            # Out of processes, memory or descriptors: try again later, like a start failure.
            self.start_failures += 1
            self._back_off(f"Cannot start a worker: {exc}")
            if not self.workers and not self.ever_ready:
                self.exit_code = EXIT_BIND_FAILED
                self._begin_stop("fast", quiet=True)
            return None
        self.workers[worker.pid] = worker
        self.selector.register(worker.channel.fd, selectors.EVENT_READ, worker)
        if worker.slot is None and self.spec.metrics is not None:
            error_logger.warning(
                "Worker [%d] is not counted by --metrics-bind: all %d slots are taken",
                worker.pid,
                len(self.spec.metrics),
            )
        error_logger.debug("Started worker [%d] (load slot %s)", worker.pid, worker.slot)
        return worker

    def _free_slot(self) -> int | None:
        used = {w.slot for w in self.workers.values()}
        return next((i for i in range(self.spec.slot_count) if i not in used), None)

    def _release_slot(self, worker: WorkerProcess) -> None:
        slots = self.spec.slots
        if worker.slot is not None and slots is not None and worker.slot < len(slots):
            slots.clear(worker.slot)

    def _descriptors(self) -> list[int]:
        """The supervisor's descriptors a new child must close."""
        fds = [self._wakeup_r, self._wakeup_w, self.selector.fileno()]
        if self.metrics is not None:
            fds += self.metrics.fds()
        for w in self.workers.values():
            fds += [w.channel.fd, w.dump_fd]
        if self.reloader_fd is not None:
            fds.append(self.reloader_fd)
        return fds

    def _read_worker(self, worker: WorkerProcess) -> None:
        messages, closed = worker.channel.read()
        for message in messages:
            self._on_message(worker, message)
        if closed and worker.channel.fd in self.selector.get_map():
            self.selector.unregister(worker.channel.fd)

    def _on_message(self, worker: WorkerProcess, message: Message) -> None:
        now = time.monotonic()
        if message.kind == "ready":
            worker.ready = True
            worker.ready_at = now
            worker.last_beat = now
            self.ever_ready = True
            error_logger.info("Worker [%d] started", worker.pid)
            self._announce_when_all_ready()
        elif message.kind == "beat":
            worker.last_beat = now
            worker.stalled_call = (
                (message.call_age, message.call) if message.call_age is not None else None
            )
        elif (
            message.kind == "recycle"
            and worker.active
            and not self.stopping
            and now >= self.respawn_at
        ):
            error_logger.info(
                "Recycling worker [%d] after %d requests (--max-requests)",
                worker.pid,
                message.requests,
            )
            worker.retiring = True
            worker.retire_reason = "recycled"

    def _announce_when_all_ready(self) -> None:
        if self.announced:
            return
        if sum(1 for w in self.workers.values() if w.ready and w.active) >= self.target:
            self.announced = True
            error_logger.info("juggler running on %s (Press CTRL+C to quit)", self.where)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.reloader_pid:
                self._on_reloader_exit(status)
            elif pid in self.workers:
                self._on_worker_exit(self.workers.pop(pid), status)

    def _on_worker_exit(self, worker: WorkerProcess, status: int) -> None:
        # Messages the worker wrote before it died (a "ready" among them) still count.
        self._read_worker(worker)
        if worker.channel.fd in self.selector.get_map():
            self.selector.unregister(worker.channel.fd)
        worker.close()
        self._release_slot(worker)
        if self.spec.metrics is not None and worker.slot is not None:
            self.spec.metrics.clear(worker.slot)
        how = _describe_status(status)
        code = os.waitstatus_to_exitcode(status)
        if worker.stop_sent is not None:
            if code > 0 and self.exit_code == EXIT_OK and worker.shut_down and worker.ready:
                # A worker that failed its own shutdown (lifespan.shutdown.failed) says so
                # through the supervisor's exit code.
                self.exit_code = code
            level = error_logger.info if code == 0 or worker.killed else error_logger.warning
            level("Worker [%d] stopped (%s)", worker.pid, how)
            return
        crashed_at_once = (
            worker.ready
            and time.monotonic() - worker.ready_at < CRASH_WINDOW
            and not _killed_from_outside(status)
        )
        if worker.ready and not self.stopping:
            # Also one that was to be replaced: it was not stopped, so not counted yet.
            self.restarts["died"] += 1
        if worker.ready and not crashed_at_once:
            error_logger.error(
                "Worker [%d] died unexpectedly (%s); starting a replacement", worker.pid, how
            )
            return
        # It died before it was ready, or right after: its app cannot start or keep running.
        failed_code = code if code > 0 else 1
        if any(w.retiring and w.stop_sent is None for w in self.workers.values()):
            self._abandon_replacement(worker, how)
        elif not self.ever_ready:
            if code < 0:
                error_logger.error("Worker [%d] died before it was ready (%s)", worker.pid, how)
            self.exit_code = failed_code
            self._begin_stop("fast", quiet=True)
        elif time.monotonic() < self.respawn_at:
            # Another failure of the same round: logged, counted once.
            error_logger.error("Worker [%d] failed to start (%s)", worker.pid, how)
        else:
            # Replacements that fail together count once: back-off rounds are what count.
            self.start_failures += 1
            if self.start_failures >= MAX_START_FAILURES:
                error_logger.error(
                    "Workers failed to start %d times in a row (the last %s); stopping",
                    self.start_failures,
                    how,
                )
                self.exit_code = failed_code
                self._begin_stop("graceful")
                return
            what = "died right after it started" if worker.ready else "failed to start"
            self._back_off(f"Worker [{worker.pid}] {what} ({how})")

    def _back_off(self, what: str) -> None:
        delay = min(0.25 * 2 ** (self.start_failures - 1), 10.0)
        error_logger.error("%s; trying again in %.1f s", what, delay)
        self.respawn_at = time.monotonic() + delay

    def _abandon_replacement(self, worker: WorkerProcess, how: str) -> None:
        """A new worker (reload, recycling) could not start: keep the ones that serve."""
        error_logger.error(
            "Worker [%d] failed to start (%s); the running workers keep serving the code they have",
            worker.pid,
            how,
        )
        for w in self.workers.values():
            if w.stop_sent is not None:
                continue
            if not w.ready:
                # The other new ones would load the same broken code.
                self._stop_worker(w, signal.SIGKILL)
            elif w.retiring:
                w.retiring = False
        # A recycling worker asks again with each beat: without a pause this would fork and
        # fail once a second for as long as the code on disk cannot start.
        self.start_failures += 1
        self._back_off("Replacing workers is paused")

    def _maintain(self) -> None:
        now = time.monotonic()
        if self.start_failures and any(
            w.ready and now - w.ready_at >= CRASH_WINDOW for w in self.workers.values()
        ):
            # A worker got past its first moments: the app starts again.
            self.start_failures = 0
        active = [w for w in self.workers.values() if w.active]
        missing = self.target - len(active)
        if missing > 0:
            if not self.ever_ready and active:
                return  # The first worker starts alone, so a broken app is reported once.
            if time.monotonic() < self.respawn_at:
                return
            for _ in range(missing):
                if self._spawn() is None:
                    break
        elif missing < 0:
            for w in sorted(active, key=lambda w: (w.ready, w.started))[:-missing]:
                error_logger.info("Stopping worker [%d] (fewer workers asked for)", w.pid)
                self._stop_worker(w, signal.SIGTERM)

    def _retire_replaced(self) -> None:
        retiring = [w for w in self.workers.values() if w.retiring and w.stop_sent is None]
        if not retiring:
            return
        ready = sum(1 for w in self.workers.values() if w.active and w.ready)
        if ready >= self.target:
            for w in retiring:
                # Counted now that its replacement serves: a reload whose new workers fail
                # replaces nothing.
                self.restarts[w.retire_reason or "reload"] += 1
                self._stop_worker(w, signal.SIGTERM)

    def _stop_worker(self, worker: WorkerProcess, sig: int) -> None:
        # Siblings stop leaving connections for it at once (it also says so itself when it
        # stops accepting, but a stuck one cannot).
        self._release_slot(worker)
        worker.stop_sent = time.monotonic()
        worker.killed = worker.killed or sig == signal.SIGKILL
        worker.signal(sig)

    # -- hung workers ---------------------------------------------------------------------

    def _check_health(self) -> None:
        limit = float(self.config.timeout_worker)
        if limit <= 0:
            return
        now = time.monotonic()
        if now - self._last_check > limit / 2:
            # The supervisor itself was stopped (Ctrl+Z, a debugger) or starved: the workers'
            # beats went unread, which says nothing about them.
            for worker in self.workers.values():
                worker.last_beat = max(worker.last_beat, now)
        self._last_check = now
        for worker in list(self.workers.values()):
            if not worker.ready or worker.stop_sent is not None:
                continue
            silent = now - worker.last_beat
            if silent > limit:
                stacks = read_stacks(worker)
                error_logger.error(
                    "Worker [%d] timed out: its event loop has not turned for %.1f s"
                    " (--timeout-worker %g); killing it. Its threads were at:\n%s",
                    worker.pid,
                    silent,
                    limit,
                    stacks or "(no stack received)",
                )
                worker.killed = True
                self._stop_worker(worker, signal.SIGKILL)
                self.restarts["timeout"] += 1
                continue
            if worker.stalled_call is not None and not worker.retiring and now >= self.respawn_at:
                age, what = worker.stalled_call
                age += silent
                if age > limit:
                    stacks = read_stacks(worker)
                    error_logger.error(
                        "Worker [%d] timed out: the WSGI call %s has made no progress for"
                        " %.1f s (--timeout-worker %g); threads cannot be cancelled, so the"
                        " worker is replaced. Its threads were at:\n%s",
                        worker.pid,
                        what,
                        age,
                        limit,
                        stacks or "(no stack received)",
                    )
                    worker.retiring = True
                    worker.retire_reason = "timeout"

    # -- stopping -------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.popleft()
            if sig == signal.SIGCHLD:
                continue  # _reap runs on every turn
            name = signal.Signals(sig).name
            if sig in (signal.SIGTERM, signal.SIGINT):
                if self.stopping and sig == signal.SIGINT:
                    error_logger.info("Received SIGINT again: stopping at once")
                    self._begin_stop("fast")
                elif not self.stopping:
                    error_logger.info("Received %s: shutting down gracefully", name)
                    self._begin_stop("graceful")
            elif sig == signal.SIGQUIT:
                error_logger.info("Received SIGQUIT: stopping at once")
                self._begin_stop("fast")
            elif self.stopping:
                continue
            elif sig == signal.SIGHUP:
                self._reload("Received SIGHUP")
            elif sig == signal.SIGTTIN:
                self.target += 1
                error_logger.info("Received SIGTTIN: %d workers", self.target)
            elif sig == signal.SIGTTOU:
                if self.target > 1:
                    self.target -= 1
                error_logger.info("Received SIGTTOU: %d worker(s)", self.target)

    def _begin_stop(self, how: str, quiet: bool = False) -> None:
        if self.stopping == "fast" or self.stopping == how:
            return
        self.stopping = how
        sig = signal.SIGTERM if how == "graceful" else signal.SIGQUIT
        self._close_gate()
        if self.workers and not quiet:
            error_logger.info(
                "Waiting for %d worker(s) to %s",
                len(self.workers),
                "finish their requests" if how == "graceful" else "stop",
            )
        for w in self.workers.values():
            w.shut_down = True
            if w.killed or (sig == signal.SIGTERM and w.stop_sent is not None):
                continue
            # A worker still loading the app has no handler yet: SIGQUIT would dump core.
            self._stop_worker(w, sig if w.ready or sig == signal.SIGTERM else signal.SIGKILL)
        if self.reloader_pid is not None:
            _kill_quietly(self.reloader_pid, signal.SIGTERM)

    def _close_gate(self) -> None:
        """From now on the kernel completes no new connection on the shared socket, and the
        workers serve the ones already queued before they stop (``src/transport/gate.rs``):
        otherwise closing the socket would reset them, requests and all."""
        sock = self.spec.sock
        if sock is None or sock.family == socket.AF_UNIX:
            return
        try:
            _juggler.close_gate(sock.fileno())
        except OSError as exc:
            error_logger.debug("Cannot close the listening socket's gate: %s", exc)

    def _enforce_stop_deadlines(self) -> None:
        now = time.monotonic()
        graceful = float(self.config.timeout_graceful_shutdown) + STOP_MARGIN
        for w in self.workers.values():
            if w.killed or w.stop_sent is None:
                continue
            allowed = FAST_STOP_TIMEOUT if self.stopping == "fast" else graceful
            if now - w.stop_sent > allowed:
                error_logger.warning(
                    "Worker [%d] did not stop within %.0f s; killing it", w.pid, allowed
                )
                w.killed = True
                w.signal(signal.SIGKILL)

    def _cleanup(self) -> None:
        # On an unexpected error in the loop: no worker may be left behind.
        for w in self.workers.values():
            w.signal(signal.SIGKILL)
        for pid in list(self.workers):
            _wait_quietly(pid)
            self.workers.pop(pid).close()
        if self.reloader_pid is not None:
            _kill_quietly(self.reloader_pid, signal.SIGKILL)
            _wait_quietly(self.reloader_pid)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        if self.metrics is not None:
            self.metrics.close()
        self.selector.close()
        for fd in (self._wakeup_r, self._wakeup_w, self.reloader_fd):
            if fd is not None:
                os.close(fd)
        self._remove_pid_file()

    # -- reloading ------------------------------------------------------------------------

    def _reload(self, why: str) -> None:
        old = [w for w in self.workers.values() if w.active]
        if self.spec.app is not None:
            error_logger.warning(
                "%s: restarting %d worker(s); the app was loaded in the supervisor"
                " (--preload or an app object), so its code does not change",
                why,
                len(old),
            )
        else:
            error_logger.info("%s: starting %d new worker(s)", why, self.target)
        for w in old:
            w.retiring = True
            w.retire_reason = w.retire_reason or "reload"
        self.respawn_at = 0.0

    def _start_reloader(self) -> None:
        config = self.config
        self.reloader_pid, self.reloader_fd = reloader.start(
            config.reload_dir or [config.app_dir if config.app_dir != "." else os.getcwd()],
            config.reload_include,
            config.reload_exclude,
            self._descriptors(),
        )
        self.selector.register(self.reloader_fd, selectors.EVENT_READ)

    def _read_reloader(self) -> None:
        assert self.reloader_fd is not None
        paths, closed = reloader.read_changes(self.reloader_fd, self.reloader_buffer)
        if closed:
            self.selector.unregister(self.reloader_fd)
        if paths and not self.stopping:
            shown = ", ".join(os.path.relpath(p) for p in paths[:3])
            more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            self._reload(f"Detected changes in {shown}{more}")

    def _on_reloader_exit(self, status: int) -> None:
        self.reloader_pid = None
        if not self.stopping:
            error_logger.error(
                "The file watcher exited (%s); --reload no longer works", _describe_status(status)
            )

    # -- pid file -------------------------------------------------------------------------

    def _write_pid_file(self) -> None:
        if self.config.pid:
            with open(self.config.pid, "w") as f:
                f.write(f"{os.getpid()}\n")
            self._pid_file_written = True

    def _remove_pid_file(self) -> None:
        if self.config.pid and self._pid_file_written:
            try:
                os.unlink(self.config.pid)
            except FileNotFoundError:
                pass


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _killed_from_outside(status: int) -> bool:
    """SIGKILL or SIGTERM from someone else (an operator, the OOM killer): not the app's own
    crash, so no reason to slow down replacing it."""
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGKILL, signal.SIGTERM)


def _kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_quietly(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    except OSError as exc:
        if exc.errno != errno.ECHILD:
            raise
