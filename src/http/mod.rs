//! HTTP with hyper: serving a connection, one exchange per request, the bodies both ways.
//! Holds no Python object; an interface receives each request through [`Dispatch`].

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
#[cfg(test)]
pub(crate) mod test_harness;
pub mod timeout;
pub mod upgrade;
pub mod write_timer;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use http::request::Parts;

use crate::bridge::lag::LoopLag;
use crate::config::CoreConfig;
use crate::transport::{ConnInfo, Registry};
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

/// The parts of a request head an access log line names.
#[derive(Clone, Copy)]
pub struct Head<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub version: http::Version,
    pub headers: &'a http::HeaderMap,
}

impl<'a> Head<'a> {
    pub fn of_parts(parts: &'a Parts) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            headers: &parts.headers,
        }
    }

    pub fn of<B>(req: &'a http::Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            headers: req.headers(),
        }
    }
}

/// A request the server answered itself, without the app: a static file, the health path,
/// or a refusal (413, 431, 503).
pub struct OwnAnswer<'a> {
    pub head: Head<'a>,
    pub conn: &'a ConnInfo,
    pub forwarded: Option<&'a forwarded::Forwarded>,
    pub status: http::StatusCode,
    /// The response body's length.
    pub bytes: u64,
}

/// How the interface above takes requests, called on the I/O thread.
pub trait Dispatch: Send + Sync + 'static {
    /// Takes the request, or hands it back when the app cannot take more (answered with 503).
    fn dispatch(&self, request: NewRequest) -> Result<(), Box<NewRequest>>;

    /// Told of each request the server answered without the app, for the access log.
    fn answered_here(&self, _answer: OwnAnswer<'_>) {}
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
