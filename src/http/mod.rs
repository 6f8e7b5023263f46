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
}
