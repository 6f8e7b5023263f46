//! The transport: listening sockets, the accept loop, lingering close, what is open and the
//! shutdown phase, and the Tokio thread they run on. Generic over the protocol it serves.

pub mod accept;
pub mod accept_errors;
pub mod balance;
pub mod gate;
pub mod linger;
pub mod listener;
pub mod proxied;
pub mod proxy_header;
pub mod registry;
pub mod tls;

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use accept::{Io, ServeConnection};
pub use listener::{ConnInfo, ServerAddr};
pub use registry::{LogLevel, Phase, Registry, Report, Token};

/// Starts the worker's I/O thread: a current-thread Tokio runtime that adopts the listening
/// socket and accepts on it until shutdown, with a PROXY header read first when `proxy` is set and a TLS handshake when `tls` is. `on_park` runs each time the thread is about to
/// sleep (the bridge delivers held-back wake-ups there); `on_start` runs inside the runtime
/// before the first accept (to spawn helper tasks).
pub fn spawn_io_thread<S: ServeConnection>(
    socket: listener::ListenSocket,
    registry: Arc<Registry>,
    protocol: Arc<S>,
    tls: Option<Arc<rustls::ServerConfig>>,
    proxy: Option<crate::config::ProxyProtocol>,
    on_park: impl Fn() + Send + Sync + 'static,
    on_start: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let on_park = Arc::new(on_park);
    let park = on_park.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || park())
        .build()?;
    let listener = {
        let _guard = rt.enter();
        listener::Listener::adopt(socket.fd, socket.unix)?
    };
    std::thread::Builder::new()
        .name("juggler-io".into())
        .spawn(move || {
            rt.block_on(async move {
                on_start();
                let before = accept::Before {
                    tls: tls.map(tokio_rustls::TlsAcceptor::from),
                    proxy: proxy.map(Arc::new),
                };
                accept::accept_loop(listener, socket.own, registry, protocol, before).await;
            });
            // The thread ends without parking again: deliver what it held back.
            on_park();
        })
}
