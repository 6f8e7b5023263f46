//! juggler's Rust core: socket I/O, HTTP and the bridge to the asyncio event loop.

pub mod asgi;
pub mod bridge;
pub mod config;
pub mod error;
pub mod http;
pub mod server;

use pyo3::prelude::*;

#[pymodule]
fn _juggler(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "ClientDisconnected",
        m.py().get_type::<error::ClientDisconnected>(),
    )?;
    m.add_class::<config::CoreConfig>()?;
    m.add_class::<server::Server>()?;
    m.add_class::<bridge::awaitable::Ready>()?;
    m.add_class::<bridge::awaitable::Done>()?;
    m.add_class::<asgi::finish::RunApp>()?;
    Ok(())
}
