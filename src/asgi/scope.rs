//! The ASGI `http` scope, built on the loop thread from the parsed request.

use std::sync::atomic::Ordering;

use http::request::Parts;
use http::{header, Method, Version};
use percent_encoding::percent_decode;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use crate::http::forwarded::Forwarded;
use crate::transport::{ConnInfo, ServerAddr};

/// The parts of every scope that never change, copied per request.
pub struct ScopeTemplate {
    template: Py<PyDict>,
    websocket: Py<PyDict>,
    root_path: String,
}

impl ScopeTemplate {
    pub fn new(py: Python<'_>, root_path: &str) -> PyResult<Self> {
        let d = PyDict::new(py);
        let asgi = PyDict::new(py);
        asgi.set_item(intern!(py, "version"), "3.0")?;
        asgi.set_item(intern!(py, "spec_version"), "2.4")?;
        d.set_item(intern!(py, "type"), intern!(py, "http"))?;
        d.set_item(intern!(py, "asgi"), asgi)?;
        d.set_item(intern!(py, "scheme"), intern!(py, "http"))?;
        d.set_item(intern!(py, "root_path"), PyString::new(py, root_path))?;
        // Every per-request key is present already, so the copy has room for all of them
        // and filling it in never resizes the dict.
        for key in [
            intern!(py, "http_version"),
            intern!(py, "method"),
            intern!(py, "path"),
            intern!(py, "raw_path"),
            intern!(py, "query_string"),
            intern!(py, "headers"),
            intern!(py, "client"),
            intern!(py, "server"),
        ] {
            d.set_item(key, py.None())?;
        }
        // One dict shared by every scope: a copy per request would cost 0.5 % of a hello
        // request's instructions. The spec says a dict (a read-only mapping broke
        // json.dumps and deepcopy of a scope); only servers write to it, and an app that
        // took pathsend out would only make later requests fall back to reading in Python.
        let extensions = PyDict::new(py);
        extensions.set_item(intern!(py, "http.response.pathsend"), PyDict::new(py))?;
        d.set_item(intern!(py, "extensions"), extensions)?;
        let ws = PyDict::new(py);
        ws.set_item(intern!(py, "type"), intern!(py, "websocket"))?;
        ws.set_item(intern!(py, "asgi"), d.get_item(intern!(py, "asgi"))?)?;
        ws.set_item(intern!(py, "scheme"), intern!(py, "ws"))?;
        ws.set_item(intern!(py, "http_version"), intern!(py, "1.1"))?;
        ws.set_item(intern!(py, "root_path"), PyString::new(py, root_path))?;
        Ok(Self {
            template: d.unbind(),
            websocket: ws.unbind(),
            root_path: root_path.to_owned(),
        })
    }

    /// The `websocket` scope of a handshake, with the extensions juggler offers on it.
    pub fn build_websocket<'py>(
        &self,
        py: Python<'py>,
        parts: &Parts,
        conn: &ConnInfo,
        state: Option<&Bound<'py, PyDict>>,
        subprotocols: Vec<String>,
        forwarded: Option<&Forwarded>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let scope = self.websocket.bind(py).copy()?;
        if is_secure(conn, forwarded) {
            scope.set_item(intern!(py, "scheme"), intern!(py, "wss"))?;
        }
        self.fill(py, &scope, parts, conn, state, forwarded)?;
        scope.set_item(intern!(py, "subprotocols"), PyList::new(py, subprotocols)?)?;
        let extensions = PyDict::new(py);
        extensions.set_item(intern!(py, "websocket.http.response"), PyDict::new(py))?;
        scope.set_item(intern!(py, "extensions"), extensions)?;
        Ok(scope)
    }

    pub fn build<'py>(
        &self,
        py: Python<'py>,
        parts: &Parts,
        conn: &ConnInfo,
        state: Option<&Bound<'py, PyDict>>,
        forwarded: Option<&Forwarded>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let scope = self.template.bind(py).copy()?;
        scope.set_item(intern!(py, "http_version"), http_version(py, parts.version))?;
        scope.set_item(intern!(py, "method"), method(py, &parts.method))?;
        if is_secure(conn, forwarded) {
            scope.set_item(intern!(py, "scheme"), intern!(py, "https"))?;
        }
        self.fill(py, &scope, parts, conn, state, forwarded)?;
        Ok(scope)
    }

    /// What `http` and `websocket` scopes share: the target, headers, addresses and state.
    fn fill<'py>(
        &self,
        py: Python<'py>,
        scope: &Bound<'py, PyDict>,
        parts: &Parts,
        conn: &ConnInfo,
        state: Option<&Bound<'py, PyDict>>,
        forwarded: Option<&Forwarded>,
    ) -> PyResult<()> {
        let raw_path = parts.uri.path().as_bytes();
        let decoded = percent_decode(raw_path).decode_utf8_lossy();
        let path = if self.root_path.is_empty() {
            PyString::new(py, &decoded)
        } else {
            PyString::new(py, &format!("{}{}", self.root_path, decoded))
        };
        scope.set_item(intern!(py, "path"), path)?;
        scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, raw_path))?;
        let query = parts.uri.query().unwrap_or("").as_bytes();
        scope.set_item(intern!(py, "query_string"), PyBytes::new(py, query))?;

        let headers = PyList::empty(py);
        // A forwarded host replaces the Host header, which frameworks build URLs from.
        let mut host = forwarded.and_then(|f| f.host.as_deref());
        for (name, value) in &parts.headers {
            let value = match host {
                Some(h) if name == header::HOST => {
                    host = None;
                    h.as_bytes()
                }
                _ => value.as_bytes(),
            };
            let pair = PyTuple::new(
                py,
                [
                    PyBytes::new(py, name.as_str().as_bytes()),
                    PyBytes::new(py, value),
                ],
            )?;
            headers.append(pair)?;
        }
        if let Some(h) = host {
            // The request had no Host header (HTTP/2 names the host in :authority).
            headers.append((PyBytes::new(py, b"host"), PyBytes::new(py, h.as_bytes())))?;
        }
        scope.set_item(intern!(py, "headers"), headers)?;
        let addr = addresses(py, conn)?;
        scope.set_item(intern!(py, "client"), addr.client.bind(py))?;
        scope.set_item(intern!(py, "server"), addr.server.bind(py))?;
        if let Some(f) = forwarded {
            // Per request: the connection's cached tuples stay as they are.
            if let Some((ip, port)) = &f.client {
                scope.set_item(intern!(py, "client"), (ip.as_str(), *port))?;
            }
            if let Some((name, port)) = &f.server {
                scope.set_item(intern!(py, "server"), (name.as_str(), *port))?;
            }
        }
        if let Some(state) = state {
            scope.set_item(intern!(py, "state"), state.copy()?)?;
        }
        Ok(())
    }
}

/// TLS as the client spoke it: to the proxy, when a trusted one said so.
fn is_secure(conn: &ConnInfo, forwarded: Option<&Forwarded>) -> bool {
    match forwarded.and_then(|f| f.https) {
        Some(https) => https,
        None => conn.secure.load(Ordering::Relaxed),
    }
}

/// The scope's `client` and `server` tuples, built once per connection.
struct Addresses {
    client: PyObject,
    server: PyObject,
}

fn addresses<'a>(py: Python<'_>, conn: &'a ConnInfo) -> PyResult<&'a Addresses> {
    let made = conn.derived(|| -> PyResult<Addresses> {
        let client = match &conn.client {
            Some((host, port)) => (host.as_str(), *port).into_py_any(py)?,
            None => py.None(),
        };
        let server = match &conn.server {
            ServerAddr::Tcp(host, port) => (host.as_str(), *port).into_py_any(py)?,
            ServerAddr::Unix(path) => (path.as_str(), py.None()).into_py_any(py)?,
        };
        Ok(Addresses { client, server })
    })?;
    made.ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("connection addresses"))
}

pub fn http_version(py: Python<'_>, v: Version) -> &Bound<'_, PyString> {
    match v {
        Version::HTTP_10 => intern!(py, "1.0"),
        Version::HTTP_2 => intern!(py, "2"),
        Version::HTTP_09 => intern!(py, "0.9"),
        _ => intern!(py, "1.1"),
    }
}

fn method<'py>(py: Python<'py>, m: &Method) -> Bound<'py, PyString> {
    match *m {
        Method::GET => intern!(py, "GET").clone(),
        Method::POST => intern!(py, "POST").clone(),
        Method::PUT => intern!(py, "PUT").clone(),
        Method::DELETE => intern!(py, "DELETE").clone(),
        Method::HEAD => intern!(py, "HEAD").clone(),
        Method::PATCH => intern!(py, "PATCH").clone(),
        Method::OPTIONS => intern!(py, "OPTIONS").clone(),
        _ => PyString::new(py, m.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use http::Request;

    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().uri(uri).method("GET");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn tcp() -> ConnInfo {
        ConnInfo {
            client: Some(("127.0.0.1".into(), 5000)),
            server: ServerAddr::Tcp("127.0.0.1".into(), 8000),
            derived: OnceLock::new(),
            refused: Default::default(),
            write_timed_out: Default::default(),
            secure: Default::default(),
            alpn_h2: Default::default(),
        }
    }

    fn with_py<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
        pyo3::prepare_freethreaded_python();
        Python::with_gil(f)
    }

    fn get<'py, T: pyo3::FromPyObject<'py>>(scope: &Bound<'py, PyDict>, key: &str) -> T {
        scope
            .get_item(key)
            .expect("get")
            .unwrap_or_else(|| panic!("no {key}"))
            .extract()
            .expect("type")
    }

    #[test]
    fn path_is_percent_decoded_as_utf8_and_raw_path_is_not() {
        with_py(|py| {
            let t = ScopeTemplate::new(py, "").expect("template");
            let s = t
                .build(
                    py,
                    &parts("/a/%E2%82%AC/b%20c?x=%41", &[]),
                    &tcp(),
                    None,
                    None,
                )
                .expect("scope");
            assert_eq!(get::<String>(&s, "path"), "/a/€/b c");
            assert_eq!(get::<Vec<u8>>(&s, "raw_path"), b"/a/%E2%82%AC/b%20c");
            assert_eq!(get::<Vec<u8>>(&s, "query_string"), b"x=%41");
            assert_eq!(get::<String>(&s, "method"), "GET");
            assert_eq!(get::<String>(&s, "http_version"), "1.1");
            assert_eq!(get::<String>(&s, "type"), "http");
        })
    }

    #[test]
    fn root_path_prefixes_path_but_not_raw_path() {
        with_py(|py| {
            let t = ScopeTemplate::new(py, "/api").expect("template");
            let s = t
                .build(py, &parts("/items", &[]), &tcp(), None, None)
                .expect("scope");
            assert_eq!(get::<String>(&s, "root_path"), "/api");
            assert_eq!(get::<String>(&s, "path"), "/api/items");
            assert_eq!(get::<Vec<u8>>(&s, "raw_path"), b"/items");
        })
    }

    #[test]
    fn headers_keep_order_and_repeats_with_lowercase_names() {
        with_py(|py| {
            let t = ScopeTemplate::new(py, "").expect("template");
            let p = parts("/", &[("X-A", "1"), ("x-b", "2"), ("X-A", "3")]);
            let s = t.build(py, &p, &tcp(), None, None).expect("scope");
            let headers: Vec<(Vec<u8>, Vec<u8>)> = get(&s, "headers");
            let a: Vec<_> = headers.iter().filter(|(k, _)| k == b"x-a").collect();
            assert_eq!(a.len(), 2);
            assert_eq!(
                (a[0].1.as_slice(), a[1].1.as_slice()),
                (&b"1"[..], &b"3"[..])
            );
            assert!(headers.iter().any(|(k, v)| k == b"x-b" && v == b"2"));
        })
    }

    #[test]
    fn addresses_for_tcp_and_unix() {
        with_py(|py| {
            let t = ScopeTemplate::new(py, "").expect("template");
            let s = t
                .build(py, &parts("/", &[]), &tcp(), None, None)
                .expect("scope");
            assert_eq!(
                get::<(String, u16)>(&s, "client"),
                ("127.0.0.1".into(), 5000)
            );
            assert_eq!(
                get::<(String, u16)>(&s, "server"),
                ("127.0.0.1".into(), 8000)
            );
            let unix = ConnInfo {
                client: None,
                server: ServerAddr::Unix("/tmp/j.sock".into()),
                derived: OnceLock::new(),
                refused: Default::default(),
                write_timed_out: Default::default(),
                secure: Default::default(),
                alpn_h2: Default::default(),
            };
            let s = t
                .build(py, &parts("/", &[]), &unix, None, None)
                .expect("scope");
            assert!(s.get_item("client").expect("get").expect("key").is_none());
            assert_eq!(
                get::<(String, Option<u16>)>(&s, "server"),
                ("/tmp/j.sock".into(), None)
            );
        })
    }

    #[test]
    fn forwarded_addresses_apply_to_one_request_only() {
        with_py(|py| {
            let t = ScopeTemplate::new(py, "").expect("template");
            let conn = tcp();
            let f = Forwarded {
                client: Some(("203.0.113.7".into(), 0)),
                https: Some(true),
                host: Some("example.com".into()),
                server: Some(("example.com".into(), 443)),
            };
            let p = parts("/", &[("host", "internal:8000"), ("x-a", "1")]);
            let s = t.build(py, &p, &conn, None, Some(&f)).expect("scope");
            assert_eq!(
                get::<(String, u16)>(&s, "client"),
                ("203.0.113.7".into(), 0)
            );
            assert_eq!(
                get::<(String, u16)>(&s, "server"),
                ("example.com".into(), 443)
            );
            assert_eq!(get::<String>(&s, "scheme"), "https");
            let headers: Vec<(Vec<u8>, Vec<u8>)> = get(&s, "headers");
            assert_eq!(headers[0], (b"host".to_vec(), b"example.com".to_vec()));
            assert_eq!(headers.len(), 2, "replaced, not added");
            // The next request on the same connection sees the connection's own addresses.
            let s = t.build(py, &p, &conn, None, None).expect("scope");
            assert_eq!(
                get::<(String, u16)>(&s, "client"),
                ("127.0.0.1".into(), 5000)
            );
            assert_eq!(get::<String>(&s, "scheme"), "http");
            let ws = t
                .build_websocket(py, &p, &conn, None, vec![], Some(&f))
                .expect("scope");
            assert_eq!(get::<String>(&ws, "scheme"), "wss");
        })
    }

    #[test]
    fn each_scope_gets_its_own_copy_of_the_state() {
        with_py(|py| {
            let t = ScopeTemplate::new(py, "").expect("template");
            let state = PyDict::new(py);
            state.set_item("db", "pool").expect("set");
            let first = t
                .build(py, &parts("/", &[]), &tcp(), Some(&state), None)
                .expect("scope");
            let copy = first
                .get_item("state")
                .expect("get")
                .expect("state")
                .downcast_into::<PyDict>()
                .expect("dict");
            copy.set_item("leak", true).expect("set");
            let second = t
                .build(py, &parts("/", &[]), &tcp(), Some(&state), None)
                .expect("scope");
            let fresh = second.get_item("state").expect("get").expect("state");
            assert!(!fresh.contains("leak").expect("contains"));
            assert!(!state.contains("leak").expect("contains"));
            assert!(t
                .build(py, &parts("/", &[]), &tcp(), None, None)
                .expect("scope")
                .get_item("state")
                .expect("get")
                .is_none());
        })
    }

    #[test]
    fn pathsend_is_offered_in_a_plain_dict_of_extensions() {
        with_py(|py| {
            let t = ScopeTemplate::new(py, "").expect("template");
            let scope = t
                .build(py, &parts("/", &[]), &tcp(), None, None)
                .expect("scope");
            let offered = scope
                .get_item("extensions")
                .expect("get")
                .expect("extensions");
            assert!(
                offered.is_exact_instance_of::<PyDict>(),
                "the spec says a dict"
            );
            assert!(offered
                .contains("http.response.pathsend")
                .expect("contains"));
        })
    }

    #[test]
    fn versions_and_uncommon_methods() {
        with_py(|py| {
            assert_eq!(
                http_version(py, Version::HTTP_10).to_str().expect("str"),
                "1.0"
            );
            assert_eq!(
                http_version(py, Version::HTTP_2).to_str().expect("str"),
                "2"
            );
            assert_eq!(
                http_version(py, Version::HTTP_09).to_str().expect("str"),
                "0.9"
            );
            // The common methods are one interned str, not a new one per request.
            for m in [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::HEAD,
                Method::PATCH,
                Method::OPTIONS,
            ] {
                let (a, b) = (method(py, &m), method(py, &m));
                assert!(a.is(&b), "{m} is interned");
                assert_eq!(a.to_str().expect("str"), m.as_str());
            }
            let purge = Method::from_bytes(b"PURGE").expect("method");
            assert_eq!(method(py, &purge).to_str().expect("str"), "PURGE");
            assert_eq!(method(py, &Method::DELETE).to_str().expect("str"), "DELETE");
        })
    }
    #[test]
    fn a_forwarded_host_replaces_only_the_host_header_or_is_added() {
        with_py(|py| {
            let t = ScopeTemplate::new(py, "").expect("template");
            let f = Forwarded {
                client: None,
                https: None,
                host: Some("example.com".into()),
                server: None,
            };
            let p = parts("/", &[("x-a", "1"), ("host", "internal"), ("x-b", "2")]);
            let s = t.build(py, &p, &tcp(), None, Some(&f)).expect("scope");
            let headers: Vec<(Vec<u8>, Vec<u8>)> = get(&s, "headers");
            assert_eq!(
                headers,
                [
                    (b"x-a".to_vec(), b"1".to_vec()),
                    (b"host".to_vec(), b"example.com".to_vec()),
                    (b"x-b".to_vec(), b"2".to_vec()),
                ]
            );
            // HTTP/2 names the host in :authority: no Host header to replace.
            let p = parts("/", &[("x-a", "1")]);
            let s = t.build(py, &p, &tcp(), None, Some(&f)).expect("scope");
            let headers: Vec<(Vec<u8>, Vec<u8>)> = get(&s, "headers");
            assert_eq!(
                headers,
                [
                    (b"x-a".to_vec(), b"1".to_vec()),
                    (b"host".to_vec(), b"example.com".to_vec()),
                ]
            );
        })
    }

    #[test]
    fn the_websocket_scope_and_the_scheme_over_tls() {
        with_py(|py| {
            let t = ScopeTemplate::new(py, "/root").expect("template");
            let p = parts("/chat?x=1", &[("host", "h")]);
            let conn = tcp();
            let ws = t
                .build_websocket(py, &p, &conn, None, vec!["a".into(), "b".into()], None)
                .expect("scope");
            assert_eq!(get::<String>(&ws, "type"), "websocket");
            assert_eq!(get::<String>(&ws, "scheme"), "ws");
            assert_eq!(get::<String>(&ws, "http_version"), "1.1");
            assert_eq!(get::<String>(&ws, "path"), "/root/chat");
            assert_eq!(get::<String>(&ws, "root_path"), "/root");
            assert_eq!(get::<Vec<u8>>(&ws, "query_string"), b"x=1");
            assert_eq!(get::<Vec<String>>(&ws, "subprotocols"), ["a", "b"]);
            let ext: Bound<'_, PyDict> = ws
                .get_item("extensions")
                .expect("get")
                .expect("extensions")
                .downcast_into()
                .expect("dict");
            assert!(ext.contains("websocket.http.response").expect("contains"));
            let asgi: Bound<'_, PyDict> = ws
                .get_item("asgi")
                .expect("get")
                .expect("asgi")
                .downcast_into()
                .expect("dict");
            assert_eq!(
                asgi.get_item("version")
                    .expect("get")
                    .expect("v")
                    .extract::<String>()
                    .expect("s"),
                "3.0"
            );
            conn.secure.store(true, Ordering::Relaxed);
            let ws = t
                .build_websocket(py, &p, &conn, None, vec![], None)
                .expect("scope");
            assert_eq!(get::<String>(&ws, "scheme"), "wss");
            let s = t.build(py, &p, &conn, None, None).expect("scope");
            assert_eq!(get::<String>(&s, "scheme"), "https");
            // A trusted proxy's word wins over the connection's, both ways.
            let plain = Forwarded {
                client: None,
                https: Some(false),
                host: None,
                server: None,
            };
            let s = t.build(py, &p, &conn, None, Some(&plain)).expect("scope");
            assert_eq!(get::<String>(&s, "scheme"), "http");
        })
    }
}
