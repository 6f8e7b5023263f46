//! One WSGI call on a pool thread: environ in, the app's iterable out to the client, `close()`
//! always called, errors answered and logged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::busy::Busy;
use super::delivery::Delivery;
use super::environ::EnvironTemplate;
use super::file_wrapper::FileWrapper;
use super::input::WsgiInput;
use super::pool::{Lease, Run};
use super::response::{body_chunk, Response, StartResponse};
use super::wait::{ThreadWaker, Waiter};
use crate::error::ClientDisconnected;
use crate::http::exchange::Finished;
use crate::http::NewRequest;
use crate::interface::access::AccessInfo;
use crate::interface::log::Loggers;
use crate::server::{LogLevel, Token};

/// A request waiting for a pool thread; its token keeps a graceful shutdown waiting for it.
pub struct Job {
    pub request: NewRequest,
    pub token: Token,
}

/// A list or tuple body up to this size leaves as one write with a Content-Length.
const JOIN_MAX: usize = 64 * 1024;

pub struct Caller {
    pub app: PyObject,
    pub loggers: Arc<Loggers>,
    pub environ: EnvironTemplate,
    pub write_timeout: Option<Duration>,
    pub delivery: Arc<Delivery>,
    pub busy: Arc<Busy>,
}

impl Run<Job> for Caller {
    fn run(&self, job: Job, lease: &Lease<'_, Job>) {
        Python::with_gil(|py| self.call(py, job, lease));
    }

    /// Keeps the thread's Python thread state for its whole life: without it each request's
    /// GIL acquisition would create and destroy one.
    fn thread(&self, main: &mut (dyn FnMut() + Send)) {
        self.busy
            .with_slot(|| Python::with_gil(|py| py.allow_threads(main)));
    }

    /// One GIL hold, and one hand-over to the I/O thread, for a run of jobs taken back to
    /// back.
    fn session(&self, jobs: &mut dyn FnMut()) {
        self.delivery.session(|| Python::with_gil(|_| jobs()));
    }
}

impl Caller {
    fn call(&self, py: Python<'_>, job: Job, lease: &Lease<'_, Job>) {
        let Job { request, token } = job;
        let NewRequest {
            exchange,
            parts,
            conn,
            websocket: _,
            forwarded,
        } = request;
        let _busy = Busy::enter(parts.method.as_str(), parts.uri.path());
        let access = AccessInfo::capture(&self.loggers, &parts, &conn, forwarded.as_deref());
        let waker = ThreadWaker::for_this_thread();
        let waiter = || Waiter {
            exchange: exchange.clone(),
            waker: waker.clone(),
            timeout: self.write_timeout,
            delivery: self.delivery.clone(),
        };
        let response = Response::new(waiter());
        let result = if exchange.is_disconnected() {
            // The client left while the request waited for a thread: don't run it.
            Ok(())
        } else {
            (|| -> PyResult<()> {
                let input = Py::new(py, WsgiInput::new(waiter()))?.into_any();
                let environ = self
                    .environ
                    .build(py, &parts, &conn, input, forwarded.as_deref())?;
                let start = Py::new(py, StartResponse::new(response.clone()))?;
                let iterable = self.app.bind(py).call1((environ, start))?;
                let sent = drive(py, &response, &iterable, lease);
                // PEP 3333: close() is called whatever happened, also on a disconnect.
                let closed = close(py, &iterable);
                sent.and(closed)
            })()
        };
        let outcome = exchange.finish();
        match result {
            Err(err)
                if err.is_instance_of::<ClientDisconnected>(py)
                    || (exchange.is_disconnected() && err.is_instance_of::<PyOSError>(py)) =>
            {
                self.loggers.log(
                    py,
                    LogLevel::Debug,
                    &format!("client disconnected during a WSGI call: {}", err.value(py)),
                )
            }
            Err(err) => self
                .loggers
                .error(py, "Exception in WSGI application", Some(&err)),
            Ok(()) => debug_assert!(outcome != Finished::NoResponse),
        }
        if let Some(a) = access {
            let (status, bytes) = exchange.outcome();
            a.log(py, &self.loggers, status, bytes);
        }
        drop(token);
    }
}

fn close(py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
    // A plain list or tuple has no close(); asking would raise and swallow an AttributeError.
    if iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>() {
        return Ok(());
    }
    if iterable.hasattr(intern!(py, "close"))? {
        iterable.call_method0(intern!(py, "close"))?;
    }
    Ok(())
}

/// Sends what the app returned.
fn drive(
    py: Python<'_>,
    response: &Response,
    iterable: &Bound<'_, PyAny>,
    lease: &Lease<'_, Job>,
) -> PyResult<()> {
    if let Ok(wrapper) = iterable.downcast::<FileWrapper>() {
        if let Some(file) = wrapper.borrow().native_file(py) {
            // The I/O thread sends it: a large file to a slow client holds no pool thread.
            return response.send_file(py, file);
        }
    }
    if let Ok(list) = iterable.downcast::<PyList>() {
        return send_sequence(py, response, list.iter().collect());
    }
    if let Ok(tuple) = iterable.downcast::<PyTuple>() {
        return send_sequence(py, response, tuple.iter().collect());
    }
    let mut sent = 0;
    for item in iterable.try_iter()? {
        let chunk = body_chunk(&item?)?;
        if chunk.is_empty() {
            continue;
        }
        response.send(py, chunk, true)?;
        if response.complete() {
            // The app's Content-Length is reached: stop iterating (PEP 3333).
            return Ok(());
        }
        sent += 1;
        if sent == 2 {
            // A second chunk, and more may come, slowly (SSE, a download): stop holding a
            // place in the pool, so that streams cannot starve ordinary requests. Not at the
            // first: most iterables (Django's, Flask's) end after one.
            lease.detach();
        }
    }
    response.end(py)
}

/// A list or tuple body: small ones joined into one write with a Content-Length.
fn send_sequence(
    py: Python<'_>,
    response: &Response,
    items: Vec<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let chunks = items
        .iter()
        .map(body_chunk)
        .collect::<PyResult<Vec<Bytes>>>()?;
    let total: usize = chunks.iter().map(Bytes::len).sum();
    if chunks.len() == 1 || total <= JOIN_MAX {
        let whole = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => Bytes::from(chunks.concat()),
        };
        if whole.is_empty() {
            return response.end(py);
        }
        return response.send(py, whole, false);
    }
    for chunk in chunks {
        response.send(py, chunk, true)?;
        if response.complete() {
            return Ok(());
        }
    }
    response.end(py)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asgi::test_support::{
        body_now, exchange, helpers, module, parts, tcp_conn, with_py,
    };
    use crate::config::CoreConfig;
    use crate::http::body::ResponseBody;
    use crate::interface::Host;
    use crate::wsgi::pool::Pool;

    const APPS: &std::ffi::CStr = cr#"
import io

events = []

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello ", environ["wsgi.input"].read()]

def big_list(environ, start_response):
    start_response("200 OK", [])
    return [b"a" * 40000, b"b" * 40000]

def one_big(environ, start_response):
    start_response("200 OK", [])
    return (b"c" * 70000,)

def empty(environ, start_response):
    start_response("204 No Content", [])
    return []

class Body:
    def __init__(self, chunks):
        self.chunks = chunks
    def __iter__(self):
        for c in self.chunks:
            events.append(("yield", c))
            yield c
    def close(self):
        events.append("close")

def generator(environ, start_response):
    start_response("200 OK", [])
    return Body([b"", b"x", b"", b"y"])

def limited(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return Body([b"ab", b"never"])

def writes(environ, start_response):
    write = start_response("200 OK", [])
    write(b"w1")
    return Body([b"i1"])

def fails(environ, start_response):
    raise ValueError("boom")

def fails_in_close(environ, start_response):
    start_response("200 OK", [])
    class B(Body):
        def close(self):
            raise RuntimeError("close")
    return B([b"ok"])

def fails_midway(environ, start_response):
    start_response("200 OK", [])
    def body():
        yield b"first"
        raise ValueError("midway")
    return Body(body())

def no_start(environ, start_response):
    return [b"x"]

def gone(environ, start_response):
    raise ClientDisconnected("left")

def oserror_after_gone(environ, start_response):
    environ["wsgi.input"].read()
    raise OSError("write failed")

def text_body(environ, start_response):
    start_response("200 OK", [])
    return ["text"]

def file_native(environ, start_response):
    start_response("200 OK", [])
    f = open(environ["PATH"], "rb")
    f.read(2)
    return environ["wsgi.file_wrapper"](f)

def file_in_python(environ, start_response):
    start_response("200 OK", [])
    return environ["wsgi.file_wrapper"](io.BytesIO(b"from python"), 4)

def never_called(environ, start_response):
    events.append("called")
    start_response("200 OK", [])
    return []
"#;

    struct Served {
        status: Option<u16>,
        body: Vec<u8>,
        /// The bytes a file response has left to send, when it is one.
        file_body: Option<u64>,
        lines: Vec<(String, String, Option<String>)>,
        events: String,
    }

    fn temp_file() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("juggler-call-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("file");
        std::fs::write(&path, b"0123456789").expect("write");
        path
    }

    /// Runs the app `name` of [`APPS`] for one request on a real pool thread.
    fn serve(name: &str, body: &'static [u8], gone_before: bool) -> Served {
        with_py(|py| {
            let apps = module(py, APPS);
            apps.setattr("ClientDisconnected", py.get_type::<ClientDisconnected>())
                .expect("exc");
            let recorder = helpers(py)
                .getattr("Recorder")
                .and_then(|r| r.call0())
                .expect("rec");
            let config = CoreConfig::build(5.0, None, 8192, true, vec![], String::new(), false)
                .expect("config");
            let rec = recorder.clone().unbind();
            let loggers = Arc::new(Loggers::new(py, rec.clone_ref(py), rec, &config).expect("l"));
            let delivery = Arc::new(Delivery::new());
            // The file app finds its path in the environ, as an extra key of the request.
            let path = temp_file();
            let host = Host::new(config).expect("host");
            let (ex, mut rx) = exchange(false);
            ex.push_body(Bytes::from_static(body));
            ex.finish_body();
            if gone_before {
                ex.disconnect();
            }
            let mut p = parts("POST", "/run", &[]);
            p.headers.insert(
                "x-path",
                path.to_str().expect("utf-8").parse().expect("value"),
            );
            let wrapped = format!(
                "def app(environ, start_response):\n    \
                 environ['PATH'] = environ.get('HTTP_X_PATH')\n    \
                 return {name}(environ, start_response)\n"
            );
            let code = std::ffi::CString::new(wrapped).expect("code");
            py.run(&code, Some(&apps.dict()), None).expect("wrap");
            let caller = Arc::new(Caller {
                app: apps.getattr("app").expect("app").unbind(),
                loggers,
                environ: EnvironTemplate::new(
                    py,
                    "",
                    py.None(),
                    py.get_type::<FileWrapper>().into_any().unbind(),
                )
                .expect("environ"),
                write_timeout: None,
                delivery: delivery.clone(),
                busy: Arc::new(Busy::default()),
            });
            let pool = Pool::new(1, 4, Duration::from_secs(60), caller);
            let job = Job {
                request: NewRequest {
                    exchange: ex.clone(),
                    parts: p,
                    conn: Arc::new(tcp_conn()),
                    websocket: None,
                    forwarded: None,
                },
                token: host.registry.call(),
            };
            assert!(pool.submit(job).is_ok());
            // The queued job runs before the thread ends; the GIL must be free for it.
            assert_eq!(py.allow_threads(|| pool.stop(Duration::from_secs(10))), 0);
            // The I/O thread's turn: deliver what the call handed over.
            let outbox = delivery.outbox();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime");
            rt.block_on(async {
                tokio::select! {
                    biased;
                    _ = outbox.run() => {}
                    _ = tokio::task::yield_now() => {}
                }
            });
            let (status, body, file_body) = match rx.try_recv() {
                // A file is read on the I/O thread's runtime: only how much is left to send.
                Ok(r) => match r.body() {
                    ResponseBody::File(f) => {
                        (Some(r.status().as_u16()), vec![], Some(f.remaining()))
                    }
                    _ => {
                        let mut r = r;
                        (Some(r.status().as_u16()), body_now(r.body_mut()).0, None)
                    }
                },
                Err(_) => (None, vec![], None),
            };
            let lines = recorder
                .getattr("lines")
                .and_then(|l| l.extract())
                .expect("lines");
            let events = apps
                .getattr("events")
                .expect("events")
                .repr()
                .expect("repr")
                .to_string();
            Served {
                status,
                body,
                file_body,
                lines,
                events,
            }
        })
    }

    fn error(msg: &str, exc: &str) -> (String, String, Option<String>) {
        ("error".into(), msg.into(), Some(exc.into()))
    }

    #[test]
    fn a_list_body_is_sent_with_the_request_body_read() {
        let s = serve("hello", b"world", false);
        assert_eq!(s.status, Some(200));
        assert_eq!(s.body, b"hello world");
        assert!(s.lines.is_empty());
    }

    #[test]
    fn sequences_of_any_size_arrive_whole() {
        let s = serve("big_list", b"", false);
        assert_eq!(s.body.len(), 80000);
        assert!(s.body.starts_with(b"aaa") && s.body.ends_with(b"bbb"));
        let s = serve("one_big", b"", false);
        assert!(s.body == vec![b'c'; 70000]);
        let s = serve("empty", b"", false);
        assert_eq!((s.status, s.body.len()), (Some(204), 0));
    }

    #[test]
    fn an_iterable_is_sent_chunk_by_chunk_and_closed() {
        let s = serve("generator", b"", false);
        assert_eq!(s.body, b"xy");
        assert_eq!(
            s.events,
            "[('yield', b''), ('yield', b'x'), ('yield', b''), ('yield', b'y'), 'close']"
        );
    }

    #[test]
    fn iteration_stops_at_the_content_length() {
        let s = serve("limited", b"", false);
        assert_eq!(s.body, b"ab");
        assert_eq!(s.events, "[('yield', b'ab'), 'close']");
    }

    #[test]
    fn write_and_the_iterable_both_reach_the_client() {
        assert_eq!(serve("writes", b"", false).body, b"w1i1");
    }

    #[test]
    fn an_apps_exception_is_answered_500_and_logged() {
        let s = serve("fails", b"", false);
        assert_eq!(s.status, Some(500));
        assert_eq!(
            s.lines,
            [error("Exception in WSGI application", "ValueError")]
        );
        let s = serve("no_start", b"", false);
        assert_eq!(s.status, Some(500));
        assert_eq!(
            s.lines,
            [error("Exception in WSGI application", "ProtocolError")]
        );
        let s = serve("text_body", b"", false);
        assert_eq!(
            s.lines,
            [error("Exception in WSGI application", "ProtocolError")]
        );
    }

    #[test]
    fn close_is_called_even_when_the_body_fails_and_its_own_error_is_logged() {
        let s = serve("fails_midway", b"", false);
        assert_eq!(s.events, "[('yield', b'first'), 'close']");
        assert_eq!(
            s.lines,
            [error("Exception in WSGI application", "ValueError")]
        );
        let s = serve("fails_in_close", b"", false);
        assert_eq!(s.body, b"ok");
        assert_eq!(
            s.lines,
            [error("Exception in WSGI application", "RuntimeError")]
        );
    }

    #[test]
    fn a_client_that_left_is_only_a_debug_line() {
        let s = serve("gone", b"", false);
        assert_eq!(s.lines.len(), 1);
        assert_eq!(s.lines[0].0, "debug");
        assert!(s.lines[0]
            .1
            .starts_with("client disconnected during a WSGI call: left"));
        let s = serve("never_called", b"", true);
        assert_eq!(s.events, "[]", "the app is not run for a client that left");
        assert!(s.lines.is_empty());
    }

    #[test]
    fn a_file_wrapper_over_a_real_file_is_sent_from_its_position_by_the_io_thread() {
        let s = serve("file_native", b"", false);
        assert_eq!(
            s.file_body,
            Some(8),
            "the 10-byte file after the 2 bytes the app read"
        );
        assert_eq!(s.status, Some(200));
        let s = serve("file_in_python", b"", false);
        assert_eq!(s.file_body, None);
        assert_eq!(s.body, b"from python");
    }
}
