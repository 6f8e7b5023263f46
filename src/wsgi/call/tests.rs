use super::*;
use crate::config::CoreConfig;
use crate::http::body::ResponseBody;
use crate::interface::test_support::{
    body_now, exchange, helpers, module, parts, tcp_conn, with_py,
};
use crate::interface::Host;
use crate::wsgi::pool::{Bounds, Pool};

const APPS: &std::ffi::CStr = cr#"
import io

events = []

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello ", environ["wsgi.input"].read()]

def big_list(environ, start_response):
    start_response("200 OK", [])
    return [b"a" * 40000, b"b" * 40000]

def small_list(environ, start_response):
    start_response("200 OK", [])
    return [b"a" * 1000, b"b" * 1000]

def empty_chunks(environ, start_response):
    start_response("200 OK", [])
    return [b"", b""]

def raises_oserror(environ, start_response):
    raise OSError("disk full")

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
    /// The body went out in one piece with the head (its length known), not as a stream.
    whole: bool,
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
        let config =
            CoreConfig::build(5.0, None, 8192, true, vec![], String::new(), false).expect("config");
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
            mailbox: host.mailbox.clone(),
        });
        let pool = Pool::new(1, Bounds::count(4), None, Duration::from_secs(60), caller);
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
        let (status, body, file_body, whole) = match rx.try_recv() {
            // A file is read on the I/O thread's runtime: only how much is left to send.
            Ok(r) => match r.body() {
                ResponseBody::File(f) => (
                    Some(r.status().as_u16()),
                    vec![],
                    Some(f.remaining()),
                    false,
                ),
                _ => {
                    let mut r = r;
                    let full = matches!(r.body(), ResponseBody::Full(_));
                    (
                        Some(r.status().as_u16()),
                        body_now(r.body_mut()).0,
                        None,
                        full,
                    )
                }
            },
            Err(_) => (None, vec![], None, false),
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
            whole,
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
fn a_short_sequence_leaves_in_one_piece_and_a_long_one_as_a_stream() {
    let s = serve("small_list", b"", false);
    assert_eq!(s.body.len(), 2000);
    assert!(s.whole, "joined: 2000 bytes");
    assert!(serve("one_big", b"", false).whole, "one item, however big");
    assert!(serve("hello", b"x", false).whole);
    let s = serve("big_list", b"", false);
    assert!(!s.whole, "80000 bytes are not copied into one");
    let s = serve("empty_chunks", b"", false);
    assert!(s.whole && s.body.is_empty() && s.status == Some(200));
}

#[test]
fn an_oserror_of_the_app_is_its_error_while_the_client_is_there() {
    let s = serve("raises_oserror", b"", false);
    assert_eq!(s.status, Some(500));
    assert_eq!(s.lines, [error("Exception in WSGI application", "OSError")]);
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
