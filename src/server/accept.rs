//! The accept loop: hands each connection to the protocol layer, stops on shutdown and keeps
//! the runtime alive until every connection is gone.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::linger::Lingering;
use super::listener::{Accepted, ConnInfo, Listener};
use super::registry::{LogLevel, Phase, Registry, Token};

/// A byte stream the protocol layer can serve.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The protocol layer's side of a connection (HTTP today, more later).
pub trait ServeConnection: Send + Sync + 'static {
    /// Serves `io` until it closes or `phase` says to stop; `token` keeps it counted as open.
    fn serve<I: Io>(
        self: Arc<Self>,
        io: I,
        info: Arc<ConnInfo>,
        phase: watch::Receiver<Phase>,
        token: Token,
    ) -> impl Future<Output = ()> + Send + 'static;
}

pub async fn accept_loop<S: ServeConnection>(
    listener: Listener,
    registry: Arc<Registry>,
    protocol: Arc<S>,
) {
    let mut phase = registry.subscribe();
    loop {
        if *phase.borrow_and_update() != Phase::Running {
            break;
        }
        tokio::select! {
            res = listener.accept() => match res {
                Ok((io, info)) => {
                    let (token, p) = (registry.connection(), registry.subscribe());
                    match io {
                        Accepted::Tcp(io) => tokio::spawn(protocol.clone().serve(Lingering::new(io), info, p, token)),
                        Accepted::Unix(io) => tokio::spawn(protocol.clone().serve(Lingering::new(io), info, p, token)),
                    };
                }
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: not fatal.
                    registry.report().log(LogLevel::Warning, format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = phase.changed() => {}
        }
    }
    drop(listener);
    registry.check_drained();
    // Keep the runtime alive until every connection is closed.
    while registry.connections() > 0 {
        if phase.changed().await.is_err() {
            break;
        }
        if *phase.borrow() == Phase::Abort {
            // Connection tasks drop themselves on Abort; give them a turn to do so.
            while registry.connections() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}
