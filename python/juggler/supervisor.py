"""The supervisor: binds the sockets, forks the workers, and then only watches over them.

It restarts a worker that dies, kills one whose event loop stopped turning, recycles one whose
WSGI call hangs or that reached --max-requests, reloads on SIGHUP and on file changes, adds
and removes workers on SIGTTIN/SIGTTOU, and drains on SIGTERM/SIGINT. Signal handlers only
queue the signal; one loop (``Supervisor.run``) acts on everything. What to do is decided by
``policy.Policy``, which makes no system call; this module carries its decisions out. The
supervisor imports no app code (unless --preload; the modules of the user's hooks, yes) and
starts no thread and no Tokio runtime, so forking it is safe. With --max-worker-memory it also
reads each serving worker's RSS from /proc about once a second.
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

from . import _juggler, activation, hooks, metrics_endpoint, reloader, sd_notify, tls
from . import logging as jlogging
from .channel import LEAVE_SIGNAL, Message, beat_interval
from .children import WorkerProcess, WorkerSpec, read_stacks, spawn
from .config import Config, ConfigError
from .exit_codes import EXIT_APP_LOAD, EXIT_BAD_OPTION, EXIT_BIND_FAILED, EXIT_STARTUP_FAILED
from .fatal import fatal, install_fatal_formatter
from .importer import ImportFromStringError, load_app
from .interfaces import resolve_interface
from .logging import error_logger
from .metrics_endpoint import MetricsBindError, MetricsEndpoint
from .policy import (
    Action,
    Announce,
    CloseGate,
    KillHung,
    Leave,
    Log,
    Notify,
    Options,
    Phase,
    Policy,
    ReportStalled,
    RunHook,
    SendSignal,
    Spawn,
    StopReloader,
)
from .rlimits import raise_open_files_limit
from .sd_notify import Notifier
from .sockets import BindError, bind, describe, reserve_reuse_port

#: Workers that can share their connection counts, at least (workers beyond the slots, added
#: with SIGTTIN, run unbalanced).
MIN_LOAD_SLOTS = 8
#: Workers that can be counted by --metrics-bind, at least.
MIN_METRICS_SLOTS = 64
#: How often the workers' resident memory is read with --max-worker-memory, in seconds.
MEMORY_SAMPLE_INTERVAL = 1.0
#: systemd's status line follows the requests served at most this often (seconds); a change
#: of the workers is sent at once.
STATUS_PERIOD = 1.0
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
    try:
        # Read (and removed from the environment) before any worker or app code runs.
        passed = activation.take_environment(os.environ, os.getpid())
        notifier = Notifier.from_environment(os.environ, os.getpid())
    except (activation.ActivationError, sd_notify.NotifyError) as exc:
        fatal(str(exc))
        return EXIT_BAD_OPTION
    if passed is not None and (config.reuse_port or config.uds or config.fd is not None):
        fatal(
            "systemd's socket activation passed the listening sockets: --reuse-port, --uds"
            " and --fd cannot be used with it"
        )
        return EXIT_BAD_OPTION
    try:
        user_hooks = hooks.load(config)
    except hooks.HookImportError as exc:
        fatal(str(exc))
        return EXIT_BAD_OPTION
    try:
        user_hooks.run("on_starting")
    except hooks.HookFailed as exc:
        fatal(str(exc))
        return EXIT_STARTUP_FAILED
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
        if passed is not None:
            socks = [activation.adopt(p) for p in passed]
            load = _juggler.LoadSlots(load_slots)
            spec = WorkerSpec(
                config, socks[0], None, app, load, metrics, slots, user_hooks, socks[1:], True
            )
            where = ", ".join(
                describe(s, tls=bool(config.ssl_certfile)) + (f" ({p.name})" if p.name else "")
                for s, p in zip(socks, passed, strict=True)
            )
        elif config.reuse_port:
            reserved = reserve_reuse_port(config.host, config.port)
            host, port = reserved.getsockname()[:2]
            spec = WorkerSpec(config, None, (host, port), app, None, metrics, slots, user_hooks)
            where = describe(reserved, tls=bool(config.ssl_certfile))
        else:
            sock = bind(config)
            load = _juggler.LoadSlots(load_slots)
            spec = WorkerSpec(config, sock, None, app, load, metrics, slots, user_hooks)
            where = describe(sock, tls=bool(config.ssl_certfile))
        if config.metrics_bind:
            metrics_sock = metrics_endpoint.bind(config.metrics_bind)
    except (BindError, MetricsBindError, activation.ActivationError) as exc:
        fatal(str(exc))
        return EXIT_BIND_FAILED
    except OSError as exc:
        fatal(f"cannot set up the workers' shared state: {exc}")
        return EXIT_BIND_FAILED
    try:
        return Supervisor(config, spec, where, metrics_sock, notifier).run()
    finally:
        for s in (spec.sock, *spec.more_socks, reserved, metrics_sock):
            if s is not None:
                s.close()
        if notifier is not None:
            notifier.close()


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
        _juggler.CoreConfig(config)
    except ConfigError as exc:
        return str(exc), EXIT_BAD_OPTION
    return None


class Supervisor:
    """Carries out what the ``Policy`` decides: forks, signals, logs; and tells it what
    happens (messages, exits, signals, the time)."""

    def __init__(
        self,
        config: Config,
        spec: WorkerSpec,
        where: str,
        metrics_sock: socket.socket | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.spec = spec
        self.where = where
        self.workers: dict[int, WorkerProcess] = {}
        options = Options(
            workers=int(config.workers),
            timeout_worker=float(config.timeout_worker),
            timeout_graceful_shutdown=float(config.timeout_graceful_shutdown),
            preloaded=spec.app is not None,
            shutdown_delay=float(config.shutdown_delay),
            max_worker_memory=config.max_worker_memory,
        )
        self.policy = Policy(options, self.workers, time.monotonic())
        self.signals: collections.deque[int] = collections.deque()
        self.selector = selectors.DefaultSelector()
        self.reloader_pid: int | None = None
        self.reloader_fd: int | None = None
        self.reloader_buffer = bytearray()
        self._wakeup_r, self._wakeup_w = os.pipe()
        self._pid_file_written = False
        self.metrics_sock = metrics_sock
        self.metrics: MetricsEndpoint | None = None
        self.hooks = spec.hooks or hooks.Hooks(config)
        #: With --max-worker-memory: when the workers' memory is next read.
        self._next_memory_sample = 0.0
        #: Run by systemd as a Type=notify service: what it is told.
        self.notifier = notifier
        #: The last status line sent: the workers' part, the requests' part, and when.
        self._status = ""
        self._served_sent = ""
        self._status_sent = 0.0

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
            # The first worker starts alone, so a broken app is reported once.
            self._spawn(announce=True)
            self._tell_systemd()
            while self.workers or not self.policy.stopping:
                self._wait()
                self._handle_signals()
                self._reap()
                self._sample_memory()
                self._carry_out(self.policy.tick(time.monotonic()))
                self._tell_systemd()
            self.hooks.run_logged("on_exit")
        finally:
            self._cleanup()
        return self.policy.exit_code

    def _queue_signal(self, signum: int, frame: Any) -> None:
        # Runs between two bytecodes of the loop; the wake-up fd interrupts its select().
        self.signals.append(signum)

    def _wait(self) -> None:
        # Half a beat: at most 0.5 s, so memory is sampled about once a second too.
        timeout = beat_interval(self.config.timeout_worker) / 2
        if self.notifier is not None:
            due = self.notifier.watchdog_wait(time.monotonic())
            if due is not None:
                timeout = min(timeout, due)
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
        restarts = sorted(self.policy.restarts.items())
        content_type, text = self.spec.metrics.render(workers, restarts, openmetrics)
        return content_type, text

    def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Log(level, msg, args):
                    error_logger.log(level, msg, *args)
                case SendSignal(pid, sig):
                    self._signal(self.workers[pid], sig)
                case Spawn(count):
                    for _ in range(count):
                        if self._spawn() is None:
                            break
                case KillHung(pid, silent, limit):
                    worker = self.workers[pid]
                    stacks = read_stacks(worker)
                    error_logger.error(
                        "Worker [%d] timed out: its event loop has not turned for %.1f s"
                        " (--timeout-worker %g); killing it. Its threads were at:\n%s",
                        pid,
                        silent,
                        limit,
                        stacks or "(no stack received)",
                    )
                    self._signal(worker, signal.SIGKILL)
                case ReportStalled(pid, age, call, limit):
                    stacks = read_stacks(self.workers[pid])
                    error_logger.error(
                        "Worker [%d] timed out: the WSGI call %s has made no progress for"
                        " %.1f s (--timeout-worker %g); threads cannot be cancelled, so the"
                        " worker is replaced. Its threads were at:\n%s",
                        pid,
                        call,
                        age,
                        limit,
                        stacks or "(no stack received)",
                    )
                case Announce():
                    error_logger.info("juggler running on %s (Press CTRL+C to quit)", self.where)
                case StopReloader():
                    if self.reloader_pid is not None:
                        _kill_quietly(self.reloader_pid, signal.SIGTERM)
                case CloseGate():
                    self._close_gate()
                case Leave(pid):
                    # Not _signal: a leaving worker keeps its place among its siblings.
                    self.workers[pid].signal(LEAVE_SIGNAL)
                case RunHook(name):
                    self.hooks.run_logged(name)
                case Notify(state):
                    self._notify(state)

    # -- systemd --------------------------------------------------------------------------

    def _notify(self, state: str) -> None:
        if self.notifier is None:
            return
        if state == "ready":
            self._status, self._served_sent = self._describe_workers(), self._served()
            self._status_sent = time.monotonic()
            line = sd_notify.status(self._status + self._served_sent)
            self.notifier.send(sd_notify.READY, line)
        elif state == "reloading":
            self.notifier.send(*sd_notify.reloading())
        elif state == "stopping":
            self.notifier.send(sd_notify.STOPPING)

    def _tell_systemd(self) -> None:
        """Once per turn of the loop: the watchdog's keep-alive when due, and the status line
        when the workers changed (or, at most once a second, the requests served)."""
        if self.notifier is None:
            return
        now = time.monotonic()
        self.notifier.keep_alive(now)
        status, served = self._describe_workers(), self._served()
        if status != self._status or (
            served != self._served_sent and now - self._status_sent >= STATUS_PERIOD
        ):
            self._status, self._served_sent, self._status_sent = status, served, now
            self.notifier.send(sd_notify.status(status + served))

    def _served(self) -> str:
        """The requests answered so far, when the workers count them (--metrics-bind)."""
        if self.spec.metrics is None:
            return ""
        return f", {self.spec.metrics.requests()} requests served"

    def _describe_workers(self) -> str:
        """What ``systemctl status`` shows: the workers by phase."""
        if self.policy.stopping:
            return f"Stopping: {len(self.workers)} worker(s) left"
        phases = collections.Counter(w.phase.value for w in self.workers.values())
        # A retiring worker serves until its replacement is ready (a reload, a recycling),
        # if it ever got ready: one retired while still starting never served.
        replaced = sum(
            1 for w in self.workers.values() if w.phase is Phase.RETIRING and w.ready_at is not None
        )
        parts = [f"{phases['ready'] + replaced} worker(s) serving"]
        if replaced:
            parts[0] += f" ({replaced} to be replaced)"
        if phases["starting"]:
            parts.append(f"{phases['starting']} starting")
        return ", ".join(parts)

    def _close_gate(self) -> None:
        """From now on the kernel completes no new connection on the shared socket, and the
        workers serve the ones already queued before they stop (``src/transport/gate.rs``):
        otherwise closing the socket would reset them, requests and all. Not on a UNIX socket,
        which never consults the filter, nor on an inherited one (``--fd``, systemd's socket
        activation): that socket, its queue and its filter outlive juggler, and the next server
        takes the queue."""
        sock = self.spec.sock
        if (
            sock is None
            or sock.family == socket.AF_UNIX
            or self.config.fd is not None
            or self.spec.activated
        ):
            return
        try:
            _juggler.close_gate(sock.fileno())
        except OSError as exc:
            error_logger.debug("Cannot close the listening socket's gate: %s", exc)

    # -- workers --------------------------------------------------------------------------

    def _spawn(self, announce: bool = False) -> WorkerProcess | None:
        try:
            worker = spawn(self.spec, announce, self._descriptors(), self._free_slot())
        except OSError as exc:
            self._carry_out(self.policy.spawn_failed(str(exc), time.monotonic()))
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

    def _signal(self, worker: WorkerProcess, sig: int) -> None:
        # Siblings stop leaving connections for it at once (it also says so itself when it
        # stops accepting, but a stuck one cannot).
        self._release_slot(worker)
        worker.signal(sig)

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
            self._carry_out(self.policy.on_ready(worker, now))
            # Its size before it serves: what a fresh worker takes (--max-worker-memory).
            self._sample_worker_memory(worker, now)
        elif message.kind == "beat":
            stalled = (message.call_age, message.call) if message.call_age is not None else None
            self.policy.on_beat(worker, stalled, now)
        elif message.kind == "recycle":
            self._carry_out(self.policy.on_recycle(worker, message.requests, now))

    def _sample_memory(self) -> None:
        """Reads the resident memory of the workers that serve, about once a second, when
        --max-worker-memory is set."""
        if self.config.max_worker_memory is None:
            return
        now = time.monotonic()
        if now < self._next_memory_sample:
            return
        self._next_memory_sample = now + MEMORY_SAMPLE_INTERVAL
        for worker in list(self.workers.values()):
            self._sample_worker_memory(worker, now)

    def _sample_worker_memory(self, worker: WorkerProcess, now: float) -> None:
        # Retiring, stopping and starting workers are not sampled: one being replaced is
        # replaced once.
        if self.config.max_worker_memory is None or worker.phase is not Phase.READY:
            return
        rss = worker.rss()
        if rss is not None:
            self._carry_out(self.policy.on_memory(worker, rss, now))

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
        code = os.waitstatus_to_exitcode(status)
        how = _describe_status(status)
        self._carry_out(self.policy.on_exit(worker, code, how, time.monotonic()))

    # -- signals --------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.popleft()
            if sig != signal.SIGCHLD:  # _reap runs on every turn
                self._carry_out(self.policy.on_signal(sig, time.monotonic()))

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
        if paths and not self.policy.stopping:
            shown = ", ".join(os.path.relpath(p) for p in paths[:3])
            more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            self._carry_out(self.policy.reload(f"Detected changes in {shown}{more}"))

    def _on_reloader_exit(self, status: int) -> None:
        self.reloader_pid = None
        if not self.policy.stopping:
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
