//! The accept loop: hands each connection to the protocol layer, stops on shutdown and keeps
//! the runtime alive until every connection is gone.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::accept_errors::AcceptErrors;
use super::gate;
use super::linger::Lingering;
use super::listener::{Accepted, ConnInfo, Listener};
use super::proxied;
use super::registry::{LogLevel, Phase, Registry, Token};
use crate::config::ProxyProtocol;
use crate::watched_io::Watched;

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

/// What a connection goes through before its protocol serves it: a PROXY header
/// (`--proxy-protocol`), then a TLS handshake (`--ssl-*`); on most listeners, neither.
#[derive(Clone, Default)]
pub struct Before {
    pub tls: Option<TlsAcceptor>,
    pub proxy: Option<Arc<ProxyProtocol>>,
}

/// After a failed accept, the loop waits this long before it tries again: the listener stays
/// readable while descriptors are out, and trying at once would spin.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(50);

async fn accept_failed(registry: &Registry, errors: &mut AcceptErrors, error: &std::io::Error) {
    if let Some(line) = errors.failed(error, std::time::Instant::now()) {
        registry.report().log(LogLevel::Warning, line);
    }
    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
}

/// How long a worker leaves a pending connection for the less loaded sibling it nudged,
/// before it takes the connection itself if it is still there.
const DEFER: Duration = Duration::from_millis(2);
/// At most this many queued connections are taken in at once as a listener closes.
const MAX_DRAIN_ACCEPTS: usize = 4096;

/// `own`: the socket is this worker's alone (`--reuse-port`), not shared with siblings.
/// `balanced`: this loop balances the load with the siblings (one loop of a worker does).
pub async fn accept_loop<S: ServeConnection>(
    listener: Listener,
    own: bool,
    balanced: bool,
    registry: Arc<Registry>,
    protocol: Arc<S>,
    before: Before,
) {
    let mut phase = registry.subscribe();
    let balance = registry.balance().filter(|_| balanced);
    let nudges = balance.and_then(|b| Nudges::watch(b.nudged_fd()).ok());
    let mut deferred = false;
    let mut errors = AcceptErrors::default();
    let mut held = registry.accepts_held();
    loop {
        if *phase.borrow_and_update() != Phase::Running {
            break;
        }
        if *held.borrow_and_update() {
            // New connections wait in the listen backlog (or go to a sibling worker) until
            // the work already taken in shrinks.
            tokio::select! {
                _ = held.changed() => {}
                _ = phase.changed() => {}
            }
            continue;
        }
        let nudged = tokio::select! {
            ready = listener.ready() => match ready {
                Ok(()) => false,
                Err(e) => {
                    accept_failed(&registry, &mut errors, &e).await;
                    continue;
                }
            },
            () = nudged(nudges.as_ref()) => true,
            _ = phase.changed() => continue,
        };
        if !nudged && !deferred {
            let sibling = balance.and_then(|b| {
                b.less_loaded_sibling(registry.connections())
                    .map(|s| (b, s))
            });
            if let Some((balance, sibling)) = sibling {
                deferred = true;
                balance.nudge(sibling);
                tokio::select! {
                    _ = tokio::time::sleep(DEFER) => {}
                    _ = phase.changed() => {}
                }
                continue;
            }
        }
        deferred = false;
        match listener.try_accept(nudged) {
            Ok(Some((io, info))) => {
                spawn_connection(&registry, &protocol, &before, io, info);
            }
            // Another worker took it.
            Ok(None) => {}
            // Out of descriptors or a connection reset before accept: not fatal.
            Err(e) => accept_failed(&registry, &mut errors, &e).await,
        }
    }
    // Connections the kernel queued on a socket that is closing for good would be reset with
    // it, requests and all, so they are served: on a socket of this worker's own
    // (--reuse-port), whose gate it closes itself, and on the shared one once the supervisor
    // closed its gate for a stop. A worker that retires alone from a shared socket leaves the
    // queue to the siblings that go on (the gate is open).
    let draining = *phase.borrow() == Phase::Draining;
    if draining && own {
        if let Err(e) = gate::close(listener.raw_fd()) {
            registry.report().log(
                LogLevel::Debug,
                format!("cannot close the listener's gate: {e}"),
            );
        }
    }
    let serve_queue = draining && (own || gate::is_closed(listener.raw_fd()));
    if serve_queue {
        // Not through readiness: Tokio may not have seen the listener's latest event yet.
        if let Err(e) = take_queue(&listener, true, &registry, &protocol, &before) {
            accept_failed(&registry, &mut errors, &e).await;
        }
    }
    // The shared socket stays open in the supervisor until the workers are gone: a handshake
    // completed as the gate closed may still land in its queue, and is taken. Any other
    // listener closes now: a socket of this worker's own, so that the kernel sends new
    // connections to the other workers' sockets.
    let gated = if serve_queue && !own {
        Some(listener)
    } else {
        drop(listener);
        None
    };
    if let Some(b) = registry.balance() {
        b.leave();
    }
    registry.check_drained();
    // Keep the runtime alive until every connection is closed.
    while registry.connections() > 0 {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            (listener, Ok(())) = ready(gated.as_ref()) => {
                if let Err(e) = take_queue(listener, false, &registry, &protocol, &before) {
                    accept_failed(&registry, &mut errors, &e).await;
                }
                continue;
            }
        }
        if *phase.borrow() == Phase::Abort {
            // Connection tasks drop themselves on Abort; give them a turn to do so.
            while registry.connections() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// The listener still served once it is ready, or never.
async fn ready(listener: Option<&Listener>) -> (&Listener, std::io::Result<()>) {
    match listener {
        Some(l) => (l, l.ready().await),
        None => std::future::pending().await,
    }
}

/// Takes in every connection queued on the listener now, without balancing, until the queue
/// is empty or an accept fails. Bounded, since an open gate lets the kernel go on filling the
/// queue. `direct`: accept whatever Tokio knows of the listener's readiness; otherwise an
/// empty queue clears that readiness, so that the next wait is for a new connection.
fn take_queue<S: ServeConnection>(
    listener: &Listener,
    direct: bool,
    registry: &Arc<Registry>,
    protocol: &Arc<S>,
    before: &Before,
) -> std::io::Result<()> {
    for _ in 0..MAX_DRAIN_ACCEPTS {
        match listener.try_accept(direct) {
            Ok(Some((io, info))) => spawn_connection(registry, protocol, before, io, info),
            Ok(None) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Serves an accepted connection on a task of its own, counted as open while it lives.
fn spawn_connection<S: ServeConnection>(
    registry: &Arc<Registry>,
    protocol: &Arc<S>,
    before: &Before,
    io: Accepted,
    info: Arc<ConnInfo>,
) {
    let (token, phase) = (registry.connection(), registry.subscribe());
    let metrics = registry.metrics().cloned();
    if let Some(m) = &metrics {
        // Here, not in `Registry::connection`: a WebSocket takes a token of its own too.
        m.connection_accepted();
    }
    match io {
        Accepted::Tcp(io) => {
            let io = Watched::new(Lingering::new(io, info.clone()), metrics.clone());
            serve(registry, protocol, before, io, info, phase, token)
        }
        Accepted::Unix(io) => {
            let io = Watched::new(Lingering::new(io, info.clone()), metrics);
            serve(registry, protocol, before, io, info, phase, token)
        }
    }
}

fn serve<S: ServeConnection, I: Io>(
    registry: &Arc<Registry>,
    protocol: &Arc<S>,
    before: &Before,
    io: I,
    info: Arc<ConnInfo>,
    phase: watch::Receiver<Phase>,
    token: Token,
) {
    let protocol = protocol.clone();
    if before.tls.is_none() && before.proxy.is_none() {
        tokio::spawn(protocol.serve(io, info, phase, token));
        return;
    }
    let (registry, before) = (registry.clone(), before.clone());
    tokio::spawn(async move {
        let Some(proxy) = &before.proxy else {
            return secure(&registry, protocol, before.tls, io, info, phase, token).await;
        };
        // The header comes first, before TLS: it is the proxy's, not the client's.
        let mut watch = phase.clone();
        let read = tokio::select! {
            r = tokio::time::timeout(proxy.timeout, proxied::read_header(io, &info, &proxy.trusted)) => r,
            _ = handshake_cut_off(&mut watch) => return,
        };
        match read {
            Ok(Ok((source, io))) => {
                let info = match source {
                    Some(source) => proxied::relayed(&info, source),
                    None => info,
                };
                secure(&registry, protocol, before.tls, io, info, phase, token).await
            }
            Ok(Err(e)) => registry.report().log(LogLevel::Debug, e.to_string()),
            Err(_) => registry
                .report()
                .log(LogLevel::Debug, "PROXY header timed out".into()),
        }
    });
}

/// Serves the connection, after a TLS handshake when the listener has TLS.
async fn secure<S: ServeConnection, I: Io>(
    registry: &Registry,
    protocol: Arc<S>,
    tls: Option<TlsAcceptor>,
    io: I,
    info: Arc<ConnInfo>,
    phase: watch::Receiver<Phase>,
    token: Token,
) {
    let Some(tls) = tls else {
        return protocol.serve(io, info, phase, token).await;
    };
    info.secure
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // Plain HTTP on a TLS port, a scanner, a client that stalls: each ends here, with only
    // this connection closed. A shutdown does not wait out a stalled handshake.
    let mut watch = phase.clone();
    let handshake = tokio::select! {
        r = tokio::time::timeout(super::tls::HANDSHAKE_TIMEOUT, tls.accept(io)) => r,
        _ = handshake_cut_off(&mut watch) => return,
    };
    match handshake {
        Ok(Ok(stream)) => {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            info.alpn_h2.store(h2, std::sync::atomic::Ordering::Relaxed);
            protocol.serve(stream, info, phase, token).await
        }
        Ok(Err(e)) => registry
            .report()
            .log(LogLevel::Debug, format!("TLS handshake failed: {e}")),
        Err(_) => registry
            .report()
            .log(LogLevel::Debug, "TLS handshake timed out".into()),
    }
}

/// Completes when a TLS handshake still under way must give up: at once on an abort, and
/// after the grace a fresh connection gets once a drain began.
async fn handshake_cut_off(phase: &mut watch::Receiver<Phase>) {
    loop {
        let now = *phase.borrow_and_update();
        match now {
            Phase::Abort => return,
            Phase::Draining => {
                tokio::select! {
                    _ = tokio::time::sleep(super::tls::DRAIN_HANDSHAKE_GRACE) => return,
                    changed = phase.changed() => if changed.is_err() { return },
                }
                continue;
            }
            Phase::Running => {}
        }
        if phase.changed().await.is_err() {
            return;
        }
    }
}

/// This worker's end of its siblings' nudges: an eventfd they write to.
struct Nudges(AsyncFd<std::os::fd::OwnedFd>);

impl Nudges {
    fn watch(fd: std::os::fd::RawFd) -> std::io::Result<Self> {
        let own = super::listener::dup_fd(fd)?;
        // SAFETY: the AsyncFd owns the duplicate, which stays open until it is dropped.
        let watched =
            unsafe { AsyncFd::register_with_interest(own, tokio::io::Interest::READABLE) }
                .map_err(std::io::Error::from)?;
        Ok(Self(watched))
    }
}

/// Completes when a sibling nudged this worker (never, for a worker without siblings).
async fn nudged(nudges: Option<&Nudges>) {
    let Some(n) = nudges else {
        return std::future::pending().await;
    };
    loop {
        let Ok(mut ready) = n.0.readable().await else {
            return std::future::pending().await;
        };
        let read = ready.try_io(|fd| {
            use std::os::fd::AsRawFd;
            let mut count = 0u64;
            // SAFETY: reads 8 bytes into a local from the eventfd.
            let r = unsafe { libc::read(fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
        match read {
            Ok(Ok(())) => return,
            // Readiness was stale; wait for the next nudge.
            Err(_would_block) => {}
            // Cannot happen with an eventfd we own; never spin on it.
            Ok(Err(_)) => return std::future::pending().await,
        }
    }
}
