//! The ASGI `http` scope, built on the loop thread from the parsed request.

use http::request::Parts;
use http::{Method, Version};
use percent_encoding::percent_decode;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use crate::server::{ConnInfo, ServerAddr};

/// The parts of every scope that never change, copied per request.
pub struct ScopeTemplate {
    template: Py<PyDict>,
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
        Ok(Self {
            template: d.unbind(),
            root_path: root_path.to_owned(),
        })
    }

    pub fn build<'py>(
        &self,
        py: Python<'py>,
        parts: &Parts,
        conn: &ConnInfo,
        state: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let scope = self.template.bind(py).copy()?;
        scope.set_item(intern!(py, "http_version"), http_version(py, parts.version))?;
        scope.set_item(intern!(py, "method"), method(py, &parts.method))?;

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
        for (name, value) in &parts.headers {
            let pair = PyTuple::new(
                py,
                [
                    PyBytes::new(py, name.as_str().as_bytes()),
                    PyBytes::new(py, value.as_bytes()),
                ],
            )?;
            headers.append(pair)?;
        }
        scope.set_item(intern!(py, "headers"), headers)?;
        let addr = addresses(py, conn)?;
        scope.set_item(intern!(py, "client"), addr.client.bind(py))?;
        scope.set_item(intern!(py, "server"), addr.server.bind(py))?;
        if let Some(state) = state {
            scope.set_item(intern!(py, "state"), state.copy()?)?;
        }
        Ok(scope)
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
