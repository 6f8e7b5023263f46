
use pyo3::types::PyDict;

use super::*;
use crate::asgi::test_support::{exchange, parts, tcp_conn, with_py};
use crate::wsgi::pool::{Lease, Run};

#[test]
fn the_interface_refuses_no_threads_and_bad_write_timeouts() {
    with_py(|py| {
        let make = |threads: usize, timeout: f64| {
            let kwargs = PyDict::new(py);
            kwargs.set_item("threads", threads).expect("threads");
            kwargs.set_item("queue_size", 4).expect("queue");
            kwargs.set_item("write_timeout", timeout).expect("timeout");
            let args = (py.None(), py.None(), py.None(), py.None(), py.None());
            py.get_type::<WsgiInterface>()
                .call(args, Some(&kwargs))
                .map(|i| {
                    let i = i.downcast_into::<WsgiInterface>().expect("type");
                    let i = i.get();
                    (i.threads, i.queue_size, i.write_timeout)
                })
        };
        assert_eq!(make(2, 0.0).expect("valid"), (2, 4, None));
        assert_eq!(
            make(1, 1.5).expect("valid"),
            (1, 4, Some(Duration::from_millis(1500)))
        );
        for (threads, timeout) in [(0, 1.0), (1, -1.0), (1, f64::NAN), (1, f64::INFINITY)] {
            let err = make(threads, timeout).expect_err("refused");
            assert!(
                err.is_instance_of::<pyo3::exceptions::PyValueError>(py),
                "{err}"
            );
        }
    })
}

/// Holds each job until told to end it.
struct Hold(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);

impl Run<Job> for Hold {
    fn run(&self, job: Job, _lease: &Lease<'_, Job>) {
        let _busy = busy::Busy::enter(job.request.parts.method.as_str(), "/held");
        self.0.lock().expect("lock").recv().expect("told to end");
    }
}

#[test]
fn the_core_dispatches_to_the_pool_and_reports_its_threads() {
    let config =
        CoreConfig::build(5.0, None, 8192, true, vec![], String::new(), false).expect("config");
    let host = Host::new(config).expect("host");
    let (end, ends) = std::sync::mpsc::channel();
    let busy = Arc::new(busy::Busy::default());
    struct Slots(Arc<busy::Busy>, Hold);
    impl Run<Job> for Slots {
        fn run(&self, job: Job, lease: &Lease<'_, Job>) {
            self.1.run(job, lease);
        }
        fn thread(&self, main: &mut (dyn FnMut() + Send)) {
            self.0.with_slot(main);
        }
    }
    let runner = Arc::new(Slots(busy.clone(), Hold(std::sync::Mutex::new(ends))));
    let core = Arc::new(WsgiCore {
        host: host.clone(),
        pool: Pool::new(1, 1, IDLE_THREAD_TIMEOUT, runner),
        delivery: Arc::new(delivery::Delivery::new()),
        busy,
    });
    assert_eq!(core.threads(), Some((0, 0, 0)));
    assert!(core.longest_call().is_none());
    let request = || NewRequest {
        exchange: exchange(false).0,
        parts: parts("PUT", "/", &[]),
        conn: Arc::new(tcp_conn()),
        websocket: None,
        forwarded: None,
    };
    assert!(core.dispatch(request()).is_ok());
    // The thread picks the job up and marks itself busy.
    let started = std::time::Instant::now();
    while core.longest_call().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the job never started"
        );
        std::thread::yield_now();
    }
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
    end.send(()).expect("end");
    core.stop();
    assert_eq!(core.threads(), Some((0, 0, 0)));
}
