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

/// How busy the app side is, for the accept gate.
pub trait Backlog: Send + Sync + 'static {
    /// Work handed to the app side that it has not picked up yet.
    fn backlog(&self) -> usize;
}

/// While the app side leaves this much work untouched, the worker stops accepting: workers
/// share the listening socket, and a worker whose event loop is busy (a CPU-bound handler)
/// would otherwise take connections an idle sibling could serve at once. Those stay in the
/// kernel's queue for whichever worker comes first.
const ACCEPT_BACKLOG: usize = 8;
/// A closed gate is looked at again after this long even without a wake-up.
const GATE_RECHECK: Duration = Duration::from_millis(50);

pub async fn accept_loop<S: ServeConnection>(
    listener: Listener,
    registry: Arc<Registry>,
    protocol: Arc<S>,
    backlog: Arc<dyn Backlog>,
) {
    let mut phase = registry.subscribe();
    loop {
        if *phase.borrow_and_update() != Phase::Running {
            break;
        }
        if backlog.backlog() >= ACCEPT_BACKLOG {
            registry.accept_gate().close();
            // Looked at again after the flag is up, so a wake-up in between is not missed.
            if backlog.backlog() >= ACCEPT_BACKLOG {
                tokio::select! {
                    _ = registry.accept_gate().opened() => {}
                    _ = tokio::time::sleep(GATE_RECHECK) => {}
                    _ = phase.changed() => {}
                }
            }
            registry.accept_gate().open();
            continue;
        }
        tokio::select! {
            res = listener.accept() => match res {
                Ok((io, info)) => {
                    let (token, p) = (registry.connection(), registry.subscribe());
                    match io {
                        Accepted::Tcp(io) => tokio::spawn(protocol.clone().serve(Lingering::new(io), info, p, token)),
                        Accepted::Unix(io) => tokio::spawn(protocol.clone().serve(Lingering::new(io), info, p, token)),
                    };
                    // Lets the new connection read its request before the next accept, so
                    // that the gate sees it: a burst of connections is not all taken at once.
                    tokio::task::yield_now().await;
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
