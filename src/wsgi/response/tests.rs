use std::time::Duration;

use http::Response as HttpResponse;
use pyo3::types::PyDict;
use tokio::sync::oneshot;

use super::*;
use crate::error::ProtocolError;
use crate::http::body::ResponseBody;
use crate::http::exchange::{Exchange, OUT_HIGH_WATER};
use crate::interface::test_support::{body_now, exchange, with_py};
use crate::wsgi::delivery::Delivery;
use crate::wsgi::wait::ThreadWaker;

struct Call {
    exchange: Arc<Exchange>,
    rx: oneshot::Receiver<HttpResponse<ResponseBody>>,
    response: Arc<Response>,
}

/// Bounds a wait for the client the test does not expect: a broken send fails, not hangs.
const NEVER_WAITS: Duration = Duration::from_secs(5);

fn call(timeout: Option<Duration>) -> Call {
    let (exchange, rx) = exchange(false);
    let response = Response::new(Waiter {
        exchange: exchange.clone(),
        waker: ThreadWaker::for_this_thread(),
        timeout,
        delivery: Arc::new(Delivery::new()),
    });
    Call {
        exchange,
        rx,
        response,
    }
}

impl Call {
    /// Runs `code` with `start_response` bound as `sr`.
    fn run(&self, py: Python<'_>, code: &str) -> PyResult<()> {
        let globals = PyDict::new(py);
        let sr = Py::new(py, StartResponse::new(self.response.clone()))?;
        globals.set_item("sr", sr)?;
        let code = std::ffi::CString::new(code).expect("code");
        py.run(&code, Some(&globals), None)
    }

    fn head(&mut self) -> Option<HttpResponse<ResponseBody>> {
        self.rx.try_recv().ok()
    }
}

fn refused(py: Python<'_>, c: &Call, code: &str) -> String {
    let err = c.run(py, code).expect_err(code);
    assert!(err.is_instance_of::<ProtocolError>(py), "{code}: {err}");
    err.value(py).to_string()
}

#[test]
fn the_head_leaves_with_the_first_non_empty_chunk() {
    with_py(|py| {
        let mut c = call(Some(NEVER_WAITS));
        c.run(
            py,
            "w = sr('201 Created', [('Content-Type', 'text/plain'), ('X-A', 'caf\\xe9')])\nw(b'')",
        )
        .expect("start");
        assert!(c.head().is_none(), "an empty write does not send the head");
        c.response
            .send(py, Bytes::from_static(b"hi"), true)
            .expect("send");
        let mut head = c.head().expect("head");
        assert_eq!(head.status(), 201);
        assert_eq!(head.headers()["content-type"], "text/plain");
        assert_eq!(head.headers()["x-a"].as_bytes(), b"caf\xe9");
        assert!(
            head.extensions().get::<ReasonPhrase>().is_none(),
            "the standard phrase"
        );
        c.response.end(py).expect("end");
        assert_eq!(body_now(head.body_mut()), (b"hi".to_vec(), true));
        assert!(c.response.complete());
    })
}

#[test]
fn a_custom_reason_phrase_is_kept() {
    with_py(|py| {
        let mut c = call(Some(NEVER_WAITS));
        c.run(py, "sr('200 Fine Thanks', [])").expect("start");
        c.response.end(py).expect("end");
        let head = c.head().expect("head");
        assert_eq!(
            head.extensions()
                .get::<ReasonPhrase>()
                .map(|r| r.as_bytes()),
            Some(&b"Fine Thanks"[..])
        );
        let mut c = call(Some(NEVER_WAITS));
        c.run(py, "sr('404', [])").expect("a bare code");
        c.response.end(py).expect("end");
        assert_eq!(c.head().expect("head").status(), 404);
    })
}

#[test]
fn bad_statuses_and_headers_are_refused() {
    with_py(|py| {
        for (code, says) in [
            ("sr(200, [])", "status must be a str"),
            ("sr('20 OK', [])", "invalid status"),
            ("sr('2000 OK', [])", "invalid status"),
            ("sr('abc OK', [])", "invalid status"),
            ("sr('200 OK\\r\\nX: y', [])", "invalid status"),
            ("sr('199 Early', [])", "invalid status"),
            ("sr('099 X', [])", "invalid status"),
            ("sr('200 \\x01', [])", "invalid reason phrase"),
            ("sr('200 OK', 5)", "list of (name, value) tuples"),
            ("sr('200 OK', [['a', 'b']])", "list of (name, value) tuples"),
            (
                "sr('200 OK', [('a', 'b', 'c')])",
                "list of (name, value) tuples",
            ),
            ("sr('200 OK', [(b'a', 'b')])", "header name must be a str"),
            ("sr('200 OK', [('a', 1)])", "header value must be a str"),
            ("sr('200 OK', [('a', '\\u20ac')])", "is not latin-1"),
            (
                "sr('200 OK', [('a b', 'c')])",
                "invalid header name \"a b\"",
            ),
            (
                "sr('200 OK', [('a', 'c\\n')])",
                "invalid value for header \"a\"",
            ),
        ] {
            let text = refused(py, &call(Some(NEVER_WAITS)), code);
            assert!(text.contains(says), "{code}: {text}");
        }
    })
}

#[test]
fn start_response_again_needs_exc_info_and_after_the_head_raises_it() {
    with_py(|py| {
        let mut c = call(Some(NEVER_WAITS));
        c.run(py, "sr('200 OK', [])").expect("start");
        assert!(refused(py, &c, "sr('500 Oops', [])").contains("called again without exc_info"));
        // Before the head left, exc_info replaces it.
        c.run(
            py,
            "sr('500 Internal Server Error', [('X-E', '1')], (None, None, None))",
        )
        .expect("replaced");
        c.response
            .send(py, Bytes::from_static(b"x"), false)
            .expect("send");
        let head = c.head().expect("head");
        assert_eq!(head.status(), 500);
        assert_eq!(head.headers()["x-e"], "1");
        // After, the app's error goes on up, with its traceback.
        let err = c
            .run(
                py,
                "import sys\ntry:\n    raise KeyError('k')\nexcept KeyError:\n    \
                     sr('500 X', [], sys.exc_info())",
            )
            .expect_err("raised");
        assert!(err.is_instance_of::<pyo3::exceptions::PyKeyError>(py));
        assert!(err.traceback(py).is_some());
        let err = c
            .run(py, "sr('500 X', [], (KeyError, KeyError('no tb'), None))")
            .expect_err("raised");
        assert!(err.is_instance_of::<pyo3::exceptions::PyKeyError>(py));
        // exc_info=None is no exc_info.
        assert!(refused(py, &c, "sr('500 X', [], None)").contains("without exc_info"));
    })
}

#[test]
fn no_more_than_the_content_length_is_sent() {
    with_py(|py| {
        let mut c = call(Some(NEVER_WAITS));
        c.run(py, "sr('200 OK', [('Content-Length', ' 5 ')])")
            .expect("start");
        c.response
            .send(py, Bytes::from_static(b"abc"), true)
            .expect("first");
        assert!(!c.response.complete());
        c.response
            .send(py, Bytes::from_static(b"defgh"), true)
            .expect("second");
        assert!(c.response.complete(), "the length is reached");
        c.response
            .send(py, Bytes::from_static(b"ignored"), true)
            .expect("after");
        c.response.end(py).expect("end");
        let mut head = c.head().expect("head");
        assert_eq!(body_now(head.body_mut()), (b"abcde".to_vec(), true));
        assert_eq!(c.exchange.outcome().1, 5);
    })
}

#[test]
fn a_body_before_start_response_is_an_error() {
    with_py(|py| {
        let c = call(Some(NEVER_WAITS));
        let err = c
            .response
            .send(py, Bytes::from_static(b"x"), true)
            .expect_err("no head");
        assert!(err
            .value(py)
            .to_string()
            .contains("before calling start_response()"));
        let err = c.response.end(py).expect_err("no head");
        assert!(err
            .value(py)
            .to_string()
            .contains("returned without calling start_response()"));
        // An empty chunk before start_response is nothing yet.
        c.response.send(py, Bytes::new(), true).expect("empty");
    })
}

#[test]
fn a_client_that_does_not_read_is_cut_off_after_the_write_timeout() {
    with_py(|py| {
        let c = call(Some(Duration::from_millis(20)));
        c.run(py, "sr('200 OK', [])").expect("start");
        let big = Bytes::from(vec![b'x'; OUT_HIGH_WATER + 1]);
        let err = c.response.send(py, big, true).expect_err("timed out");
        assert!(
            err.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py),
            "{err}"
        );
        assert!(c.exchange.is_disconnected());
    })
}

#[test]
fn a_write_over_the_high_water_mark_goes_on_once_the_client_reads() {
    with_py(|py| {
        let mut c = call(Some(NEVER_WAITS));
        c.run(py, "sr('200 OK', [])").expect("start");
        let big = vec![b'x'; OUT_HIGH_WATER + 1];
        let head_rx = std::mem::replace(&mut c.rx, oneshot::channel().1);
        // The client: reads whatever is there each time the stream has news.
        let reader = std::thread::spawn(move || {
            let mut head = head_rx.blocking_recv().expect("head");
            let mut got = 0;
            loop {
                let (data, ended) = body_now(head.body_mut());
                got += data.len();
                if ended {
                    return got;
                }
                std::thread::yield_now();
            }
        });
        c.response.send(py, Bytes::from(big), true).expect("sent");
        assert!(
            c.exchange.has_room(),
            "it returned once the client had read"
        );
        c.response
            .send(py, Bytes::from_static(b"end"), false)
            .expect("last");
        assert_eq!(
            py.allow_threads(|| reader.join().expect("join")),
            OUT_HIGH_WATER + 4
        );
    })
}

fn temp_file(name: &str, data: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("juggler-wsgi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write");
    path
}

#[test]
fn a_file_goes_out_whole_or_cut_to_the_content_length() {
    with_py(|py| {
        let path = temp_file("whole", b"0123456789");
        let mut c = call(Some(NEVER_WAITS));
        c.run(py, "sr('200 Fine', [])").expect("start");
        c.response
            .send_file(py, FileRange::open(&path).expect("open"))
            .expect("file");
        assert!(c.response.complete());
        let head = c.head().expect("head");
        assert!(matches!(head.body(), ResponseBody::File(_)));
        assert!(head.extensions().get::<ReasonPhrase>().is_some());
        assert_eq!(c.exchange.outcome().1, 10);
        let c = call(Some(NEVER_WAITS));
        c.run(py, "sr('200 OK', [('Content-Length', '4')])")
            .expect("start");
        c.response
            .send_file(py, FileRange::open(&path).expect("open"))
            .expect("file");
        assert_eq!(c.exchange.outcome().1, 4);
    })
}

#[test]
fn a_file_after_a_write_follows_whole_and_once_without_a_length() {
    with_py(|py| {
        // Larger than one chunk read, so that the reads must move on through the file.
        let data: Vec<u8> = (0..CHUNK * 2 + 100).map(|i| (i % 251) as u8).collect();
        let path = temp_file("unsized", &data);
        let mut c = call(Some(NEVER_WAITS));
        c.run(py, "w = sr('200 OK', [])\nw(b'ab')").expect("start");
        let mut head = c.head().expect("head");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                let (chunk, ended) = body_now(head.body_mut());
                got.extend(chunk);
                if ended {
                    return got;
                }
                std::thread::yield_now();
            }
        });
        c.response
            .send_file(py, FileRange::open(&path).expect("open"))
            .expect("file");
        let got = py.allow_threads(|| reader.join().expect("join"));
        assert_eq!(got.len(), data.len() + 2);
        assert!(got[2..] == data[..], "the file, in order, once");
    })
}

#[test]
fn a_file_after_a_write_follows_as_chunks() {
    with_py(|py| {
        let path = temp_file("chunks", b"0123456789");
        let mut c = call(Some(NEVER_WAITS));
        c.run(py, "w = sr('200 OK', [('Content-Length', '8')])\nw(b'ab')")
            .expect("start");
        let mut head = c.head().expect("head");
        c.response
            .send_file(py, FileRange::open(&path).expect("open"))
            .expect("file");
        assert_eq!(body_now(head.body_mut()), (b"ab012345".to_vec(), true));
        // Nothing left to send: the file is not read at all.
        let mut c = call(Some(NEVER_WAITS));
        c.run(py, "w = sr('200 OK', [('Content-Length', '2')])\nw(b'ab')")
            .expect("start");
        let mut head = c.head().expect("head");
        c.response
            .send_file(py, FileRange::open(&path).expect("open"))
            .expect("file");
        assert_eq!(body_now(head.body_mut()), (b"ab".to_vec(), true));
    })
}

#[test]
fn the_declared_length_only_when_it_is_a_plain_number() {
    let with = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_str(v).expect("value"),
        );
        declared_length(&h)
    };
    assert_eq!(with("12"), Some(12));
    assert_eq!(with("1x"), None);
    assert_eq!(declared_length(&HeaderMap::new()), None);
}

#[test]
fn only_chunks_of_64_kib_and_more_are_sent_from_the_apps_own_bytes() {
    with_py(|py| {
        for (len, shared) in [(100, false), (2000, false), (64 * 1024, true)] {
            let code = std::ffi::CString::new(format!("b'x' * {len}")).expect("code");
            let item = py.eval(&code, None, None).expect("eval");
            let original = item
                .downcast::<PyBytes>()
                .expect("bytes")
                .as_bytes()
                .as_ptr();
            let chunk = body_chunk(&item).expect("chunk");
            assert_eq!(chunk.len(), len);
            assert_eq!(chunk.as_ptr() == original, shared, "{len} bytes");
        }
    })
}

#[test]
fn body_chunks_must_be_bytes_like() {
    with_py(|py| {
        let eval = |code: &str| {
            let code = std::ffi::CString::new(code).expect("code");
            py.eval(&code, None, None).expect("eval")
        };
        assert_eq!(body_chunk(&eval("b'ab'")).expect("bytes"), "ab");
        assert_eq!(
            body_chunk(&eval("bytearray(b'cd')")).expect("bytearray"),
            "cd"
        );
        let big = body_chunk(&eval("b'z' * 70000")).expect("big");
        assert_eq!(big.len(), 70000);
        assert!(big.iter().all(|&b| b == b'z'));
        let err = body_chunk(&eval("'text'")).expect_err("str");
        assert!(err.value(py).to_string().contains("not str"));
        let err = body_chunk(&eval("5")).expect_err("int");
        assert!(err.value(py).to_string().contains("got int"));
    })
}
