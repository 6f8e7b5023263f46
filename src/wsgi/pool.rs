//! A bounded pool of blocking threads that run jobs, with a bounded queue in front.
//!
//! Threads start on demand up to `max_threads` and retire after sitting idle for a while, so
//! a generous limit costs nothing when the worker is quiet. A job that becomes long-lived
//! (a streaming response: SSE, a large download) can [`Lease::detach`] from the limit: its
//! thread stops counting, so streams cannot starve the pool of threads for ordinary requests.
//! What bounds streams then is `--limit-concurrency`, as for every request.
//!
//! Waking a thread costs a context switch, and on a busy core the threads of one worker take
//! turns on it anyway (and on the GIL), so the pool wakes as few as keep the work moving: at
//! most one thread is ever "on its way" to the queue. A thread that takes a job while more are
//! waiting wakes the next one (so a burst of blocking jobs fans out over the threads), and a
//! thread that finishes a job takes the next one without sleeping ([`Run::session`] lets the
//! WSGI runner keep the GIL across such a run of jobs).
//!
//! What the queue does when it grows is [`Bounds`]: by default nothing is refused, as a
//! Gunicorn gthread worker refuses nothing; past [`Bounds::hold_at`] waiting jobs the pool
//! asks the worker to stop accepting connections until it catches up, so that a burst waits
//! in the listen backlog. An operator may ask for shedding instead: a count (`--queue-size`,
//! refused at submit) or a time (`--queue-timeout`, a job that waited longer is handed to
//! [`Run::refuse`] and never runs).

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::bridge::held_wakeup::{HeldWakeup, Look};

/// Runs one job on a pool thread.
pub trait Run<J>: Send + Sync + 'static {
    fn run(&self, job: J, lease: &Lease<'_, J>);

    /// Answers a job that waited past [`Bounds::timeout`] without running it; called with
    /// no lock held, on a pool thread or on the thread that calls [`Pool::expire`].
    fn refuse(&self, job: J) {
        drop(job);
    }

    /// Wraps a pool thread's whole life (to set up per-thread state once).
    fn thread(&self, main: &mut (dyn FnMut() + Send)) {
        main();
    }

    /// Wraps a run of jobs taken one after another without sleeping in between.
    fn session(&self, jobs: &mut dyn FnMut()) {
        jobs();
    }
}

/// How far the queue may grow, and what happens then.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    /// Jobs that may wait; [`Pool::submit`] gives back any more. `None`: no count.
    pub max_queue: Option<usize>,
    /// How long a job may wait for a thread before it is refused instead of run.
    pub timeout: Option<Duration>,
    /// From this many waiting jobs, the pool asks its [`Hold`] to stop taking new work, and
    /// lets it go on once fewer wait.
    pub hold_at: Option<usize>,
}

impl Bounds {
    /// At most `n` waiting jobs, and nothing else.
    pub fn count(n: usize) -> Self {
        Self {
            max_queue: Some(n),
            ..Self::default()
        }
    }
}

/// Told when the queue crosses [`Bounds::hold_at`], either way (`true`: hold).
pub type Hold = Arc<dyn Fn(bool) + Send + Sync>;

/// A job in the queue, and since when it waits.
struct Waiting<J> {
    job: J,
    since: Instant,
}

struct State<J> {
    queue: VecDeque<Waiting<J>>,
    /// The [`Hold`] was told to hold.
    holding: bool,
    /// Threads alive, detached or not.
    threads: usize,
    /// Threads that detached from the limit for the job they run now.
    detached: usize,
    /// Threads waiting for a job.
    idle: usize,
    /// Wake-ups (or new threads) sent that no thread has answered yet.
    waking: usize,
    /// Of those, condvar notifications: the next threads to come back from waiting, woken or
    /// timed out, answer them, so a notification that met a thread timing out is not lost.
    notified: usize,
    /// Threads whose Python side has not finished yet (for a clean stop).
    alive: usize,
    /// The thread wake-up the I/O thread holds back until it is about to sleep, and
    /// [`Pool::deliver_overdue`]'s task.
    held: HeldWakeup,
    stopping: bool,
}

pub struct Pool<J> {
    state: Mutex<State<J>>,
    work: Condvar,
    /// Signalled when a thread has ended, for [`Pool::stop`].
    ended: Condvar,
    max_threads: usize,
    bounds: Bounds,
    hold: Option<Hold>,
    idle_timeout: Duration,
    runner: Arc<dyn Run<J>>,
}

/// A thread's hold on its place in the pool while it runs a job.
pub struct Lease<'a, J> {
    pool: &'a Arc<Pool<J>>,
    detached: std::cell::Cell<bool>,
}

impl<J: Send + 'static> Lease<'_, J> {
    /// Stops counting this thread against the limit until its job ends; the pool starts a
    /// replacement if requests are waiting.
    pub fn detach(&self) {
        if self.detached.replace(true) {
            return;
        }
        let mut st = self.pool.state.lock();
        st.detached += 1;
        // A place in the limit is free again: use it if jobs wait.
        self.pool.wake_one(&mut st);
    }
}

impl<J: Send + 'static> Pool<J> {
    pub fn new(
        max_threads: usize,
        bounds: Bounds,
        hold: Option<Hold>,
        idle_timeout: Duration,
        runner: Arc<dyn Run<J>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                holding: false,
                threads: 0,
                detached: 0,
                idle: 0,
                waking: 0,
                notified: 0,
                alive: 0,
                held: HeldWakeup::default(),
                stopping: false,
            }),
            work: Condvar::new(),
            ended: Condvar::new(),
            max_threads: max_threads.max(1),
            bounds,
            hold,
            idle_timeout,
            runner,
        })
    }

    /// Queues a job; gives it back when the queue is full (or the pool stopped).
    pub fn submit(self: &Arc<Self>, job: J) -> Result<(), J> {
        self.submit_at(job, Instant::now())
    }

    /// [`Pool::submit`] of a job that waits since `since` (tests set it in the past).
    pub(crate) fn submit_at(self: &Arc<Self>, job: J, since: Instant) -> Result<(), J> {
        let mut st = self.state.lock();
        if st.stopping {
            return Err(job);
        }
        if let Some(max_queue) = self.bounds.max_queue {
            // Jobs that an idle or a yet-to-start thread will take at once are not waiting.
            let free = st.idle + self.max_threads.saturating_sub(st.threads - st.detached);
            if st.queue.len() >= max_queue + free {
                return Err(job);
            }
        }
        st.queue.push_back(Waiting { job, since });
        self.update_hold(&mut st);
        // The I/O thread goes on reading other requests before it sleeps: waking a thread
        // now would make the two take turns per request on a busy core.
        // Bounded like the mailbox's: a busy I/O thread may not park for a while.
        let waiting = st.queue.len();
        let defer = crate::bridge::mailbox::defers_wakeups() && !st.held.is_due(waiting);
        let mut watcher = None;
        if !defer {
            st.held.end();
            self.wake_one(&mut st);
        } else if !st.held.is_held() {
            watcher = st.held.begin(waiting);
        }
        drop(st);
        if let Some(w) = watcher {
            w.wake();
        }
        Ok(())
    }

    /// Runs on the I/O thread for its lifetime, so that a held wake-up goes out even when
    /// the thread never parks and nothing more is submitted (a connection that keeps it busy,
    /// such as a flood of cheap HTTP/2 frames, would otherwise hold every other request back
    /// until it stops). The same as the mailbox's `deliver_overdue`: the submit that starts a
    /// hold wakes this task, which Tokio runs after the tasks already queued; if none of them
    /// submitted more, the wake-up goes out now, else it looks again after one more turn.
    pub async fn deliver_overdue(self: Arc<Self>) {
        std::future::poll_fn(|cx| {
            let mut st = self.state.lock();
            let waiting = st.queue.len();
            match st.held.look(waiting, cx) {
                Look::Again => {
                    drop(st);
                    cx.waker().wake_by_ref();
                }
                Look::Deliver => self.wake_one(&mut st),
                Look::Idle => {}
            }
            Poll::<()>::Pending
        })
        .await
    }

    /// Delivers a wake-up [`Pool::submit`] held back; the I/O thread calls it before parking.
    pub fn flush_wakeups(self: &Arc<Self>) {
        let mut st = self.state.lock();
        if st.held.end() {
            self.wake_one(&mut st);
        }
    }

    /// Refuses the jobs that have waited past the time bound at `now`, oldest first, and
    /// returns when the next one will have: the caller (a timer on the I/O thread) comes back
    /// then, or after a whole time-out if none waits. `None` when there is no time bound.
    pub fn expire(self: &Arc<Self>, now: Instant) -> Option<Instant> {
        let timeout = self.bounds.timeout?;
        let mut st = self.state.lock();
        loop {
            // Jobs queue in order, so the oldest is in front.
            let next = st.queue.front().map(|w| w.since + timeout);
            match next {
                Some(deadline) if deadline <= now => {
                    if let Some(w) = st.queue.pop_front() {
                        self.update_hold(&mut st);
                        MutexGuard::unlocked(&mut st, || self.runner.refuse(w.job));
                    }
                }
                Some(deadline) => return Some(deadline),
                None => return Some(now + timeout),
            }
        }
    }

    /// The next job that has not waited too long, refusing (with the lock released) those
    /// that have on the way.
    fn pop(self: &Arc<Self>, st: &mut MutexGuard<'_, State<J>>) -> Option<J> {
        loop {
            let w = st.queue.pop_front()?;
            self.update_hold(st);
            match self.bounds.timeout {
                Some(timeout) if w.since.elapsed() >= timeout => {
                    MutexGuard::unlocked(st, || self.runner.refuse(w.job));
                }
                _ => return Some(w.job),
            }
        }
    }

    /// Tells the [`Hold`] when the queue crosses its mark.
    fn update_hold(&self, st: &mut State<J>) {
        let (Some(hold), Some(at)) = (&self.hold, self.bounds.hold_at) else {
            return;
        };
        let over = st.queue.len() >= at;
        if over != st.holding {
            st.holding = over;
            hold(over);
        }
    }

    /// Sends one thread to the queue, unless one is on its way already: wakes an idle one, or
    /// starts one within the limit.
    fn wake_one(self: &Arc<Self>, st: &mut State<J>) {
        if st.waking > 0 || st.queue.is_empty() {
            return;
        }
        if st.idle > st.notified {
            st.waking += 1;
            st.notified += 1;
            self.work.notify_one();
        } else if st.threads - st.detached < self.max_threads {
            let pool = self.clone();
            let spawned = std::thread::Builder::new()
                .name("juggler-wsgi".into())
                .spawn(move || {
                    let runner = pool.runner.clone();
                    runner.thread(&mut || pool.clone().thread_main());
                    let mut st = pool.state.lock();
                    st.alive -= 1;
                    pool.ended.notify_all();
                });
            // Out of threads: the queued job waits for a running thread to come back, or for
            // the next submit to try again.
            if spawned.is_ok() {
                st.threads += 1;
                st.alive += 1;
                st.waking += 1;
            }
        }
    }

    /// Takes no new jobs; idle threads end, busy ones after their job. Waits up to `wait` for
    /// threads to end (the caller must not hold anything they need, like the GIL) and returns
    /// how many are still running.
    pub fn stop(&self, wait: Duration) -> usize {
        let mut st = self.state.lock();
        st.stopping = true;
        self.work.notify_all();
        let deadline = std::time::Instant::now() + wait;
        while st.alive > 0 {
            if self.ended.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        st.alive
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// (threads alive, threads running a job, jobs waiting)
    pub fn stats(&self) -> (usize, usize, usize) {
        let st = self.state.lock();
        (st.threads, st.threads - st.idle, st.queue.len())
    }

    fn thread_main(self: Arc<Self>) {
        // A new thread answers the wake-up that started it.
        let mut woken = true;
        while let Some(first) = self.next_job(&mut woken) {
            let mut job = Some(first);
            let runner = self.runner.clone();
            runner.session(&mut || {
                while let Some(j) = job.take().or_else(|| self.try_job()) {
                    self.run_one(j);
                }
            });
            if self.retire_if_over_limit() {
                return;
            }
        }
    }

    fn run_one(self: &Arc<Self>, job: J) {
        let lease = Lease {
            pool: self,
            detached: std::cell::Cell::new(false),
        };
        // A panic in one job must not cost the pool a thread and its counts; the job's
        // exchange is dropped with it, which answers or closes its connection.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.runner.run(job, &lease);
        }));
        drop(ran);
        if lease.detached.get() {
            self.state.lock().detached -= 1;
        }
    }

    /// Over the limit again (a replacement took a detached thread's place): end this one.
    fn retire_if_over_limit(&self) -> bool {
        let mut st = self.state.lock();
        if st.threads - st.detached > self.max_threads {
            st.threads -= 1;
            return true;
        }
        false
    }

    /// The next job if one waits, without sleeping.
    fn try_job(self: &Arc<Self>) -> Option<J> {
        let mut st = self.state.lock();
        if st.threads - st.detached > self.max_threads {
            return None;
        }
        self.pop(&mut st)
    }

    /// The next job, or None when this thread should end (stopping, or idle too long).
    fn next_job(self: &Arc<Self>, woken: &mut bool) -> Option<J> {
        let mut st = self.state.lock();
        loop {
            if std::mem::take(woken) {
                st.waking = st.waking.saturating_sub(1);
            }
            if let Some(job) = self.pop(&mut st) {
                // More waiting: send the next thread, so blocking jobs fan out.
                self.wake_one(&mut st);
                return Some(job);
            }
            if st.stopping {
                st.threads -= 1;
                return None;
            }
            st.idle += 1;
            let timed_out = self.work.wait_for(&mut st, self.idle_timeout).timed_out();
            st.idle -= 1;
            // Whether this thread was the one notified or timed out as the notification came,
            // it answers one: `waking` then always drops back to 0.
            if st.notified > 0 {
                st.notified -= 1;
                st.waking = st.waking.saturating_sub(1);
            }
            if timed_out && st.queue.is_empty() && !st.stopping {
                st.threads -= 1;
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Jobs are channels: a job runs until its channel says how to end.
    struct Blocking {
        started: Mutex<mpsc::Sender<usize>>,
    }

    enum Job {
        Wait(usize, mpsc::Receiver<bool>),
    }

    impl Run<Job> for Blocking {
        fn run(&self, job: Job, lease: &Lease<'_, Job>) {
            let Job::Wait(id, rx) = job;
            let _ = self.started.lock().send(id);
            // true: become a stream (detach), then wait for the end.
            if let Ok(true) = rx.recv() {
                lease.detach();
                let _ = rx.recv();
            }
        }
    }

    fn pool(threads: usize, queue: usize) -> (Arc<Pool<Job>>, mpsc::Receiver<usize>) {
        let (tx, rx) = mpsc::channel();
        let runner = Arc::new(Blocking {
            started: Mutex::new(tx),
        });
        (
            Pool::new(
                threads,
                Bounds::count(queue),
                None,
                Duration::from_millis(200),
                runner,
            ),
            rx,
        )
    }

    fn job(id: usize) -> (Job, mpsc::Sender<bool>) {
        let (tx, rx) = mpsc::channel();
        (Job::Wait(id, rx), tx)
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn bounded_threads_then_bounded_queue_then_refusal() {
        let (pool, started) = pool(2, 1);
        let (a, ea) = job(1);
        let (b, eb) = job(2);
        let (c, ec) = job(3);
        assert!(pool.submit(a).is_ok());
        assert!(pool.submit(b).is_ok());
        let mut first = [started.recv_timeout(T).ok(), started.recv_timeout(T).ok()];
        first.sort();
        assert_eq!(first, [Some(1), Some(2)]);
        assert!(pool.submit(c).is_ok(), "queued behind two busy threads");
        let (d, _ed) = job(4);
        assert!(pool.submit(d).is_err(), "queue of one is full");
        assert_eq!(pool.stats(), (2, 2, 1));
        ea.send(false).expect("end job 1");
        assert_eq!(
            started.recv_timeout(T).ok(),
            Some(3),
            "the queued job runs next"
        );
        eb.send(false).expect("end job 2");
        ec.send(false).expect("end job 3");
    }

    #[test]
    fn a_detached_stream_frees_its_place_for_waiting_jobs() {
        let (pool, started) = pool(1, 4);
        let (stream, es) = job(1);
        let (plain, ep) = job(2);
        assert!(pool.submit(stream).is_ok());
        assert_eq!(started.recv_timeout(T).ok(), Some(1));
        assert!(pool.submit(plain).is_ok());
        assert!(started.recv_timeout(Duration::from_millis(100)).is_err());
        es.send(true).expect("detach");
        assert_eq!(
            started.recv_timeout(T).ok(),
            Some(2),
            "a replacement thread ran it"
        );
        ep.send(false).expect("end");
        es.send(false).expect("end stream");
        // One of the two threads retires: back within the limit.
        let deadline = std::time::Instant::now() + T;
        while pool.stats().0 > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(pool.stats().0 <= 1);
    }

    #[test]
    fn idle_threads_retire_and_stop_ends_them() {
        let (pool, started) = pool(3, 4);
        let (a, ea) = job(1);
        assert!(pool.submit(a).is_ok());
        assert_eq!(started.recv_timeout(T).ok(), Some(1));
        ea.send(false).expect("end");
        let deadline = std::time::Instant::now() + T;
        while pool.stats().0 > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.stats().0, 0, "retired after the idle timeout");
        assert_eq!(pool.stop(Duration::from_secs(5)), 0, "every thread ended");
        let (b, _eb) = job(2);
        assert!(pool.submit(b).is_err(), "a stopped pool takes nothing");
    }

    struct Quick(mpsc::Sender<usize>);

    impl Run<usize> for Quick {
        fn run(&self, job: usize, _lease: &Lease<'_, usize>) {
            let _ = self.0.send(job);
        }
    }

    #[test]
    fn no_job_is_stranded_while_threads_time_out_and_retire() {
        // Idle threads time out all the time here, racing the wake-ups sent to them.
        let (tx, done) = mpsc::channel();
        let pool = Pool::new(
            2,
            Bounds::count(8),
            None,
            Duration::from_micros(300),
            Arc::new(Quick(tx)),
        );
        for i in 0..400 {
            assert!(pool.submit(i).is_ok());
            assert_eq!(done.recv_timeout(T).ok(), Some(i), "job {i} was never run");
            std::thread::sleep(Duration::from_micros((i as u64 * 37) % 500));
        }
    }
    #[test]
    fn an_idle_thread_is_woken_for_each_new_job_and_stays() {
        // Idle threads outlive the test: a job that waited for one to time out would fail.
        let (tx, started) = mpsc::channel();
        let runner = Arc::new(Blocking {
            started: Mutex::new(tx),
        });
        let pool = Pool::new(1, Bounds::count(4), None, Duration::from_secs(60), runner);
        for id in 0..3 {
            let (j, end) = job(id);
            assert!(pool.submit(j).is_ok());
            assert_eq!(
                started.recv_timeout(T).ok(),
                Some(id),
                "job {id} ran at once"
            );
            assert_eq!(pool.stats(), (1, 1, 0));
            end.send(false).expect("end");
            let deadline = std::time::Instant::now() + T;
            while pool.stats() != (1, 0, 0) && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            assert_eq!(pool.stats(), (1, 0, 0), "idle, and kept for the next job");
        }
        assert_eq!(pool.stop(T), 0);
    }

    fn slow_pool(threads: usize) -> (Arc<Pool<Job>>, mpsc::Receiver<usize>) {
        let (tx, rx) = mpsc::channel();
        let runner = Arc::new(Blocking {
            started: Mutex::new(tx),
        });
        // Idle threads never time out here: only the pool's own rules change the counts.
        (
            Pool::new(
                threads,
                Bounds::count(4),
                None,
                Duration::from_secs(60),
                runner,
            ),
            rx,
        )
    }

    #[test]
    fn a_thread_is_started_per_waiting_job_and_no_more() {
        let (pool, started) = slow_pool(3);
        let (a, ea) = job(1);
        assert!(pool.submit(a).is_ok());
        assert_eq!(started.recv_timeout(T).ok(), Some(1));
        assert_eq!(pool.stats(), (1, 1, 0), "one job, one thread");
        let (pool2, started2) = slow_pool(3);
        let (b, eb) = job(2);
        let (c, ec) = job(3);
        assert!(pool2.submit(b).is_ok());
        assert!(pool2.submit(c).is_ok());
        let mut ids = [started2.recv_timeout(T).ok(), started2.recv_timeout(T).ok()];
        ids.sort();
        assert_eq!(ids, [Some(2), Some(3)]);
        assert_eq!(pool2.stats(), (2, 2, 0), "two jobs, two threads");
        for end in [ea, eb, ec] {
            end.send(false).expect("end");
        }
        assert_eq!(pool.stop(T), 0);
        assert_eq!(pool2.stop(T), 0);
    }

    #[test]
    fn the_replacement_for_a_stream_retires_as_soon_as_the_stream_ends() {
        let (pool, started) = slow_pool(1);
        let (stream, es) = job(1);
        let (plain, ep) = job(2);
        assert!(pool.submit(stream).is_ok());
        assert_eq!(started.recv_timeout(T).ok(), Some(1));
        es.send(true).expect("detach");
        assert!(pool.submit(plain).is_ok());
        assert_eq!(
            started.recv_timeout(T).ok(),
            Some(2),
            "a replacement ran it"
        );
        assert_eq!(pool.stats().0, 2);
        es.send(false).expect("end stream");
        ep.send(false).expect("end");
        // Not the idle time-out (a minute): the thread over the limit ends after its job.
        let deadline = std::time::Instant::now() + T;
        while pool.stats() != (1, 0, 0) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(pool.stats(), (1, 0, 0));
        // And the one left takes the next job at once.
        let (next, en) = job(3);
        assert!(pool.submit(next).is_ok());
        assert_eq!(started.recv_timeout(T).ok(), Some(3));
        en.send(false).expect("end");
        assert_eq!(pool.stop(T), 0);
    }

    #[test]
    fn a_held_back_wake_up_is_held_for_a_millisecond_at_most() {
        let (pool, started) = slow_pool(2);
        std::thread::spawn(move || {
            crate::bridge::mailbox::defer_wakeups_on_this_thread();
            let (a, ea) = job(1);
            assert!(pool.submit(a).is_ok());
            assert_eq!(pool.stats(), (0, 0, 1), "held back");
            // The bound is a time: past it, the next submit wakes a thread itself.
            std::thread::sleep(Duration::from_millis(5));
            let (b, eb) = job(2);
            assert!(pool.submit(b).is_ok());
            assert!(started.recv_timeout(T).is_ok(), "a thread was sent");
            ea.send(false).expect("end");
            eb.send(false).expect("end");
            pool.flush_wakeups();
            assert!(started.recv_timeout(T).is_ok());
            assert_eq!(pool.stop(T), 0);
        })
        .join()
        .expect("io thread");
    }
}

#[cfg(test)]
mod bounds_tests;
