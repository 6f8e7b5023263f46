//! juggler's Rust core: socket I/O, HTTP and the bridge to the Python threads.
//!
//! Layers, each depending only on those below it (see docs/architecture.md):
//! `asgi`, `wsgi` (interfaces) -> `interface` (what they plug into) -> `http` (protocol, with
//! `ws` for WebSockets) ->
//! `server` (transport) and `bridge` (thread crossing) -> `error`, `config`, `options`, `trusted`,
//! `metrics`, `shared_cells`, `watched_io`.

/// `AsyncWrite` for a stream wrapper that only looks at reads: every write call goes to the
/// wrapped stream in field `io` unchanged (`http::sniff::Prefixed`,
/// `transport::proxied::Replayed`, `ws::watch::Watched`). Defined before the modules, so that
/// every layer can use it.
macro_rules! forward_async_write {
    ($wrapper:ident) => {
        impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<I> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }
        }
    };
}

pub mod asgi;
pub mod bridge;
pub mod config;
pub mod error;
pub mod http;
pub mod interface;
pub mod log_format;
pub mod metrics;
pub mod options;
pub mod py;
pub mod shared_cells;
pub mod transport;
pub mod trusted;
pub mod watched_io;
pub mod ws;
pub mod wsgi;

use pyo3::prelude::*;

#[pymodule]
fn _juggler(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "ClientDisconnected",
        m.py().get_type::<error::ClientDisconnected>(),
    )?;
    m.add("ProtocolError", m.py().get_type::<error::ProtocolError>())?;
    m.add("ConfigError", m.py().get_type::<error::ConfigError>())?;
    m.add_class::<config::CoreConfig>()?;
    m.add_class::<interface::server::Server>()?;
    m.add_class::<py::LoadSlots>()?;
    m.add_class::<py::Metrics>()?;
    m.add_class::<py::TlsSettings>()?;
    m.add_function(wrap_pyfunction!(py::close_gate, m)?)?;
    asgi::register(m)?;
    wsgi::register(m)?;
    Ok(())
}
