//! What the queue does as it grows: holds accepting by default, refuses by count or by time
//! only when asked. The time bound is tested on a fake clock: jobs are queued "since" chosen
//! instants and [`Pool::expire`] is asked about chosen ones.

use super::*;
use std::sync::mpsc;

const T: Duration = Duration::from_secs(5);

/// A job runs until its channel says so; started and refused jobs are reported by id.
struct Recorder {
    started: Mutex<mpsc::Sender<usize>>,
    refused: Mutex<mpsc::Sender<usize>>,
}

struct Job(usize, mpsc::Receiver<()>);

impl Run<Job> for Recorder {
    fn run(&self, job: Job, _lease: &Lease<'_, Job>) {
        let _ = self.started.lock().send(job.0);
        let _ = job.1.recv();
    }

    fn refuse(&self, job: Job) {
        let _ = self.refused.lock().send(job.0);
    }
}

struct Harness {
    pool: Arc<Pool<Job>>,
    started: mpsc::Receiver<usize>,
    refused: mpsc::Receiver<usize>,
    holds: Arc<Mutex<Vec<bool>>>,
}

fn harness(threads: usize, bounds: Bounds) -> Harness {
    let (started_tx, started) = mpsc::channel();
    let (refused_tx, refused) = mpsc::channel();
    let runner = Arc::new(Recorder {
        started: Mutex::new(started_tx),
        refused: Mutex::new(refused_tx),
    });
    let holds = Arc::new(Mutex::new(Vec::new()));
    let seen = holds.clone();
    let hold: Hold = Arc::new(move |h| seen.lock().push(h));
    let pool = Pool::new(threads, bounds, Some(hold), Duration::from_secs(60), runner);
    Harness {
        pool,
        started,
        refused,
        holds,
    }
}

fn job(id: usize) -> (Job, mpsc::Sender<()>) {
    let (tx, rx) = mpsc::channel();
    (Job(id, rx), tx)
}

#[test]
fn without_a_count_nothing_is_refused_and_accepting_is_held_while_the_queue_is_long() {
    let h = harness(
        1,
        Bounds {
            hold_at: Some(3),
            ..Bounds::default()
        },
    );
    let mut ends = Vec::new();
    let (first, end) = job(0);
    assert!(h.pool.submit(first).is_ok());
    ends.push(end);
    assert_eq!(h.started.recv_timeout(T).ok(), Some(0));
    for id in 1..=2 {
        let (j, end) = job(id);
        assert!(h.pool.submit(j).is_ok());
        ends.push(end);
    }
    assert!(h.holds.lock().is_empty(), "two waiting: below the mark");
    // Far more than any count the pool had by default before: all wait.
    for id in 3..=20 {
        let (j, end) = job(id);
        assert!(h.pool.submit(j).is_ok(), "job {id} was refused");
        ends.push(end);
    }
    assert_eq!(*h.holds.lock(), [true], "told once, at the mark");
    assert_eq!(h.pool.stats(), (1, 1, 20));
    // The jobs run in order; once fewer than three wait, accepting goes on.
    for id in 1..=20 {
        ends[id - 1].send(()).expect("end");
        assert_eq!(h.started.recv_timeout(T).ok(), Some(id));
        let waiting = 20 - id;
        let expected: &[bool] = if waiting >= 3 {
            &[true]
        } else {
            &[true, false]
        };
        assert_eq!(*h.holds.lock(), expected, "{waiting} waiting");
    }
    ends[20].send(()).expect("end");
    assert!(h.refused.try_recv().is_err(), "nothing refused");
    assert_eq!(h.pool.stop(T), 0);
}

#[test]
fn a_job_is_refused_once_it_waited_past_the_time_bound_and_the_next_deadline_is_told() {
    let timeout = Duration::from_secs(10);
    let h = harness(
        1,
        Bounds {
            timeout: Some(timeout),
            ..Bounds::default()
        },
    );
    let t0 = Instant::now();
    let (busy, end_busy) = job(1);
    assert!(h.pool.submit_at(busy, t0).is_ok());
    assert_eq!(h.started.recv_timeout(T).ok(), Some(1));
    let (old, _end_old) = job(2);
    let (young, end_young) = job(3);
    assert!(h.pool.submit_at(old, t0).is_ok());
    assert!(h.pool.submit_at(young, t0 + Duration::from_secs(5)).is_ok());
    assert_eq!(
        h.pool.expire(t0 + Duration::from_secs(9)),
        Some(t0 + timeout),
        "none is due: come back when the oldest is"
    );
    assert!(h.refused.try_recv().is_err());
    assert_eq!(
        h.pool.expire(t0 + timeout),
        Some(t0 + Duration::from_secs(15)),
        "the oldest is refused, the next is due five seconds later"
    );
    assert_eq!(h.refused.try_recv().ok(), Some(2));
    assert_eq!(h.pool.stats(), (1, 1, 1));
    // The thread comes back: the young job runs, the refused one never did.
    end_busy.send(()).expect("end");
    assert_eq!(h.started.recv_timeout(T).ok(), Some(3));
    end_young.send(()).expect("end");
    let now = Instant::now();
    assert_eq!(
        h.pool.expire(now),
        Some(now + timeout),
        "empty: a whole bound"
    );
    assert!(h.refused.try_recv().is_err());
    assert_eq!(h.pool.stop(T), 0);
}

#[test]
fn a_thread_refuses_instead_of_running_a_job_that_waited_too_long() {
    let timeout = Duration::from_secs(10);
    let h = harness(
        1,
        Bounds {
            timeout: Some(timeout),
            ..Bounds::default()
        },
    );
    let (busy, end_busy) = job(1);
    assert!(h.pool.submit(busy).is_ok());
    assert_eq!(h.started.recv_timeout(T).ok(), Some(1));
    // Queued as if twenty seconds ago, behind nothing the clock can see yet.
    let long_ago = Instant::now()
        .checked_sub(2 * timeout)
        .expect("the clock has run for 20 s");
    let (stale, _end_stale) = job(2);
    let (fresh, end_fresh) = job(3);
    assert!(h.pool.submit_at(stale, long_ago).is_ok());
    assert!(h.pool.submit(fresh).is_ok());
    end_busy.send(()).expect("end");
    assert_eq!(h.refused.recv_timeout(T).ok(), Some(2));
    assert_eq!(
        h.started.recv_timeout(T).ok(),
        Some(3),
        "the stale one is skipped"
    );
    end_fresh.send(()).expect("end");
    assert_eq!(h.pool.stop(T), 0);
}

#[test]
fn a_count_still_refuses_at_submit_and_never_holds() {
    let h = harness(1, Bounds::count(1));
    let (a, end_a) = job(1);
    let (b, end_b) = job(2);
    let (c, _end_c) = job(3);
    assert!(h.pool.submit(a).is_ok());
    assert_eq!(h.started.recv_timeout(T).ok(), Some(1));
    assert!(h.pool.submit(b).is_ok());
    assert!(h.pool.submit(c).is_err(), "handed back for a 503");
    assert!(h.holds.lock().is_empty());
    end_a.send(()).expect("end");
    assert_eq!(h.started.recv_timeout(T).ok(), Some(2));
    end_b.send(()).expect("end");
    assert_eq!(h.pool.stop(T), 0);
}
