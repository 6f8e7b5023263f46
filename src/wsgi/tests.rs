use pyo3::types::PyDict;

use super::*;
use crate::interface::test_support::{exchange, parts, tcp_conn, with_py};
use std::sync::{mpsc, Mutex};

use crate::wsgi::pool::{Bounds, Lease, Run};

/// What juggler's `config.wsgi` is: an object with the pool's options as attributes.
fn pool_options(py: Python<'_>, threads: usize, queue_size: usize) -> Bound<'_, PyAny> {
    let pool = PyDict::new(py);
    pool.set_item("threads", threads).expect("threads");
    pool.set_item("queue_size", queue_size).expect("queue");
    pool.set_item("queue_timeout", 0.0).expect("queue timeout");
    py.import("types")
        .and_then(|types| types.getattr("SimpleNamespace"))
        .and_then(|ns| ns.call((), Some(&pool)))
        .expect("namespace")
}

#[test]
fn the_interface_refuses_no_threads() {
    with_py(|py| {
        let make = |threads: usize| {
            let pool = pool_options(py, threads, 4);
            let args = (py.None(), py.None(), py.None(), py.None(), py.None(), pool);
            py.get_type::<WsgiInterface>().call1(args).map(|i| {
                let i = i.downcast_into::<WsgiInterface>().expect("type");
                let pool = i.get().pool;
                (pool.threads, pool.queue_size)
            })
        };
        assert_eq!(make(2).expect("valid"), (2, Some(4)));
        let err = make(0).expect_err("refused");
        assert!(err.is_instance_of::<crate::error::ConfigError>(py), "{err}");
    })
}

/// Runs each job on a thread with a busy slot, says when it started, and holds it until told
/// to end it.
struct Hold {
    busy: Arc<busy::Busy>,
    started: Mutex<mpsc::Sender<()>>,
    end: Mutex<mpsc::Receiver<()>>,
}

impl Run<Job> for Hold {
    fn run(&self, job: Job, _lease: &Lease<'_, Job>) {
        let _busy = busy::Busy::enter(job.request.parts.method.as_str(), "/held");
        self.started
            .lock()
            .expect("lock")
            .send(())
            .expect("started");
        self.end.lock().expect("lock").recv().expect("told to end");
    }

    fn thread(&self, main: &mut (dyn FnMut() + Send)) {
        self.busy.with_slot(main);
    }
}

/// A core with one thread and room for one waiting job; how to learn that a job started, and
/// how to end one.
fn held_core() -> (Arc<WsgiCore>, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let config =
        CoreConfig::build(5.0, None, 8192, true, vec![], String::new(), false).expect("config");
    let (started_tx, started) = mpsc::channel();
    let (end, end_rx) = mpsc::channel();
    let busy = Arc::new(busy::Busy::default());
    let runner = Arc::new(Hold {
        busy: busy.clone(),
        started: Mutex::new(started_tx),
        end: Mutex::new(end_rx),
    });
    // Loggers a core needs since it logs the answers the server gives without the app.
    let loggers = with_py(|py| {
        let logger = py
            .import("logging")
            .and_then(|l| l.call_method1("getLogger", ("juggler.test",)))
            .expect("logger")
            .unbind();
        Arc::new(Loggers::new(py, logger.clone_ref(py), logger, &config).expect("loggers"))
    });
    let core = Arc::new(WsgiCore {
        host: Host::new(config).expect("host"),
        loggers,
        pool: Pool::new(1, Bounds::count(1), None, IDLE_THREAD_TIMEOUT, runner),
        delivery: Arc::new(delivery::Delivery::new()),
        busy,
    });
    (core, started, end)
}

fn request() -> NewRequest {
    NewRequest {
        exchange: exchange(false).0,
        parts: parts("PUT", "/", &[]),
        conn: Arc::new(tcp_conn()),
        websocket: None,
        forwarded: None,
    }
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn the_core_dispatches_to_the_pool_and_reports_its_threads() {
    let (core, started, end) = held_core();
    assert_eq!(core.threads(), Some((0, 0, 0)));
    assert!(core.longest_call().is_none());
    assert!(core.dispatch(request()).is_ok());
    started.recv_timeout(WAIT).expect("the job started");
    assert_eq!(
        core.longest_call().map(|(_, what)| what),
        Some("PUT /held".into())
    );
    assert!(core.dispatch(request()).is_ok(), "one may wait");
    assert_eq!(core.threads(), Some((1, 1, 1)));
    assert!(
        core.dispatch(request()).is_err(),
        "the queue is full: handed back"
    );
    end.send(()).expect("end");
    started.recv_timeout(WAIT).expect("the second job started");
    end.send(()).expect("end");
    core.stop();
    assert_eq!(core.threads(), Some((0, 0, 0)));
}

#[test]
fn a_wake_up_held_back_on_the_io_thread_goes_out_when_it_parks() {
    let (core, started, end) = held_core();
    // The I/O thread's way: wake-ups wait until it is about to sleep.
    std::thread::spawn(move || {
        crate::bridge::mailbox::defer_wakeups_on_this_thread();
        assert!(core.dispatch(request()).is_ok());
        assert_eq!(core.threads(), Some((0, 0, 1)), "no thread sent yet");
        core.on_io_park();
        started.recv_timeout(WAIT).expect("the job started");
        end.send(()).expect("end");
        core.stop();
    })
    .join()
    .expect("io thread");
}

#[test]
fn the_io_thread_delivers_what_pool_threads_hand_over() {
    struct Count(std::sync::atomic::AtomicUsize, mpsc::Sender<()>);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = self.1.send(());
        }
    }
    let (core, _started, _end) = held_core();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    core.on_io_start();
    let (tx, delivered) = mpsc::channel();
    let waker = Arc::new(Count(Default::default(), tx));
    // A completed response in a session waits in the outbox for the I/O thread.
    core.delivery.session(|| {
        core.delivery.hand_over(
            crate::http::exchange::Handover::Wake(waker.clone().into()),
            true,
        )
    });
    rt.block_on(async {
        tokio::time::timeout(WAIT, async {
            while delivered.try_recv().is_err() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("delivered by the outbox task");
    });
}

#[test]
fn server_is_built_from_its_keywords_or_raises_before_building_anything() {
    use crate::interface::test_support::{server_keyword_outcomes, SERVER_KEYWORD_OUTCOMES};
    with_py(|py| {
        let event_loop = py
            .import("asyncio")
            .and_then(|a| a.call_method0("new_event_loop"))
            .expect("loop");
        let pool = pool_options(py, 1, 1);
        let args = (py.None(), event_loop, py.None(), py.None(), py.None(), pool);
        let iface = py
            .get_type::<WsgiInterface>()
            .call1(args)
            .expect("interface");
        assert_eq!(server_keyword_outcomes(py, &iface), SERVER_KEYWORD_OUTCOMES);
    })
}
