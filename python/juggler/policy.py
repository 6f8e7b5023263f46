"""What the supervisor decides, without processes: when to start, stop, kill and replace workers.

``Policy`` keeps the supervisor's bookkeeping (how many workers are asked for, failed start
rounds, the back-off, the restart counts) and each worker's ``WorkerRecord``. Each of its
methods is told what happened (a message from a worker, a worker's exit, a signal, the time
passing) and the time it is, moves the workers' phases along, and returns the ``Action``s the
supervisor carries out in order: fork, signal, log, announce. It makes no system call, so its
tests (``tests/unit/test_policy.py``) drive it with a fake clock.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import signal
from collections.abc import Mapping
from typing import Literal, TypeAlias

from .exit_codes import EXIT_BIND_FAILED, EXIT_OK

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
#: The first back-off after a failed start round; it doubles with each round, up to the most.
FIRST_BACK_OFF = 0.25
MAX_BACK_OFF = 10.0
#: Why a worker is replaced: it died, hung (--timeout-worker), reached --max-requests, a
#: reload replaced it, or it passed --max-worker-memory.
RESTART_REASONS = ("died", "timeout", "recycled", "reload", "memory")
MIB = 1024 * 1024

Stopping: TypeAlias = Literal["graceful", "fast"]


class Phase(enum.Enum):
    """Where a worker is in its life, as the supervisor sees it."""

    #: Forked, loading the app and running its lifespan startup.
    STARTING = "starting"
    #: Said it is ready: serves, and counts towards the workers asked for.
    READY = "ready"
    #: To be replaced (reload, recycling, a stalled WSGI call): serves until enough new
    #: workers are ready, then gets SIGTERM.
    RETIRING = "retiring"
    #: Asked to stop (SIGTERM or SIGQUIT); killed if it takes too long.
    STOPPING = "stopping"
    #: Sent SIGKILL.
    KILLED = "killed"


#: The phases that count towards the workers asked for.
ACTIVE = (Phase.STARTING, Phase.READY)


@dataclasses.dataclass(kw_only=True)
class WorkerRecord:
    """What the supervisor knows of one worker."""

    pid: int
    started: float
    phase: Phase = Phase.STARTING
    #: When it said it was ready; None before. A retiring, stopping or killed worker may never
    #: have been (a reload can retire a worker still starting).
    ready_at: float | None = None
    last_beat: float = 0.0
    #: The oldest WSGI call without progress at the last beat: (seconds, "METHOD path").
    stalled_call: tuple[float, str] | None = None
    #: Why it is replaced, for the metrics: "reload", "recycled", "timeout" or "memory".
    retire_reason: str = ""
    #: Its resident memory when it got ready, in bytes (--max-worker-memory; None before the
    #: first sample).
    first_rss: int | None = None
    #: When it was last asked to stop (SIGTERM or SIGQUIT) or killed: its deadline counts
    #: from here.
    stop_sent: float | None = None

    @property
    def active(self) -> bool:
        """Counts towards the number of workers asked for."""
        return self.phase in ACTIVE


@dataclasses.dataclass(frozen=True)
class Options:
    """What the policy needs of the configuration."""

    #: --workers: how many to run at first (SIGTTIN and SIGTTOU change it).
    workers: int
    #: --timeout-worker: a worker silent this long is killed (0: never).
    timeout_worker: float
    #: --timeout-graceful-shutdown: what a draining worker has (plus ``STOP_MARGIN``).
    timeout_graceful_shutdown: float
    #: The app was loaded in the supervisor (--preload or an app object): a reload restarts
    #: workers without new code.
    preloaded: bool = False
    #: --shutdown-delay: how long a stop first goes on serving with failing health checks.
    shutdown_delay: float = 0.0
    #: --max-worker-memory in MiB: a worker whose RSS passes it is replaced (None: never).
    max_worker_memory: int | None = None


# -- what the supervisor is told to do ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Spawn:
    """Fork up to ``count`` workers, one at a time; after one fails to fork, tell
    ``Policy.spawn_failed`` and fork no more."""

    count: int


@dataclasses.dataclass(frozen=True)
class SendSignal:
    """Free the worker's load slot (its siblings stop leaving connections for it) and send it
    ``sig``."""

    pid: int
    sig: int


@dataclasses.dataclass(frozen=True)
class KillHung:
    """The worker's event loop has not turned for ``silent`` seconds: log its threads' stacks,
    free its load slot and send it SIGKILL."""

    pid: int
    silent: float
    limit: float


@dataclasses.dataclass(frozen=True)
class ReportStalled:
    """The worker's WSGI call ``call`` has made no progress for ``age`` seconds: log its
    threads' stacks (the policy already marked it as retiring)."""

    pid: int
    age: float
    call: str
    limit: float


@dataclasses.dataclass(frozen=True)
class Log:
    level: int
    msg: str
    args: tuple[object, ...] = ()

    def __str__(self) -> str:
        return self.msg % self.args if self.args else self.msg


@dataclasses.dataclass(frozen=True)
class Announce:
    """All the workers asked for are ready: log where juggler runs (once)."""


@dataclasses.dataclass(frozen=True)
class Leave:
    """Tell a worker to fail its health checks from now on, and to go on serving
    (``--shutdown-delay``)."""

    pid: int


@dataclasses.dataclass(frozen=True)
class CloseGate:
    """Stop the kernel completing new connections on the shared socket, so that the workers
    serve every one it queued before they stop: first thing in a stop, before any worker is
    told."""


@dataclasses.dataclass(frozen=True)
class RunHook:
    """Call the user's hook ``name`` (``--on-reload``...), if one was given."""

    name: str


@dataclasses.dataclass(frozen=True)
class StopReloader:
    """Stop the file watcher (--reload), if it runs."""


Action: TypeAlias = (
    Spawn
    | SendSignal
    | KillHung
    | ReportStalled
    | Log
    | Announce
    | StopReloader
    | CloseGate
    | Leave
    | RunHook
)


def _info(msg: str, *args: object) -> Log:
    return Log(logging.INFO, msg, args)


def _warning(msg: str, *args: object) -> Log:
    return Log(logging.WARNING, msg, args)


def _error(msg: str, *args: object) -> Log:
    return Log(logging.ERROR, msg, args)


def back_off_delay(failures: int) -> float:
    """How long to wait before forking again after ``failures`` failed start rounds in a row."""
    return min(FIRST_BACK_OFF * 2.0 ** (failures - 1), MAX_BACK_OFF)


def killed_from_outside(code: int) -> bool:
    """SIGKILL or SIGTERM from someone else (an operator, the OOM killer): not the app's own
    crash, so no reason to slow down replacing it. ``code`` as ``os.waitstatus_to_exitcode``
    gives it (minus the signal's number for a process a signal ended)."""
    return code in (-signal.SIGKILL, -signal.SIGTERM)


class Policy:
    """The supervisor's decisions. ``workers`` is the supervisor's own mapping of pid to
    record: it adds a worker once forked and removes it once reaped, before telling
    ``on_exit``; the policy changes only the records."""

    def __init__(self, options: Options, workers: Mapping[int, WorkerRecord], now: float) -> None:
        self.options = options
        self.workers = workers
        #: How many workers are asked for.
        self.target = options.workers
        #: How the supervisor stops, once it does.
        self.stopping: Stopping | None = None
        #: During --shutdown-delay: when the graceful stop begins.
        self.leaving_until: float | None = None
        self.exit_code = EXIT_OK
        #: A worker has been ready once: the app can start, so a later death is respawned.
        self.ever_ready = False
        self.announced = False
        #: Failed start rounds in a row.
        self.start_failures = 0
        #: No worker is forked before this time (the back-off).
        self.respawn_at = 0.0
        #: The last health check (``tick``).
        self.last_check = now
        #: Workers replaced, by why (for the metrics; every reason from 0, so that a scraper
        #: sees the first one as an increase).
        self.restarts: collections.Counter[str] = collections.Counter(
            {reason: 0 for reason in RESTART_REASONS}
        )

    # -- what workers say ------------------------------------------------------------------

    def on_ready(self, worker: WorkerRecord, now: float) -> list[Action]:
        if worker.phase is Phase.STARTING:
            worker.phase = Phase.READY
        worker.ready_at = now
        worker.last_beat = now
        self.ever_ready = True
        actions: list[Action] = [_info("Worker [%d] started", worker.pid)]
        if self.leaving_until is not None and not self.stopping:
            # A replacement that got ready during the delay leaves with the others.
            actions.append(Leave(worker.pid))
        if not self.announced and self._ready_count() >= self.target:
            self.announced = True
            actions.append(Announce())
        return actions

    def on_beat(
        self, worker: WorkerRecord, stalled_call: tuple[float, str] | None, now: float
    ) -> None:
        worker.last_beat = now
        worker.stalled_call = stalled_call

    def on_recycle(self, worker: WorkerRecord, requests: int, now: float) -> list[Action]:
        """The worker reached --max-requests. It asks again with every beat, so a refusal
        (stopping, or replacing is paused) is only for now."""
        if (
            not worker.active
            or self.stopping
            or self.leaving_until is not None
            or now < self.respawn_at
        ):
            return []
        worker.phase = Phase.RETIRING
        worker.retire_reason = "recycled"
        return [
            _info("Recycling worker [%d] after %d requests (--max-requests)", worker.pid, requests)
        ]

    def on_memory(self, worker: WorkerRecord, rss: int, now: float) -> list[Action]:
        """A sample of the worker's resident memory, in bytes (--max-worker-memory). Only
        workers that serve are sampled, about once a second, so a refusal (stopping, or
        replacing is paused) is only for now."""
        limit = self.options.max_worker_memory
        if limit is None or worker.phase is not Phase.READY:
            return []
        first = worker.first_rss
        if first is None:
            worker.first_rss = first = rss
            if rss > limit * MIB:
                # Its replacement would start as large and be replaced again, without end.
                return [
                    _warning(
                        "Worker [%d] uses %.1f MiB as it starts, over --max-worker-memory %d MiB:"
                        " it is not replaced for its memory (raise the limit)",
                        worker.pid,
                        rss / MIB,
                        limit,
                    )
                ]
        if (
            rss <= limit * MIB
            or first > limit * MIB
            or self.stopping
            or self.leaving_until is not None
            or now < self.respawn_at
        ):
            return []
        worker.phase = Phase.RETIRING
        worker.retire_reason = "memory"
        return [
            _warning(
                "Worker [%d] uses %.1f MiB of memory (RSS), over --max-worker-memory %d MiB;"
                " replacing it",
                worker.pid,
                rss / MIB,
                limit,
            )
        ]

    # -- a worker exited -------------------------------------------------------------------

    def on_exit(self, worker: WorkerRecord, code: int, how: str, now: float) -> list[Action]:
        """``worker`` (no longer in ``workers``) exited with ``code`` (negative: killed by that
        signal), described as ``how``. The messages it wrote before must have been given to
        the policy first (a "ready" among them counts)."""
        match worker.phase:
            case Phase.STOPPING | Phase.KILLED:
                return self._stopped(worker, code, how)
            case Phase.STARTING:
                return self._failed_to_start(worker, code, how, now)
            case Phase.READY | Phase.RETIRING:
                if worker.ready_at is None:
                    # Retired by a reload while still starting, and failed to.
                    return self._failed_to_start(worker, code, how, now)
                # Also one that was to be replaced: it was not stopped, so not counted yet.
                # (Once stopping, every worker is stopping or killed.)
                self.restarts["died"] += 1
                if now - worker.ready_at < CRASH_WINDOW and not killed_from_outside(code):
                    # It died right after it started: its app cannot keep running.
                    return self._failed_to_start(worker, code, how, now)
                return [
                    _error(
                        "Worker [%d] died unexpectedly (%s); starting a replacement",
                        worker.pid,
                        how,
                    )
                ]

    def _stopped(self, worker: WorkerRecord, code: int, how: str) -> list[Action]:
        if code > 0 and self.exit_code == EXIT_OK and self.stopping and worker.ready_at is not None:
            # A worker that failed its own shutdown (lifespan.shutdown.failed) says so through
            # the supervisor's exit code.
            self.exit_code = code
        level = logging.INFO if code == 0 or worker.phase is Phase.KILLED else logging.WARNING
        return [Log(level, "Worker [%d] stopped (%s)", (worker.pid, how))]

    def _failed_to_start(
        self, worker: WorkerRecord, code: int, how: str, now: float
    ) -> list[Action]:
        """It died before it was ready, or right after: its app cannot start or keep running."""
        failed_code = code if code > 0 else 1
        if any(w.phase is Phase.RETIRING for w in self.workers.values()):
            return self._abandon_replacement(worker, how, now)
        if not self.ever_ready:
            actions: list[Action] = []
            if code < 0:
                actions.append(_error("Worker [%d] died before it was ready (%s)", worker.pid, how))
            self.exit_code = failed_code
            return actions + self._begin_stop("fast", now, quiet=True)
        if now < self.respawn_at:
            # Another failure of the same round: logged, counted once.
            return [_error("Worker [%d] failed to start (%s)", worker.pid, how)]
        # Replacements that fail together count once: back-off rounds are what count.
        self.start_failures += 1
        if self.start_failures >= MAX_START_FAILURES:
            self.exit_code = failed_code
            return [
                _error(
                    "Workers failed to start %d times in a row (the last %s); stopping",
                    self.start_failures,
                    how,
                ),
                *self._begin_stop("graceful", now),
            ]
        what = "died right after it started" if worker.ready_at is not None else "failed to start"
        return [self._back_off(f"Worker [{worker.pid}] {what} ({how})", now)]

    def _abandon_replacement(self, worker: WorkerRecord, how: str, now: float) -> list[Action]:
        """A new worker (reload, recycling) could not start: keep the ones that serve."""
        actions: list[Action] = [
            _error(
                "Worker [%d] failed to start (%s); the running workers keep serving the code"
                " they have",
                worker.pid,
                how,
            )
        ]
        for w in self.workers.values():
            if w.phase in (Phase.STOPPING, Phase.KILLED):
                continue
            if w.ready_at is None:
                # The other new ones would load the same broken code.
                actions.append(self._stop(w, signal.SIGKILL, now))
            elif w.phase is Phase.RETIRING:
                w.phase = Phase.READY
        # A recycling worker asks again with each beat: without a pause this would fork and
        # fail once a second for as long as the code on disk cannot start.
        self.start_failures += 1
        actions.append(self._back_off("Replacing workers is paused", now))
        return actions

    def spawn_failed(self, error: str, now: float) -> list[Action]:
        """Forking a worker failed (out of processes, memory or descriptors): try again later,
        like a start failure."""
        self.start_failures += 1
        actions: list[Action] = [self._back_off(f"Cannot start a worker: {error}", now)]
        if not self.workers and not self.ever_ready:
            self.exit_code = EXIT_BIND_FAILED
            actions += self._begin_stop("fast", now, quiet=True)
        return actions

    def _back_off(self, what: str, now: float) -> Log:
        delay = back_off_delay(self.start_failures)
        self.respawn_at = now + delay
        return _error("%s; trying again in %.1f s", what, delay)

    # -- signals and reloads ---------------------------------------------------------------

    def on_signal(self, sig: int, now: float) -> list[Action]:
        """SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGTTIN or SIGTTOU reached the supervisor."""
        name = signal.Signals(sig).name
        if sig in (signal.SIGTERM, signal.SIGINT):
            if self.stopping and sig == signal.SIGINT:
                return [
                    _info("Received SIGINT again: stopping at once"),
                    *self._begin_stop("fast", now),
                ]
            if self.stopping:
                return []
            if self.leaving_until is not None:
                return [
                    _info("Received %s again: skipping the rest of --shutdown-delay", name),
                    *self._begin_stop("graceful", now),
                ]
            if self.options.shutdown_delay > 0:
                return self._leave(name, now)
            return [
                _info("Received %s: shutting down gracefully", name),
                *self._begin_stop("graceful", now),
            ]
        if sig == signal.SIGQUIT:
            return [_info("Received SIGQUIT: stopping at once"), *self._begin_stop("fast", now)]
        if self.stopping or self.leaving_until is not None:
            return []
        if sig == signal.SIGHUP:
            return self.reload("Received SIGHUP")
        if sig == signal.SIGTTIN:
            self.target += 1
            return [_info("Received SIGTTIN: %d workers", self.target)]
        if sig == signal.SIGTTOU:
            if self.target > 1:
                self.target -= 1
            return [_info("Received SIGTTOU: %d worker(s)", self.target)]
        return []

    def _leave(self, name: str, now: float) -> list[Action]:
        """The first part of a stop with --shutdown-delay: every ready worker fails its
        health checks and goes on serving, until ``tick`` begins the graceful stop."""
        delay = self.options.shutdown_delay
        self.leaving_until = now + delay
        actions: list[Action] = [
            _info(
                "Received %s: failing health checks for %g s (--shutdown-delay), then shutting"
                " down gracefully",
                name,
                delay,
            )
        ]
        # Only workers that got ready have the signal's handler; a worker still starting is
        # told when it gets ready.
        actions += [
            Leave(w.pid) for w in self.workers.values() if w.phase in (Phase.READY, Phase.RETIRING)
        ]
        return actions

    def reload(self, why: str) -> list[Action]:
        """Replace every active worker: new ones are forked at once (even during a back-off),
        and the old ones retire once enough new ones are ready."""
        if self.stopping or self.leaving_until is not None:
            return []
        old = [w for w in self.workers.values() if w.active]
        if self.options.preloaded:
            log = _warning(
                "%s: restarting %d worker(s); the app was loaded in the supervisor"
                " (--preload or an app object), so its code does not change",
                why,
                len(old),
            )
        else:
            log = _info("%s: starting %d new worker(s)", why, self.target)
        for w in old:
            w.phase = Phase.RETIRING
            w.retire_reason = w.retire_reason or "reload"
        self.respawn_at = 0.0
        return [log, RunHook("on_reload")]

    def _begin_stop(self, how: Stopping, now: float, quiet: bool = False) -> list[Action]:
        if self.stopping == "fast" or self.stopping == how:
            return []
        self.stopping = how
        sig = signal.SIGTERM if how == "graceful" else signal.SIGQUIT
        actions: list[Action] = [CloseGate()]
        if self.workers and not quiet:
            actions.append(
                _info(
                    "Waiting for %d worker(s) to %s",
                    len(self.workers),
                    "finish their requests" if how == "graceful" else "stop",
                )
            )
        for w in self.workers.values():
            if w.phase is Phase.KILLED or (sig == signal.SIGTERM and w.phase is Phase.STOPPING):
                continue
            if sig == signal.SIGQUIT and w.ready_at is None:
                # A worker still loading the app has no handler yet: SIGQUIT would dump core.
                actions.append(self._stop(w, signal.SIGKILL, now))
            else:
                actions.append(self._stop(w, sig, now))
        actions.append(StopReloader())
        return actions

    def _stop(self, worker: WorkerRecord, sig: int, now: float) -> SendSignal:
        worker.phase = Phase.KILLED if sig == signal.SIGKILL else Phase.STOPPING
        worker.stop_sent = now
        return SendSignal(worker.pid, sig)

    # -- the time passing ------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """What the time passing calls for, once per turn of the supervisor's loop (after the
        messages, signals and exits of the turn)."""
        actions = self._enforce_stop_deadlines(now)
        if self.leaving_until is not None and not self.stopping and now >= self.leaving_until:
            actions += [
                _info("The --shutdown-delay is over: shutting down gracefully"),
                *self._begin_stop("graceful", now),
            ]
        if self.stopping:
            return actions
        actions += self._check_health(now)
        actions += self._retire_replaced(now)
        actions += self._maintain(now)
        return actions

    def stop_deadline(self) -> float:
        """How long a worker asked to stop has before it is killed."""
        if self.stopping == "fast":
            return FAST_STOP_TIMEOUT
        return self.options.timeout_graceful_shutdown + STOP_MARGIN

    def _enforce_stop_deadlines(self, now: float) -> list[Action]:
        actions: list[Action] = []
        allowed = self.stop_deadline()
        for w in self.workers.values():
            if w.phase is not Phase.STOPPING or w.stop_sent is None:
                continue
            if now - w.stop_sent > allowed:
                w.phase = Phase.KILLED
                actions += [
                    _warning("Worker [%d] did not stop within %.0f s; killing it", w.pid, allowed),
                    SendSignal(w.pid, signal.SIGKILL),
                ]
        return actions

    def _check_health(self, now: float) -> list[Action]:
        limit = self.options.timeout_worker
        if limit <= 0:
            return []
        if now - self.last_check > limit / 2:
            # The supervisor itself was stopped (Ctrl+Z, a debugger) or starved: the workers'
            # beats went unread, which says nothing about them.
            for worker in self.workers.values():
                worker.last_beat = max(worker.last_beat, now)
        self.last_check = now
        actions: list[Action] = []
        for worker in self.workers.values():
            if worker.phase not in (Phase.READY, Phase.RETIRING) or worker.ready_at is None:
                continue
            silent = now - worker.last_beat
            if silent > limit:
                self._stop(worker, signal.SIGKILL, now)
                self.restarts["timeout"] += 1
                actions.append(KillHung(worker.pid, silent, limit))
                continue
            if (
                worker.stalled_call is not None
                and worker.phase is Phase.READY
                and now >= self.respawn_at
            ):
                age, call = worker.stalled_call
                age += silent
                if age > limit:
                    worker.phase = Phase.RETIRING
                    worker.retire_reason = "timeout"
                    actions.append(ReportStalled(worker.pid, age, call, limit))
        return actions

    def _retire_replaced(self, now: float) -> list[Action]:
        """Retiring workers get SIGTERM once enough workers are ready to take their place."""
        retiring = [w for w in self.workers.values() if w.phase is Phase.RETIRING]
        if not retiring or self._ready_count() < self.target:
            return []
        actions: list[Action] = []
        for w in retiring:
            # Counted now that its replacement serves: a reload whose new workers fail
            # replaces nothing.
            self.restarts[w.retire_reason or "reload"] += 1
            actions.append(self._stop(w, signal.SIGTERM, now))
        return actions

    def _maintain(self, now: float) -> list[Action]:
        """Fork missing workers (unless backing off), or stop extra ones."""
        if self.start_failures and any(
            w.ready_at is not None and now - w.ready_at >= CRASH_WINDOW
            for w in self.workers.values()
        ):
            # A worker got past its first moments: the app starts again.
            self.start_failures = 0
        active = [w for w in self.workers.values() if w.active]
        missing = self.target - len(active)
        if missing > 0:
            if not self.ever_ready and active:
                return []  # The first worker starts alone, so a broken app is reported once.
            if now < self.respawn_at:
                return []
            return [Spawn(missing)]
        actions: list[Action] = []
        if missing < 0:
            # Those still starting go first, then the oldest.
            for w in sorted(active, key=lambda w: (w.phase is Phase.READY, w.started))[:-missing]:
                actions += [
                    _info("Stopping worker [%d] (fewer workers asked for)", w.pid),
                    self._stop(w, signal.SIGTERM, now),
                ]
        return actions

    def _ready_count(self) -> int:
        return sum(1 for w in self.workers.values() if w.phase is Phase.READY)
