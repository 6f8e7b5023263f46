//! HTTP with hyper: serving a connection, one exchange per request, the bodies both ways.
//! Holds no Python object; an interface receives each request through [`Dispatch`].

/// `AsyncWrite` for a stream wrapper that only looks at reads: every write call goes to the
/// wrapped stream in field `io` unchanged (`sniff::Prefixed`, `head_timer::Clocked`).
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

pub mod body;
pub mod builders;
pub mod conn;
pub mod exchange;
pub mod file;
pub mod forwarded;
pub mod head_timer;
pub mod limits;
pub mod measure;
pub mod service;
pub mod sniff;
pub mod static_files;
pub mod timeout;
pub mod upgrade;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use http::request::Parts;

use crate::bridge::lag::LoopLag;
use crate::config::CoreConfig;
use crate::server::{ConnInfo, Registry};
pub use exchange::Exchange;

/// A parsed request head with the exchange that carries its bodies.
pub struct NewRequest {
    pub exchange: Arc<Exchange>,
    pub parts: Parts,
    pub conn: Arc<ConnInfo>,
    /// Set when the request is a WebSocket handshake: the app gets a `websocket` scope, and
    /// the exchange carries only an HTTP answer that refuses the upgrade.
    pub websocket: Option<Arc<crate::ws::Session>>,
    /// What a trusted proxy said about the client (`--proxy-headers`), for this request only.
    pub forwarded: Option<Box<forwarded::Forwarded>>,
}

/// How the interface above takes requests, called on the I/O thread.
pub trait Dispatch: Send + Sync + 'static {
    /// Takes the request, or hands it back when the app cannot take more (answered with 503).
    fn dispatch(&self, request: NewRequest) -> Result<(), Box<NewRequest>>;
}

/// What every connection of one worker shares.
pub struct Http {
    pub config: CoreConfig,
    pub registry: Arc<Registry>,
    pub dispatch: Arc<dyn Dispatch>,
    /// Exchanges alive on either side, for `--limit-concurrency`.
    pub inflight: Arc<AtomicUsize>,
    /// The event loop's lag, for `--max-loop-lag`.
    pub lag: Arc<LoopLag>,
    /// Where this worker counts its requests (`--metrics-bind`).
    pub metrics: Option<crate::metrics::Slot>,
}
