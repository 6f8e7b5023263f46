use std::sync::atomic::Ordering;

use super::*;
use crate::interface::test_support::{parts, tcp_conn, with_py};

fn environ(
    parts: &Parts,
    conn: &ConnInfo,
    forwarded: Option<&Forwarded>,
    keys: &[&str],
) -> Vec<String> {
    with_py(|py| {
        let t = EnvironTemplate::new(py, "/root", py.None(), py.None()).expect("template");
        let env = t
            .build(
                py,
                parts,
                conn,
                "INPUT".into_pyobject(py).expect("s").into_any().unbind(),
                forwarded,
            )
            .expect("environ");
        keys.iter()
            .map(|k| match env.get_item(k).expect("get") {
                Some(v) => v.repr().expect("repr").to_string(),
                None => "-".into(),
            })
            .collect()
    })
}

#[test]
fn the_fixed_keys_and_the_request_line() {
    let p = parts("PATCH", "/a/%E2%82%AC/b%20c?x=%41&y", &[]);
    let got = environ(
        &p,
        &tcp_conn(),
        None,
        &[
            "REQUEST_METHOD",
            "PATH_INFO",
            "QUERY_STRING",
            "SERVER_PROTOCOL",
            "SCRIPT_NAME",
            "wsgi.url_scheme",
            "wsgi.version",
            "wsgi.multithread",
            "wsgi.multiprocess",
            "wsgi.run_once",
            "wsgi.input_terminated",
            "wsgi.input",
        ],
    );
    assert_eq!(
        got,
        [
            "'PATCH'",
            // PEP 3333: the bytes, each as the code point of its value.
            "'/a/â\\x82¬/b c'",
            "'x=%41&y'",
            "'HTTP/1.1'",
            "'/root'",
            "'http'",
            "(1, 0)",
            "True",
            "False",
            "False",
            "True",
            "'INPUT'",
        ]
    );
    let mut p = parts("GET", "/", &[]);
    p.version = http::Version::HTTP_10;
    assert_eq!(
        environ(&p, &tcp_conn(), None, &["SERVER_PROTOCOL", "QUERY_STRING"]),
        ["'HTTP/1.0'", "''"]
    );
    p.version = http::Version::HTTP_2;
    assert_eq!(
        environ(&p, &tcp_conn(), None, &["SERVER_PROTOCOL"]),
        ["'HTTP/2'"]
    );
}

#[test]
fn addresses_and_the_scheme() {
    let conn = tcp_conn();
    conn.secure.store(true, Ordering::Relaxed);
    let keys = [
        "SERVER_NAME",
        "SERVER_PORT",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "wsgi.url_scheme",
    ];
    assert_eq!(
        environ(&parts("GET", "/", &[]), &conn, None, &keys),
        ["'127.0.0.1'", "'8000'", "'10.0.0.7'", "'5000'", "'https'"]
    );
    let unix = ConnInfo {
        client: None,
        server: ServerAddr::Unix("/tmp/s".into()),
        ..tcp_conn()
    };
    assert_eq!(
        environ(&parts("GET", "/", &[]), &unix, None, &keys),
        ["'localhost'", "'80'", "-", "-", "'http'"]
    );
}

#[test]
fn a_trusted_proxy_overrides_addresses_scheme_and_host() {
    let f = Forwarded {
        client: Some(("203.0.113.9".into(), 4711)),
        https: Some(true),
        host: Some("example.com".into()),
        server: Some(("example.com".into(), 443)),
    };
    let keys = [
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "wsgi.url_scheme",
        "HTTP_HOST",
        "SERVER_NAME",
        "SERVER_PORT",
    ];
    let p = parts("GET", "/", &[("host", "internal:8000")]);
    assert_eq!(
        environ(&p, &tcp_conn(), Some(&f), &keys),
        [
            "'203.0.113.9'",
            "'4711'",
            "'https'",
            "'example.com'",
            "'example.com'",
            "'443'"
        ]
    );
    let conn = tcp_conn();
    conn.secure.store(true, Ordering::Relaxed);
    let plain = Forwarded {
        https: Some(false),
        client: None,
        host: None,
        server: None,
    };
    assert_eq!(
        environ(&p, &conn, Some(&plain), &keys),
        [
            "'10.0.0.7'",
            "'5000'",
            "'http'",
            "'internal:8000'",
            "'127.0.0.1'",
            "'8000'"
        ]
    );
    let silent = Forwarded {
        https: None,
        client: None,
        host: None,
        server: None,
    };
    assert_eq!(
        environ(&p, &conn, Some(&silent), &["wsgi.url_scheme"]),
        ["'https'"]
    );
}

#[test]
fn headers_become_http_keys_joined_and_never_from_underscored_names() {
    let p = parts(
        "POST",
        "/",
        &[
            ("content-type", "text/plain"),
            ("content-length", "5"),
            ("host", "h"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x_forwarded_for", "6.6.6.6"),
            ("accept", "a"),
            ("accept", "b"),
            ("cookie", "c=1"),
            ("cookie", "d=2"),
            ("x-latin", "caf\u{e9}"),
        ],
    );
    let keys = [
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "HTTP_HOST",
        "HTTP_X_FORWARDED_FOR",
        "HTTP_ACCEPT",
        "HTTP_COOKIE",
        "HTTP_CONTENT_TYPE",
        "HTTP_CONTENT_LENGTH",
    ];
    assert_eq!(
        environ(&p, &tcp_conn(), None, &keys),
        [
            "'text/plain'",
            "'5'",
            "'h'",
            "'1.2.3.4'",
            "'a,b'",
            "'c=1; d=2'",
            "-",
            "-"
        ]
    );
    assert_eq!(
        environ(&p, &tcp_conn(), None, &["HTTP_X_LATIN"]),
        ["'cafÃ©'"]
    );
}
