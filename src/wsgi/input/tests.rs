use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::error::ClientDisconnected;
use crate::http::exchange::Exchange;
use crate::interface::test_support::{exchange, with_py};
use crate::wsgi::delivery::Delivery;
use crate::wsgi::wait::ThreadWaker;

/// Bounds a wait the test does not expect, so that a broken read fails instead of hanging.
const NEVER_WAITS: Duration = Duration::from_secs(2);

fn waiter(exchange: &Arc<Exchange>, timeout: Option<Duration>) -> Waiter {
    Waiter {
        exchange: exchange.clone(),
        waker: ThreadWaker::for_this_thread(),
        timeout,
        delivery: Arc::new(Delivery::new()),
    }
}

/// `wsgi.input` over a body that arrived as `chunks` and ended; `code` runs with it as
/// `i` and gives `out`'s repr.
fn run(chunks: &[&'static [u8]], code: &str) -> String {
    let (ex, _rx) = exchange(false);
    for c in chunks {
        ex.push_body(Bytes::from_static(c));
    }
    ex.finish_body();
    with_py(|py| {
        // The body is all there: a read that waits is a bug, cut short by the time-out.
        let input = Py::new(py, WsgiInput::new(waiter(&ex, Some(NEVER_WAITS)))).expect("input");
        let globals = pyo3::types::PyDict::new(py);
        globals.set_item("i", input).expect("i");
        let code = std::ffi::CString::new(code).expect("code");
        py.run(&code, Some(&globals), None).expect("runs");
        let out = globals.get_item("out").expect("get").expect("out");
        out.repr().expect("repr").to_string()
    })
}

#[test]
fn read_with_and_without_a_size() {
    assert_eq!(
        run(&[b"abc", b"def"], "out = (i.read(4), i.read(-1), i.read())"),
        "(b'abcd', b'ef', b'')"
    );
    assert_eq!(
        run(&[b"ab", b"cd"], "out = (i.read(None), i.read(1))"),
        "(b'abcd', b'')"
    );
    assert_eq!(
        run(&[b"abc"], "out = (i.read(0), i.read(9))"),
        "(b'', b'abc')"
    );
}

#[test]
fn readline_across_chunks_and_with_a_limit() {
    assert_eq!(
        run(
            &[b"ab", b"c\nde", b"f\n", b"tail"],
            "out = (i.readline(), i.readline(), i.readline(), i.readline())"
        ),
        "(b'abc\\n', b'def\\n', b'tail', b'')"
    );
    assert_eq!(
        run(
            &[b"abcdef\nxy\n"],
            "out = (i.readline(3), i.readline(-1), i.readline(2), i.readline(9))"
        ),
        "(b'abc', b'def\\n', b'xy', b'\\n')"
    );
    // A limit reached before any newline stops reading from the client.
    assert_eq!(
        run(&[b"abcd", b"ef\n"], "out = (i.readline(3), i.read())"),
        "(b'abc', b'def\\n')"
    );
    // A newline found after a first chunk without one: the search went on from there.
    assert_eq!(
        run(
            &[b"a\n", b""],
            "i.read(1)\nout = (i.readline(), i.readline())"
        ),
        "(b'\\n', b'')"
    );
    assert_eq!(
        run(&[b"abc", b"de\nf"], "out = (i.readline(), i.read())"),
        "(b'abcde\\n', b'f')"
    );
}

#[test]
fn readlines_and_iteration() {
    assert_eq!(
        run(&[b"a\nb\n", b"c"], "out = i.readlines()"),
        "[b'a\\n', b'b\\n', b'c']"
    );
    assert_eq!(
        run(&[b"aa\nbb\ncc\n"], "out = (i.readlines(4), i.readlines(0))"),
        "([b'aa\\n', b'bb\\n'], [b'cc\\n'])"
    );
    assert_eq!(
        run(
            &[b"aa\nbb\ncc\n"],
            "out = (i.readlines(3), i.readlines(-1))"
        ),
        "([b'aa\\n'], [b'bb\\n', b'cc\\n'])"
    );
    assert_eq!(
        run(&[b"x\n", b"y\nz"], "out = (iter(i) is i, list(i))"),
        "(True, [b'x\\n', b'y\\n', b'z'])"
    );
    assert_eq!(run(&[], "out = (list(i), i.read())"), "([], b'')");
}

#[test]
fn a_client_that_left_raises_client_disconnected_once() {
    let (ex, _rx) = exchange(false);
    ex.push_body(Bytes::from_static(b"part"));
    ex.disconnect();
    with_py(|py| {
        let mut input = WsgiInput::new(waiter(&ex, Some(NEVER_WAITS)));
        let err = input.read(py, None).expect_err("gone");
        assert!(err.is_instance_of::<ClientDisconnected>(py));
        // Then the body reads as ended, not as a second error.
        let rest = input.read(py, None).expect("rest");
        assert_eq!(rest.extract::<Vec<u8>>(py).expect("bytes"), b"");
    })
}

#[test]
fn a_body_that_comes_later_wakes_the_reader() {
    let (ex, _rx) = exchange(false);
    let producer = ex.clone();
    with_py(|py| {
        let mut input = WsgiInput::new(waiter(&ex, Some(NEVER_WAITS)));
        let pusher = std::thread::spawn(move || {
            producer.push_body(Bytes::from_static(b"late"));
            producer.finish_body();
        });
        let data = input.read(py, None).expect("read");
        assert_eq!(data.extract::<Vec<u8>>(py).expect("bytes"), b"late");
        py.allow_threads(|| pusher.join().expect("join"));
    })
}

#[test]
fn a_client_too_slow_to_send_is_cut_off_after_the_write_timeout() {
    let (ex, _rx) = exchange(false);
    with_py(|py| {
        let mut input = WsgiInput::new(waiter(&ex, Some(Duration::from_millis(20))));
        let err = input.read(py, Some(1)).expect_err("timed out");
        assert!(
            err.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py),
            "{err}"
        );
        assert!(ex.is_disconnected());
    })
}
