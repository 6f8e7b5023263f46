"""The supervisor's decisions (``juggler.policy``), without processes: every test drives the
time itself and plays the workers' part (forked, ready, silent, exited), as Gunicorn's
``tests/test_arbiter.py`` tests its arbiter. ``test_workers.py`` covers the same rules end to
end, where most boundaries cannot be reached on time.
"""

from __future__ import annotations

import itertools
import logging
import signal

import pytest
from juggler.exit_codes import EXIT_BIND_FAILED, EXIT_OK
from juggler.policy import (
    Action,
    Announce,
    CloseGate,
    KillHung,
    Leave,
    Log,
    Options,
    Phase,
    Policy,
    ReportStalled,
    RunHook,
    SendSignal,
    Spawn,
    StopReloader,
    WorkerRecord,
    back_off_delay,
    killed_from_outside,
)

# The rules' numbers, as docs/architecture.md gives them (not imported: a change must show).
#: A worker dying this soon after it got ready failed to start.
CRASH_WINDOW = 2.0
#: Failed start rounds in a row after which the supervisor gives up.
MAX_START_FAILURES = 5
#: A draining worker has --timeout-graceful-shutdown plus this...
STOP_MARGIN = 10.0
#: ...and one asked to stop at once (SIGQUIT) this.
FAST_STOP_TIMEOUT = 5.0

SIGKILL = int(signal.SIGKILL)
SIGTERM = int(signal.SIGTERM)
SIGQUIT = int(signal.SIGQUIT)
#: Small enough to be "just after" any deadline here, large enough not to vanish in a float.
TICK = 1e-6


class Supervisor:
    """Plays the supervisor's part around a ``Policy``: a fake clock, a fake pid counter, and
    the workers' records."""

    def __init__(
        self,
        workers: int = 1,
        timeout_worker: float = 0.0,
        timeout_graceful_shutdown: float = 30.0,
        preloaded: bool = False,
        shutdown_delay: float = 0.0,
        max_worker_memory: int | None = None,
    ) -> None:
        self.now = 1000.0
        self.workers: dict[int, WorkerRecord] = {}
        options = Options(
            workers,
            timeout_worker,
            timeout_graceful_shutdown,
            preloaded,
            shutdown_delay,
            max_worker_memory,
        )
        self.policy = Policy(options, self.workers, self.now)
        self._pids = itertools.count(100)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def fork(self) -> WorkerRecord:
        worker = WorkerRecord(pid=next(self._pids), started=self.now)
        self.workers[worker.pid] = worker
        return worker

    def ready(self, worker: WorkerRecord) -> list[Action]:
        return self.policy.on_ready(worker, self.now)

    def exit(self, worker: WorkerRecord, code: int, how: str = "") -> list[Action]:
        del self.workers[worker.pid]
        return self.policy.on_exit(worker, code, how or f"exit code {code}", self.now)

    def tick(self) -> list[Action]:
        return self.policy.tick(self.now)

    def tick_and_fork(self) -> list[WorkerRecord]:
        """A turn of the loop, forking what it asks for."""
        return [self.fork() for _ in range(spawned(self.tick()))]

    def serving(self) -> list[WorkerRecord]:
        """Starts the workers asked for (the first alone) and lets them all get ready, then
        lets them outlive the crash window."""
        first = self.fork()
        self.ready(first)
        workers = [first, *self.tick_and_fork()]
        for w in workers[1:]:
            self.ready(w)
        self.advance(CRASH_WINDOW)
        assert self.tick() == []
        return workers

    def signal(self, sig: int) -> list[Action]:
        return self.policy.on_signal(sig, self.now)


def messages(actions: list[Action], level: int | None = None) -> list[str]:
    return [str(a) for a in actions if isinstance(a, Log) and level in (None, a.level)]


def signals(actions: list[Action]) -> list[tuple[int, int]]:
    return [(a.pid, a.sig) for a in actions if isinstance(a, SendSignal)]


def spawned(actions: list[Action]) -> int:
    return sum(a.count for a in actions if isinstance(a, Spawn))


def phases(workers: list[WorkerRecord]) -> list[Phase]:
    return [w.phase for w in workers]


# -- starting ---------------------------------------------------------------------------------


def test_a_ready_worker_is_ready_and_logged():
    s = Supervisor()
    w = s.fork()
    assert w.phase is Phase.STARTING and w.active
    s.advance(3)
    actions = s.ready(w)
    assert w.phase is Phase.READY and w.active
    assert w.ready_at == s.now and w.last_beat == s.now
    assert s.policy.ever_ready
    assert messages(actions) == [f"Worker [{w.pid}] started"]


def test_juggler_is_announced_once_all_the_workers_asked_for_are_ready():
    s = Supervisor(workers=2)
    first = s.fork()
    assert Announce() not in s.ready(first)
    second = s.fork()
    assert Announce() in s.ready(second)
    # Once: a replacement that gets ready later says nothing more.
    s.advance(CRASH_WINDOW)
    s.exit(first, 1)
    (third,) = s.tick_and_fork()
    assert Announce() not in s.ready(third)


def test_a_stopping_worker_that_gets_ready_stays_stopping():
    s = Supervisor(workers=2)
    first = s.fork()
    s.ready(first)
    (second,) = s.tick_and_fork()
    s.signal(signal.SIGTTOU)
    assert signals(s.tick()) == [(second.pid, SIGTERM)]
    s.ready(second)
    assert second.phase is Phase.STOPPING and second.ready_at == s.now


def test_the_first_worker_starts_alone():
    s = Supervisor(workers=3)
    first = s.fork()
    s.advance(60)
    assert s.tick() == []
    s.ready(first)
    assert spawned(s.tick()) == 2


def test_a_missing_worker_is_forked_at_once_and_only_once():
    s = Supervisor(workers=2)
    s.serving()
    assert s.tick() == []
    s.policy.target = 3
    assert s.tick() == [Spawn(1)]
    s.fork()
    assert s.tick() == []


def test_the_first_worker_failing_stops_the_supervisor_with_its_exit_code():
    s = Supervisor(workers=2)
    w = s.fork()
    actions = s.exit(w, 3)
    assert s.policy.exit_code == 3
    assert s.policy.stopping == "fast"
    # The worker printed its error: nothing more to say than that.
    assert messages(actions) == []
    assert s.tick() == []


def test_the_first_worker_killed_by_a_signal_is_reported_and_exits_1():
    s = Supervisor()
    w = s.fork()
    actions = s.exit(w, -signal.SIGSEGV, "killed by SIGSEGV")
    assert s.policy.exit_code == 1
    assert messages(actions) == [f"Worker [{w.pid}] died before it was ready (killed by SIGSEGV)"]


def test_once_a_worker_was_ready_a_death_is_no_reason_to_stop():
    s = Supervisor()
    w = s.fork()
    s.ready(w)
    s.advance(CRASH_WINDOW)
    s.exit(w, 1)
    assert s.policy.stopping is None
    assert s.tick() == [Spawn(1)]


# -- dying, backing off, giving up ------------------------------------------------------------


def test_a_worker_that_dies_is_replaced_at_once_and_counted():
    s = Supervisor(workers=2)
    first, _ = s.serving()
    s.advance(100)
    actions = s.exit(first, 1, "exit code 1")
    assert messages(actions, logging.ERROR) == [
        f"Worker [{first.pid}] died unexpectedly (exit code 1); starting a replacement"
    ]
    assert s.policy.restarts["died"] == 1
    assert s.policy.start_failures == 0
    assert s.tick() == [Spawn(1)]


@pytest.mark.parametrize(
    ("lived", "crashed"),
    [
        (CRASH_WINDOW - TICK, True),
        (CRASH_WINDOW, False),
        (0.0, True),
    ],
)
def test_dying_within_two_seconds_of_ready_is_a_start_failure(lived: float, crashed: bool):
    s = Supervisor(workers=2)
    first, _ = s.serving()
    s.exit(first, 1)
    (replacement,) = s.tick_and_fork()
    s.ready(replacement)
    s.advance(lived)
    actions = s.exit(replacement, 1)
    # Counted as died either way: it served.
    assert s.policy.restarts["died"] == 2
    if crashed:
        assert s.policy.start_failures == 1
        assert s.policy.respawn_at == s.now + 0.25
        assert messages(actions) == [
            f"Worker [{replacement.pid}] died right after it started (exit code 1);"
            " trying again in 0.2 s"
        ]
        assert s.tick() == []
    else:
        assert s.policy.start_failures == 0
        assert "died unexpectedly" in messages(actions)[0]
        assert s.tick() == [Spawn(1)]


@pytest.mark.parametrize(
    ("code", "outside"),
    [(-signal.SIGKILL, True), (-signal.SIGTERM, True), (-signal.SIGSEGV, False), (1, False)],
)
def test_killed_from_outside_right_after_ready_is_no_start_failure(code: int, outside: bool):
    assert killed_from_outside(code) is outside
    s = Supervisor(workers=2)
    first, _ = s.serving()
    s.exit(first, 1)
    (replacement,) = s.tick_and_fork()
    s.ready(replacement)
    s.exit(replacement, code)
    assert s.policy.start_failures == (0 if outside else 1)


def test_the_back_off_doubles_from_a_quarter_second_to_ten_seconds():
    assert [back_off_delay(n) for n in range(1, 10)] == [
        0.25,
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        10.0,
        10.0,
        10.0,
    ]


def fail_a_round(s: Supervisor) -> list[Action]:
    """The time comes to fork again; the new worker dies before it is ready."""
    s.now = max(s.now, s.policy.respawn_at)
    (w,) = s.tick_and_fork()
    return s.exit(w, 3)


def test_replacements_back_off_and_the_supervisor_gives_up_after_five_rounds():
    s = Supervisor()
    (first,) = s.serving()
    s.exit(first, 1)
    delays = []
    for _ in range(MAX_START_FAILURES - 1):
        fail_a_round(s)
        delays.append(s.policy.respawn_at - s.now)
    assert delays == [0.25, 0.5, 1.0, 2.0]
    assert s.policy.stopping is None
    actions = fail_a_round(s)
    assert messages(actions)[0] == (
        "Workers failed to start 5 times in a row (the last exit code 3); stopping"
    )
    assert s.policy.stopping == "graceful"
    assert s.policy.exit_code == 3


def test_giving_up_on_a_worker_killed_by_a_signal_exits_1():
    s = Supervisor()
    (first,) = s.serving()
    s.exit(first, 1)
    s.policy.start_failures = MAX_START_FAILURES - 1
    (w,) = s.tick_and_fork()
    s.exit(w, -signal.SIGSEGV)
    assert s.policy.stopping == "graceful" and s.policy.exit_code == 1


def test_no_worker_is_forked_before_the_back_off_ends():
    s = Supervisor(workers=2)
    first, _ = s.serving()
    s.exit(first, 1)
    fail_a_round(s)
    s.now = s.policy.respawn_at - TICK
    assert s.tick() == []
    s.now = s.policy.respawn_at
    assert s.tick() == [Spawn(1)]


def test_failures_of_the_same_round_count_once():
    s = Supervisor(workers=2)
    a, b = s.serving()
    s.exit(a, 1)
    s.exit(b, 1)
    new = s.tick_and_fork()
    assert len(new) == 2
    s.exit(new[0], 3)
    assert s.policy.start_failures == 1
    actions = s.exit(new[1], 3)
    assert s.policy.start_failures == 1
    assert messages(actions) == [f"Worker [{new[1].pid}] failed to start (exit code 3)"]
    # The round ended: the next failure counts.
    s.now = s.policy.respawn_at
    c, _ = s.tick_and_fork()
    s.exit(c, 3)
    assert s.policy.start_failures == 2


@pytest.mark.parametrize(("lived", "reset"), [(CRASH_WINDOW - TICK, False), (CRASH_WINDOW, True)])
def test_the_failure_count_starts_again_once_a_worker_outlives_two_seconds(
    lived: float, reset: bool
):
    s = Supervisor()
    (first,) = s.serving()
    s.exit(first, 1)
    fail_a_round(s)
    fail_a_round(s)
    s.now = s.policy.respawn_at
    (w,) = s.tick_and_fork()
    s.ready(w)
    s.advance(lived)
    s.tick()
    assert s.policy.start_failures == (0 if reset else 2)


def test_a_worker_that_cannot_be_forked_backs_off():
    s = Supervisor(workers=2)
    s.serving()
    s.policy.target = 3
    actions = s.policy.spawn_failed("[Errno 11] Resource temporarily unavailable", s.now)
    assert messages(actions) == [
        "Cannot start a worker: [Errno 11] Resource temporarily unavailable; trying again in 0.2 s"
    ]
    assert s.policy.start_failures == 1 and s.policy.stopping is None
    assert s.tick() == []
    s.now = s.policy.respawn_at
    assert s.tick() == [Spawn(1)]


def test_the_first_worker_that_cannot_be_forked_stops_the_supervisor():
    s = Supervisor()
    actions = s.policy.spawn_failed("no memory", s.now)
    assert s.policy.exit_code == EXIT_BIND_FAILED
    assert s.policy.stopping == "fast"
    assert len(messages(actions)) == 1


# -- hung workers -----------------------------------------------------------------------------


def ticks(s: Supervisor, seconds: float, step: float = 0.25) -> list[Action]:
    """The supervisor's loop turning for ``seconds``, without news from the workers."""
    actions: list[Action] = []
    end = s.now + seconds
    while s.now + step < end:
        s.advance(step)
        actions += s.tick()
    s.now = end
    return actions + s.tick()


def test_a_worker_silent_for_the_timeout_is_killed_just_after():
    s = Supervisor(workers=2, timeout_worker=1.0)
    w, other = s.serving()
    s.policy.on_beat(other, None, s.now + 10)
    s.policy.on_beat(w, None, s.now)
    assert ticks(s, 1.0) == []
    s.advance(TICK)
    actions = s.tick()
    assert actions[0] == KillHung(w.pid, pytest.approx(1.0 + TICK), 1.0)
    assert w.phase is Phase.KILLED and w.stop_sent == s.now
    assert s.policy.restarts["timeout"] == 1
    # Its replacement is forked in the same turn.
    assert actions[1:] == [Spawn(1)]
    s.fork()
    # Gone: no longer checked, and its exit is no death.
    assert s.tick() == []
    actions = s.exit(w, -signal.SIGKILL, "killed by SIGKILL")
    assert messages(actions, logging.INFO) == [f"Worker [{w.pid}] stopped (killed by SIGKILL)"]
    assert s.policy.restarts["died"] == 0


def test_a_beat_keeps_a_worker_alive():
    s = Supervisor(timeout_worker=1.0)
    (w,) = s.serving()
    for _ in range(10):
        assert ticks(s, 0.9) == []
        s.policy.on_beat(w, None, s.now)


def test_a_worker_still_starting_is_never_killed_for_its_silence():
    s = Supervisor(timeout_worker=1.0)
    s.fork()
    assert ticks(s, 30) == []


def test_without_a_timeout_no_worker_is_killed():
    s = Supervisor(timeout_worker=0)
    s.serving()
    assert ticks(s, 3600, step=10) == []


def test_a_retiring_worker_is_killed_when_silent_too():
    s = Supervisor(timeout_worker=1.0)
    (w,) = s.serving()
    s.policy.on_recycle(w, 100, s.now)
    actions = ticks(s, 1.25)
    assert KillHung(w.pid, 1.25, 1.0) in actions
    assert w.phase is Phase.KILLED


@pytest.mark.parametrize(("gap", "excused"), [(0.5, False), (0.5 + TICK, True)])
def test_a_supervisor_that_was_itself_stopped_excuses_the_silence(gap: float, excused: bool):
    # The supervisor's loop did not turn for over half the timeout (Ctrl+Z, a debugger): the
    # beats went unread, which says nothing about the workers.
    s = Supervisor(timeout_worker=1.0)
    (w,) = s.serving()
    s.policy.on_beat(w, None, s.now)
    assert ticks(s, 0.75) == []
    s.advance(gap)
    actions = s.tick()
    if excused:
        assert actions == [] and w.last_beat == s.now
    else:
        assert [type(a) for a in actions] == [KillHung, Spawn]


def test_a_stalled_wsgi_call_retires_its_worker_just_after_the_timeout():
    s = Supervisor(workers=2, timeout_worker=1.0)
    w, other = s.serving()
    s.policy.on_beat(other, None, s.now + 10)
    s.policy.on_beat(w, (0.75, "GET /slow"), s.now)
    # Its age at the beat plus the silence since.
    assert ticks(s, 0.25) == []
    s.advance(TICK)
    actions = s.tick()
    assert actions[0] == ReportStalled(w.pid, pytest.approx(1.0 + TICK), "GET /slow", 1.0)
    assert w.phase is Phase.RETIRING and w.retire_reason == "timeout"
    # Replaced gracefully: a new worker first, SIGTERM once it is ready.
    assert actions[1:] == [Spawn(1)]
    new = s.fork()
    assert s.tick() == []
    s.ready(new)
    assert signals(s.tick()) == [(w.pid, SIGTERM)]
    assert s.policy.restarts["timeout"] == 1


def test_a_stalled_call_is_reported_once():
    s = Supervisor(timeout_worker=1.0)
    (w,) = s.serving()
    s.policy.on_beat(w, (5.0, "GET /slow"), s.now)
    assert [type(a) for a in s.tick()] == [ReportStalled, Spawn]
    s.fork()
    s.policy.on_beat(w, (5.25, "GET /slow"), s.now + 0.25)
    s.advance(0.25)
    assert s.tick() == []


def test_a_stalled_call_waits_for_the_back_off():
    s = Supervisor(workers=2, timeout_worker=1.0)
    w, other = s.serving()
    s.exit(other, 1)
    fail_a_round(s)
    s.policy.on_beat(w, (5.0, "GET /slow"), s.now)
    assert s.tick() == []
    s.now = s.policy.respawn_at
    s.policy.on_beat(w, (5.0, "GET /slow"), s.now)
    assert ReportStalled in [type(a) for a in s.tick()]


# -- recycling and reloading ------------------------------------------------------------------


def test_a_recycled_worker_gets_sigterm_once_its_replacement_is_ready():
    s = Supervisor(workers=2)
    a, b = s.serving()
    actions = s.policy.on_recycle(a, 1000, s.now)
    assert messages(actions) == [f"Recycling worker [{a.pid}] after 1000 requests (--max-requests)"]
    assert a.phase is Phase.RETIRING and not a.active
    (new,) = s.tick_and_fork()
    assert s.tick() == []
    s.advance(5)
    s.ready(new)
    assert signals(s.tick()) == [(a.pid, SIGTERM)]
    assert a.phase is Phase.STOPPING and a.stop_sent == s.now
    assert s.policy.restarts["recycled"] == 1
    assert b.phase is Phase.READY


def test_a_recycle_request_is_refused_while_backing_off_or_stopping():
    s = Supervisor(workers=2)
    a, b = s.serving()
    s.exit(b, 1)
    fail_a_round(s)
    s.now = s.policy.respawn_at - TICK
    assert s.policy.on_recycle(a, 1000, s.now) == [] and a.phase is Phase.READY
    s.now = s.policy.respawn_at
    assert s.policy.on_recycle(a, 1000, s.now) != [] and a.phase is Phase.RETIRING
    # Already retiring: asked again with each beat, said once.
    assert s.policy.on_recycle(a, 1001, s.now) == []


def test_a_recycle_request_is_refused_once_stopping():
    s = Supervisor()
    (w,) = s.serving()
    s.policy.stopping = "graceful"
    assert s.policy.on_recycle(w, 1000, s.now) == [] and w.phase is Phase.READY


def test_a_reload_replaces_every_worker_once_all_new_ones_are_ready():
    s = Supervisor(workers=2)
    old = s.serving()
    actions = s.policy.reload("Received SIGHUP")
    assert messages(actions, logging.INFO) == ["Received SIGHUP: starting 2 new worker(s)"]
    assert RunHook("on_reload") in actions
    assert phases(old) == [Phase.RETIRING, Phase.RETIRING]
    new = s.tick_and_fork()
    assert len(new) == 2
    s.ready(new[0])
    assert signals(s.tick()) == []
    s.ready(new[1])
    assert signals(s.tick()) == [(old[0].pid, SIGTERM), (old[1].pid, SIGTERM)]
    assert s.policy.restarts["reload"] == 2
    # Their exits are stops, not deaths.
    s.exit(old[0], 0)
    s.exit(old[1], 0)
    assert s.policy.restarts["died"] == 0 and s.policy.exit_code == EXIT_OK


def test_sighup_reloads_and_a_preloaded_app_is_said_not_to_change():
    s = Supervisor(workers=2, preloaded=True)
    s.serving()
    actions = s.signal(signal.SIGHUP)
    assert messages(actions, logging.WARNING) == [
        "Received SIGHUP: restarting 2 worker(s); the app was loaded in the supervisor"
        " (--preload or an app object), so its code does not change"
    ]


def test_a_reload_does_not_wait_for_the_back_off():
    s = Supervisor(workers=2)
    _, b = s.serving()
    s.exit(b, 1)
    fail_a_round(s)
    assert s.tick() == []
    s.policy.reload("Detected changes in app.py")
    assert s.tick() == [Spawn(2)]


def test_a_reload_retires_a_worker_still_starting_too():
    s = Supervisor(workers=2)
    a, b = s.serving()
    s.exit(b, 1)
    (starting,) = s.tick_and_fork()
    s.policy.reload("Received SIGHUP")
    assert phases([a, starting]) == [Phase.RETIRING, Phase.RETIRING]
    new = s.tick_and_fork()
    for w in new:
        s.ready(w)
    assert signals(s.tick()) == [(a.pid, SIGTERM), (starting.pid, SIGTERM)]


def test_a_new_worker_failing_cancels_the_reload():
    s = Supervisor(workers=2)
    old = s.serving()
    s.policy.reload("Received SIGHUP")
    broken, other = s.tick_and_fork()
    actions = s.exit(broken, 1, "exit code 1")
    assert messages(actions) == [
        f"Worker [{broken.pid}] failed to start (exit code 1); the running workers keep"
        " serving the code they have",
        "Replacing workers is paused; trying again in 0.2 s",
    ]
    # The other new one would load the same broken code.
    assert signals(actions) == [(other.pid, SIGKILL)]
    assert other.phase is Phase.KILLED
    assert phases(old) == [Phase.READY, Phase.READY]
    assert s.policy.start_failures == 1
    assert s.policy.respawn_at == s.now + 0.25
    assert s.policy.stopping is None
    assert s.tick() == []
    s.exit(other, -signal.SIGKILL)
    assert s.tick() == [] and s.policy.restarts["reload"] == 0


def test_a_new_worker_crashing_right_after_ready_cancels_the_reload():
    s = Supervisor(workers=2)
    old = s.serving()
    s.policy.reload("Received SIGHUP")
    a, b = s.tick_and_fork()
    s.ready(a)
    s.advance(1)
    actions = s.exit(a, 1)
    assert "the running workers keep serving" in messages(actions)[0]
    assert phases(old) == [Phase.READY, Phase.READY]
    assert b.phase is Phase.KILLED


def test_a_retiring_worker_dying_on_its_own_is_a_death_not_a_failed_reload():
    s = Supervisor(workers=2)
    a, b = s.serving()
    s.policy.on_recycle(a, 1000, s.now)
    actions = s.exit(a, -signal.SIGSEGV, "killed by SIGSEGV")
    assert "died unexpectedly" in messages(actions)[0]
    assert s.policy.restarts == {
        "died": 1,
        "timeout": 0,
        "recycled": 0,
        "reload": 0,
        "memory": 0,
    }
    assert b.phase is Phase.READY


def test_a_recycling_replacement_failing_cancels_the_recycling():
    s = Supervisor(workers=2)
    a, _ = s.serving()
    s.policy.on_recycle(a, 1000, s.now)
    (new,) = s.tick_and_fork()
    s.exit(new, 1)
    assert a.phase is Phase.READY
    # Until the pause ends, its next request is refused.
    assert s.policy.on_recycle(a, 1001, s.now) == []
    assert s.tick() == []


# -- stopping ---------------------------------------------------------------------------------


def test_sigterm_drains_every_worker():
    s = Supervisor(workers=2)
    a, b = s.serving()
    actions = s.signal(signal.SIGTERM)
    assert messages(actions) == [
        "Received SIGTERM: shutting down gracefully",
        "Waiting for 2 worker(s) to finish their requests",
    ]
    assert signals(actions) == [(a.pid, SIGTERM), (b.pid, SIGTERM)]
    assert actions[-1] == StopReloader()
    assert s.policy.stopping == "graceful"
    # The gate closes before any worker is told, or a worker could stop before it is closed
    # and leave what the kernel queued to be reset.
    gate = actions.index(CloseGate())
    first_signal = next(i for i, a in enumerate(actions) if isinstance(a, SendSignal))
    assert gate < first_signal
    assert phases([a, b]) == [Phase.STOPPING, Phase.STOPPING]
    # Nothing is replaced any more.
    s.exit(a, 0)
    assert s.tick() == []


@pytest.mark.parametrize("graceful", [0.0, 30.0])
def test_a_draining_worker_is_killed_just_after_graceful_timeout_plus_ten_seconds(
    graceful: float,
):
    s = Supervisor(timeout_graceful_shutdown=graceful)
    (w,) = s.serving()
    s.signal(signal.SIGTERM)
    s.advance(graceful + STOP_MARGIN)
    assert s.tick() == []
    s.advance(TICK)
    actions = s.tick()
    assert messages(actions, logging.WARNING) == [
        f"Worker [{w.pid}] did not stop within {graceful + STOP_MARGIN:.0f} s; killing it"
    ]
    assert signals(actions) == [(w.pid, SIGKILL)]
    assert w.phase is Phase.KILLED
    s.advance(60)
    assert s.tick() == []


def test_a_worker_stopped_without_the_supervisor_stopping_has_the_same_deadline():
    s = Supervisor(workers=2)
    old = s.serving()
    s.policy.reload("Received SIGHUP")
    for w in s.tick_and_fork():
        s.ready(w)
    s.tick()
    s.advance(30 + STOP_MARGIN)
    assert s.tick() == []
    s.advance(TICK)
    assert signals(s.tick()) == [(old[0].pid, SIGKILL), (old[1].pid, SIGKILL)]


def test_sigquit_stops_at_once_and_kills_five_seconds_later():
    s = Supervisor(workers=2)
    ready, other = s.serving()
    s.exit(other, 1)
    (starting,) = s.tick_and_fork()
    actions = s.signal(signal.SIGQUIT)
    assert messages(actions) == [
        "Received SIGQUIT: stopping at once",
        "Waiting for 2 worker(s) to stop",
    ]
    # A worker still loading the app has no handler yet: SIGQUIT would dump core.
    assert signals(actions) == [(ready.pid, SIGQUIT), (starting.pid, SIGKILL)]
    assert s.policy.stopping == "fast"
    s.advance(FAST_STOP_TIMEOUT)
    assert s.tick() == []
    s.advance(TICK)
    assert signals(s.tick()) == [(ready.pid, SIGKILL)]


def test_a_second_sigint_stops_at_once_and_a_second_sigterm_changes_nothing():
    s = Supervisor()
    (w,) = s.serving()
    s.signal(signal.SIGINT)
    s.advance(1)
    assert s.signal(signal.SIGTERM) == []
    assert w.stop_sent == s.now - 1
    actions = s.signal(signal.SIGINT)
    assert messages(actions)[0] == "Received SIGINT again: stopping at once"
    assert signals(actions) == [(w.pid, SIGQUIT)]
    assert s.policy.stopping == "fast" and w.stop_sent == s.now
    assert s.signal(signal.SIGQUIT)[1:] == []


def test_sigterm_leaves_workers_already_stopping_alone_and_sigquit_does_not():
    s = Supervisor(workers=3)
    a, b, c = s.serving()
    s.signal(signal.SIGTTOU)
    assert signals(s.tick()) == [(a.pid, SIGTERM)]
    sent = a.stop_sent
    s.advance(1)
    assert signals(s.signal(signal.SIGTERM)) == [(b.pid, SIGTERM), (c.pid, SIGTERM)]
    assert a.stop_sent == sent
    assert (a.pid, SIGQUIT) in signals(s.signal(signal.SIGQUIT))
    assert a.stop_sent == s.now


def test_a_killed_worker_is_not_signalled_again_when_stopping():
    s = Supervisor(workers=2, timeout_worker=1.0)
    a, b = s.serving()
    s.policy.on_beat(b, None, s.now + 10)
    ticks(s, 1.25)
    assert a.phase is Phase.KILLED
    assert a.pid not in [pid for pid, _ in signals(s.signal(signal.SIGQUIT))]
    s.advance(60)
    assert a.pid not in [pid for pid, _ in signals(s.tick())]


@pytest.mark.parametrize(
    ("code", "was_ready", "during_shutdown", "exit_code"),
    [
        (3, True, True, 3),  # lifespan.shutdown.failed
        (3, False, True, EXIT_OK),
        (3, True, False, EXIT_OK),  # retired earlier: not the supervisor's business
        (0, True, True, EXIT_OK),
        (-signal.SIGKILL, True, True, EXIT_OK),
    ],
)
def test_a_worker_failing_its_shutdown_gives_the_supervisor_its_exit_code(
    code: int, was_ready: bool, during_shutdown: bool, exit_code: int
):
    s = Supervisor(workers=2)
    _, b = s.serving()
    if not was_ready:
        s.exit(b, 1)
        (b,) = s.tick_and_fork()
    s.policy.on_recycle(b, 1000, s.now)
    s.ready(s.fork())
    s.tick()
    assert b.phase is Phase.STOPPING
    if during_shutdown:
        s.signal(signal.SIGTERM)
    actions = s.exit(b, code)
    assert s.policy.exit_code == exit_code
    level = logging.INFO if code == 0 else logging.WARNING
    assert messages(actions, level) == [f"Worker [{b.pid}] stopped (exit code {code})"]


def test_the_first_failed_shutdown_sets_the_exit_code():
    s = Supervisor(workers=2)
    a, b = s.serving()
    s.signal(signal.SIGTERM)
    s.exit(a, 3)
    s.exit(b, 4)
    assert s.policy.exit_code == 3


def test_a_killed_worker_stopping_is_logged_as_info():
    s = Supervisor()
    (w,) = s.serving()
    s.signal(signal.SIGTERM)
    s.advance(30 + STOP_MARGIN + 1)
    s.tick()
    actions = s.exit(w, 2)
    assert messages(actions, logging.INFO) == [f"Worker [{w.pid}] stopped (exit code 2)"]
    assert s.policy.exit_code == 2


# -- more or fewer workers --------------------------------------------------------------------


def test_sigttin_adds_a_worker_and_sigttou_stops_one():
    s = Supervisor(workers=2)
    a, _ = s.serving()
    actions = s.signal(signal.SIGTTIN)
    assert messages(actions) == ["Received SIGTTIN: 3 workers"]
    (c,) = s.tick_and_fork()
    s.advance(1)
    s.ready(c)
    assert messages(s.signal(signal.SIGTTOU)) == ["Received SIGTTOU: 2 worker(s)"]
    # The oldest serving worker goes.
    actions = s.tick()
    assert messages(actions) == [f"Stopping worker [{a.pid}] (fewer workers asked for)"]
    assert signals(actions) == [(a.pid, SIGTERM)]
    assert s.tick() == []


def test_a_worker_still_starting_is_stopped_first():
    s = Supervisor(workers=3)
    a, _, _ = s.serving()
    s.exit(a, 1)
    (starting,) = s.tick_and_fork()
    s.signal(signal.SIGTTOU)
    assert signals(s.tick()) == [(starting.pid, SIGTERM)]


def test_sigttou_keeps_one_worker():
    s = Supervisor()
    s.serving()
    assert messages(s.signal(signal.SIGTTOU)) == ["Received SIGTTOU: 1 worker(s)"]
    assert s.policy.target == 1 and s.tick() == []


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU])
def test_once_stopping_only_stopping_signals_count(sig: int):
    s = Supervisor(workers=2)
    s.serving()
    s.signal(signal.SIGTERM)
    assert s.signal(sig) == []
    assert s.policy.target == 2
    assert s.policy.reload("Detected changes in app.py") == []


# -- a reload while a worker is still starting --------------------------------------------------


def reload_while_starting(s: Supervisor) -> tuple[WorkerRecord, WorkerRecord]:
    """Two workers, one serving and one starting (its predecessor died), then a reload: the
    serving one and the starting one both retire."""
    a, b = s.serving()
    s.exit(b, 1)
    (starting,) = s.tick_and_fork()
    s.policy.reload("Received SIGHUP")
    assert phases([a, starting]) == [Phase.RETIRING, Phase.RETIRING]
    assert starting.ready_at is None
    return a, starting


def test_a_new_worker_failing_kills_one_retired_while_it_was_starting():
    s = Supervisor(workers=2)
    a, starting = reload_while_starting(s)
    broken, other = s.tick_and_fork()
    actions = s.exit(broken, 1)
    # Not ready: it may have loaded the same broken code.
    assert signals(actions) == [(starting.pid, SIGKILL), (other.pid, SIGKILL)]
    assert a.phase is Phase.READY


def test_a_worker_retired_while_starting_that_fails_cancels_the_reload():
    s = Supervisor(workers=2)
    a, starting = reload_while_starting(s)
    new = s.tick_and_fork()
    actions = s.exit(starting, 3)
    assert "the running workers keep serving" in messages(actions)[0]
    assert s.policy.restarts["died"] == 1  # its predecessor
    assert a.phase is Phase.READY
    assert phases(new) == [Phase.KILLED, Phase.KILLED]


def test_a_worker_retired_while_starting_is_not_checked_for_silence():
    s = Supervisor(workers=2, timeout_worker=1.0)
    a, starting = reload_while_starting(s)
    s.policy.on_beat(a, None, s.now + 60)
    assert not [x for x in ticks(s, 30) if isinstance(x, KillHung)]
    assert starting.phase is Phase.RETIRING


def test_a_cancelled_reload_leaves_a_worker_being_stopped_alone():
    s = Supervisor(workers=2)
    a, b = s.serving()
    s.exit(b, 1)
    (starting,) = s.tick_and_fork()
    s.signal(signal.SIGTTOU)
    assert signals(s.tick()) == [(starting.pid, SIGTERM)]
    s.policy.reload("Received SIGHUP")
    (new,) = s.tick_and_fork()
    actions = s.exit(new, 1)
    assert signals(actions) == []
    assert starting.phase is Phase.STOPPING and a.phase is Phase.READY


def test_the_first_worker_failing_stops_the_others_quietly():
    s = Supervisor()
    first = s.fork()
    s.policy.reload("Received SIGHUP")
    (new,) = s.tick_and_fork()
    actions = s.exit(first, 3)
    assert messages(actions) == []
    assert signals(actions) == [(new.pid, SIGKILL)]
    assert s.policy.stopping == "fast" and s.policy.exit_code == 3


def test_a_fork_failing_beside_a_worker_still_starting_does_not_stop():
    s = Supervisor()
    s.fork()
    s.policy.reload("Received SIGHUP")
    s.policy.spawn_failed("no memory", s.now)
    assert s.policy.stopping is None


def test_a_worker_keeps_its_first_reason_to_retire():
    # A recycling cancelled by a failed replacement, then a reload: counted as recycled.
    s = Supervisor(workers=2)
    a, _ = s.serving()
    s.policy.on_recycle(a, 1000, s.now)
    (broken,) = s.tick_and_fork()
    s.exit(broken, 1)
    assert a.phase is Phase.READY and a.retire_reason == "recycled"
    s.policy.reload("Received SIGHUP")
    for w in s.tick_and_fork():
        s.ready(w)
    s.tick()
    assert s.policy.restarts["recycled"] == 1 and s.policy.restarts["reload"] == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT])
def test_every_stop_closes_the_gate_once(sig: int):
    s = Supervisor(workers=1)
    s.serving()
    assert s.signal(sig).count(CloseGate()) == 1
    assert CloseGate() not in s.signal(signal.SIGTERM)
    # A reload or a recycling keeps the gate open: the new workers take the queue.
    t = Supervisor(workers=1)
    t.serving()
    assert CloseGate() not in t.signal(signal.SIGHUP)


# -- --shutdown-delay ------------------------------------------------------------------------


def test_a_shutdown_delay_first_fails_health_checks_and_serves_on():
    s = Supervisor(workers=2, shutdown_delay=5.0)
    a, b = s.serving()
    actions = s.signal(signal.SIGTERM)
    assert messages(actions) == [
        "Received SIGTERM: failing health checks for 5 s (--shutdown-delay), then shutting down"
        " gracefully"
    ]
    assert [x for x in actions if isinstance(x, Leave)] == [Leave(a.pid), Leave(b.pid)]
    assert signals(actions) == [] and CloseGate() not in actions, "nothing stops yet"
    assert phases([a, b]) == [Phase.READY, Phase.READY]
    s.advance(5.0 - TICK)
    assert s.tick() == [], "not one tick before the delay is over"
    s.advance(TICK)
    actions = s.tick()
    assert messages(actions)[0] == "The --shutdown-delay is over: shutting down gracefully"
    assert CloseGate() in actions
    assert signals(actions) == [(a.pid, SIGTERM), (b.pid, SIGTERM)]
    assert s.policy.stopping == "graceful"


@pytest.mark.parametrize("again", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_skips_the_rest_of_the_delay(again: int):
    s = Supervisor(shutdown_delay=30.0)
    (w,) = s.serving()
    s.signal(signal.SIGINT)
    s.advance(1.0)
    actions = s.signal(again)
    name = signal.Signals(again).name
    assert messages(actions)[0] == f"Received {name} again: skipping the rest of --shutdown-delay"
    assert signals(actions) == [(w.pid, SIGTERM)]
    assert s.policy.stopping == "graceful"


def test_sigquit_during_the_delay_stops_at_once():
    s = Supervisor(shutdown_delay=30.0)
    (w,) = s.serving()
    s.signal(signal.SIGTERM)
    assert signals(s.signal(signal.SIGQUIT)) == [(w.pid, SIGQUIT)]
    assert s.policy.stopping == "fast"


def test_during_the_delay_nothing_is_reloaded_or_recycled_and_replacements_leave_too():
    s = Supervisor(workers=2, shutdown_delay=10.0)
    a, b = s.serving()
    starting = s.fork()  # a worker still loading its app has no handler for the signal yet
    actions = s.signal(signal.SIGTERM)
    assert Leave(starting.pid) not in actions
    assert s.signal(signal.SIGHUP) == []
    assert s.policy.on_recycle(a, 1000, s.now) == []
    assert phases([a, b]) == [Phase.READY, Phase.READY]
    assert Leave(starting.pid) in s.ready(starting), "told once it can hear it"


def test_without_a_delay_a_stop_begins_at_once():
    s = Supervisor(shutdown_delay=0.0)
    (w,) = s.serving()
    actions = s.signal(signal.SIGTERM)
    assert not [x for x in actions if isinstance(x, Leave)]
    assert signals(actions) == [(w.pid, SIGTERM)]


# -- --max-worker-memory -----------------------------------------------------------------------

MIB = 1024 * 1024


def test_a_worker_over_the_memory_limit_is_replaced_new_one_first():
    s = Supervisor(workers=2, max_worker_memory=100)
    a, b = s.serving()
    assert s.policy.on_memory(a, 40 * MIB, s.now) == []  # its size as it starts
    s.advance(1)
    assert s.policy.on_memory(a, 100 * MIB, s.now) == [], "at the limit is not over it"
    s.advance(1)
    actions = s.policy.on_memory(a, 101 * MIB, s.now)
    assert messages(actions, logging.WARNING) == [
        f"Worker [{a.pid}] uses 101.0 MiB of memory (RSS), over --max-worker-memory 100 MiB;"
        " replacing it"
    ]
    assert a.phase is Phase.RETIRING and a.retire_reason == "memory"
    # A retiring worker is replaced once, however large it grows meanwhile.
    assert s.policy.on_memory(a, 200 * MIB, s.now) == []
    (new,) = s.tick_and_fork()
    assert signals(s.tick()) == [], "the old one serves until the new one is ready"
    assert s.policy.restarts["memory"] == 0
    s.advance(1)
    s.ready(new)
    assert signals(s.tick()) == [(a.pid, SIGTERM)]
    assert s.policy.restarts["memory"] == 1
    assert b.phase is Phase.READY


def test_memory_is_not_a_reason_without_the_option_or_for_a_starting_worker():
    s = Supervisor(workers=1)
    (a,) = s.serving()
    assert s.policy.on_memory(a, 10_000 * MIB, s.now) == [] and a.phase is Phase.READY
    t = Supervisor(workers=1, max_worker_memory=100)
    starting = t.fork()
    assert t.policy.on_memory(starting, 500 * MIB, t.now) == []
    assert starting.phase is Phase.STARTING and starting.first_rss is None


def test_a_worker_that_starts_over_the_memory_limit_is_not_replaced_without_end():
    s = Supervisor(workers=1, max_worker_memory=100)
    (a,) = s.serving()
    actions = s.policy.on_memory(a, 150 * MIB, s.now)
    assert messages(actions, logging.WARNING) == [
        f"Worker [{a.pid}] uses 150.0 MiB as it starts, over --max-worker-memory 100 MiB: it is"
        " not replaced for its memory (raise the limit)"
    ]
    s.advance(1)
    assert s.policy.on_memory(a, 300 * MIB, s.now) == []
    assert a.phase is Phase.READY


def test_memory_replacement_waits_while_stopping_or_backing_off():
    s = Supervisor(workers=2, max_worker_memory=100)
    a, b = s.serving()
    s.policy.on_memory(a, 40 * MIB, s.now)
    s.exit(b, 1)
    fail_a_round(s)
    s.now = s.policy.respawn_at - TICK
    assert s.policy.on_memory(a, 150 * MIB, s.now) == [] and a.phase is Phase.READY
    s.now = s.policy.respawn_at
    assert s.policy.on_memory(a, 150 * MIB, s.now) != [] and a.phase is Phase.RETIRING
    t = Supervisor(workers=1, max_worker_memory=100)
    (c,) = t.serving()
    t.policy.on_memory(c, 40 * MIB, t.now)
    t.signal(signal.SIGTERM)
    assert t.policy.on_memory(c, 150 * MIB, t.now) == []
