//! The PEP 3333 `environ`, built on the WSGI thread from the parsed request.

use http::request::Parts;
use http::{header, HeaderMap, Version};
use percent_encoding::percent_decode;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::http::forwarded::Forwarded;
use crate::transport::{ConnInfo, ServerAddr};

/// Bytes as a PEP 3333 "native string": each byte is the code point of the same value.
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    if bytes.is_ascii() {
        // ASCII bytes are valid UTF-8 with the same meaning: no conversion needed.
        return PyString::new(py, std::str::from_utf8(bytes).unwrap_or_default());
    }
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    PyString::new(py, &text)
}

/// The keys every request has with the same value, copied per request.
pub struct EnvironTemplate {
    template: Py<PyDict>,
}

impl EnvironTemplate {
    pub fn new(
        py: Python<'_>,
        root_path: &str,
        errors: PyObject,
        file_wrapper: PyObject,
    ) -> PyResult<Self> {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "wsgi.version"), (1, 0))?;
        d.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "http"))?;
        d.set_item(intern!(py, "wsgi.errors"), errors)?;
        d.set_item(intern!(py, "wsgi.multithread"), true)?;
        d.set_item(intern!(py, "wsgi.multiprocess"), false)?;
        d.set_item(intern!(py, "wsgi.run_once"), false)?;
        d.set_item(intern!(py, "wsgi.file_wrapper"), file_wrapper)?;
        d.set_item(intern!(py, "wsgi.input_terminated"), true)?;
        d.set_item(intern!(py, "SCRIPT_NAME"), PyString::new(py, root_path))?;
        Ok(Self {
            template: d.unbind(),
        })
    }

    pub fn build<'py>(
        &self,
        py: Python<'py>,
        parts: &Parts,
        conn: &ConnInfo,
        input: PyObject,
        forwarded: Option<&Forwarded>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.template.bind(py).copy()?;
        env.set_item(
            intern!(py, "REQUEST_METHOD"),
            PyString::new(py, parts.method.as_str()),
        )?;
        let raw_path = parts.uri.path().as_bytes();
        let decoded: Vec<u8> = percent_decode(raw_path).collect();
        env.set_item(intern!(py, "PATH_INFO"), latin1(py, &decoded))?;
        let query = parts.uri.query().unwrap_or("");
        env.set_item(intern!(py, "QUERY_STRING"), PyString::new(py, query))?;
        env.set_item(
            intern!(py, "SERVER_PROTOCOL"),
            match parts.version {
                Version::HTTP_10 => intern!(py, "HTTP/1.0"),
                Version::HTTP_2 => intern!(py, "HTTP/2"),
                _ => intern!(py, "HTTP/1.1"),
            },
        )?;
        if conn.secure.load(std::sync::atomic::Ordering::Relaxed) {
            env.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
        }
        let addr = addresses(py, conn)?;
        env.set_item(intern!(py, "SERVER_NAME"), addr.server_name.bind(py))?;
        env.set_item(intern!(py, "SERVER_PORT"), addr.server_port.bind(py))?;
        if let Some((host, port)) = &addr.remote {
            env.set_item(intern!(py, "REMOTE_ADDR"), host.bind(py))?;
            env.set_item(intern!(py, "REMOTE_PORT"), port.bind(py))?;
        }
        add_headers(py, &env, &parts.headers)?;
        if let Some(f) = forwarded {
            apply_forwarded(py, &env, f)?;
        }
        env.set_item(intern!(py, "wsgi.input"), input)?;
        Ok(env)
    }
}

/// What a trusted proxy said, for this request only (the connection's cached keys stay).
fn apply_forwarded(py: Python<'_>, env: &Bound<'_, PyDict>, f: &Forwarded) -> PyResult<()> {
    if let Some(https) = f.https {
        let scheme = if https {
            intern!(py, "https")
        } else {
            intern!(py, "http")
        };
        env.set_item(intern!(py, "wsgi.url_scheme"), scheme)?;
    }
    if let Some((ip, port)) = &f.client {
        env.set_item(intern!(py, "REMOTE_ADDR"), ip.as_str())?;
        env.set_item(intern!(py, "REMOTE_PORT"), port.to_string())?;
    }
    if let Some(host) = &f.host {
        env.set_item(intern!(py, "HTTP_HOST"), host.as_str())?;
    }
    if let Some((name, port)) = &f.server {
        env.set_item(intern!(py, "SERVER_NAME"), name.as_str())?;
        env.set_item(intern!(py, "SERVER_PORT"), port.to_string())?;
    }
    Ok(())
}

fn add_headers(py: Python<'_>, env: &Bound<'_, PyDict>, headers: &HeaderMap) -> PyResult<()> {
    for name in headers.keys() {
        let n = name.as_str();
        // `X_Forwarded_For` would land on the same key as `X-Forwarded-For`: a client could
        // spoof what a proxy set. Gunicorn drops such names too.
        if n.contains('_') {
            continue;
        }
        let key: Bound<'_, PyString> = match *name {
            header::CONTENT_TYPE => intern!(py, "CONTENT_TYPE").clone(),
            header::CONTENT_LENGTH => intern!(py, "CONTENT_LENGTH").clone(),
            header::HOST => intern!(py, "HTTP_HOST").clone(),
            _ => {
                let mut k = String::with_capacity(5 + n.len());
                k.push_str("HTTP_");
                k.extend(n.chars().map(|c| match c {
                    '-' => '_',
                    c => c.to_ascii_uppercase(),
                }));
                PyString::new(py, &k)
            }
        };
        let mut values = headers.get_all(name).iter();
        let value = match (values.next(), values.next()) {
            (Some(v), None) => latin1(py, v.as_bytes()),
            _ => {
                let sep: &[u8] = if *name == header::COOKIE { b"; " } else { b"," };
                let joined = headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect::<Vec<_>>()
                    .join(sep);
                latin1(py, &joined)
            }
        };
        env.set_item(key, value)?;
    }
    Ok(())
}

/// The address keys, built once per connection.
struct Addresses {
    server_name: PyObject,
    server_port: PyObject,
    remote: Option<(PyObject, PyObject)>,
}

fn addresses<'a>(py: Python<'_>, conn: &'a ConnInfo) -> PyResult<&'a Addresses> {
    let s = |text: &str| PyString::new(py, text).into_any().unbind();
    let made = conn.derived(|| -> PyResult<Addresses> {
        let (server_name, server_port) = match &conn.server {
            ServerAddr::Tcp(host, port) => (s(host), s(&port.to_string())),
            // PEP 3333 wants both non-empty; a UNIX socket has no host or port of its own.
            ServerAddr::Unix(_) => (s("localhost"), s("80")),
        };
        let remote = conn
            .client
            .as_ref()
            .map(|(host, port)| (s(host), s(&port.to_string())));
        Ok(Addresses {
            server_name,
            server_port,
            remote,
        })
    })?;
    made.ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("connection addresses"))
}

#[cfg(test)]
mod tests;
