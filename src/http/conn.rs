//! One connection served by hyper (HTTP/1.1, or HTTP/2 by prior knowledge or ALPN, as `--http`
//! and the client say), with graceful drain and hard abort.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::{watch, Notify};

use super::builders::Builders;
use super::head_timer::HeadClock;
use super::sniff::{sniff, Prefixed, Sniffed};
use super::write_timer::{WriteClock, WriteWatch};
use super::{service, Http};
use crate::config::HttpVersions;
use crate::transport::{ConnInfo, Io, LogLevel, Phase, ServeConnection, Token};
use crate::watched_io::{IoWatcher, Watched};

/// On a drain, how long a connection accepted but still without a request may wait for its
/// first one. Closing it at once would lose a request the client has already sent (a fresh
/// connection is never idle from the client's point of view); this bounds how long a
/// connection opened ahead of time (a browser's preconnect) delays the drain.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// How long a connection may wait for its first bytes (to sniff its version), and an HTTP/2
/// one may idle without a stream, when keep-alive is off (`--timeout-keep-alive 0`): neither
/// has a request to close after, so both get the default keep-alive.
const IDLE_WITHOUT_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// HTTP for the transport's accept loop.
pub struct HttpProtocol {
    http: Arc<Http>,
    builders: Builders,
}

impl HttpProtocol {
    pub fn new(http: Arc<Http>) -> Self {
        let builders = Builders::new(&http.config);
        Self { http, builders }
    }
}

impl ServeConnection for HttpProtocol {
    async fn serve<I: Io>(
        self: Arc<Self>,
        io: I,
        info: Arc<ConnInfo>,
        phase: watch::Receiver<Phase>,
        token: Token,
    ) {
        // Two copies of the serving code, so that a connection without a head timeout or a
        // write timeout has no clock in the way of its reads and writes.
        let config = &self.http.config;
        let head = config
            .limits
            .head_timeout
            .map(|limit| (Arc::new(HeadClock::default()), limit));
        let write = config.write_timeout.map(WriteWatch::new);
        let clocks = Clocks {
            head: head.as_ref().map(|(clock, _)| clock.clone()),
            write: write.as_ref().map(|w| w.clock.clone()),
        };
        if clocks.head.is_none() && clocks.write.is_none() {
            return self.serve_io(io, info, phase, token, head, write).await;
        }
        let io = Watched::new(io, clocks);
        self.serve_io(io, info, phase, token, head, write).await
    }
}

/// The clocks a connection's stream tells of its reads and writes.
struct Clocks {
    head: Option<Arc<HeadClock>>,
    write: Option<Arc<WriteClock>>,
}

impl IoWatcher for Clocks {
    fn read(&self, n: usize) {
        if let Some(head) = &self.head {
            head.read(n);
        }
    }

    fn written(&self, n: usize) {
        if let Some(write) = &self.write {
            write.written(n);
        }
    }

    fn write_blocked(&self) {
        if let Some(write) = &self.write {
            write.write_blocked();
        }
    }

    fn flushed(&self) {
        if let Some(write) = &self.write {
            write.flushed();
        }
    }
}

impl HttpProtocol {
    async fn serve_io<I: Io>(
        self: Arc<Self>,
        io: I,
        info: Arc<ConnInfo>,
        mut phase: watch::Receiver<Phase>,
        token: Token,
        head: Option<(Arc<HeadClock>, Duration)>,
        write: Option<WriteWatch>,
    ) {
        let _token = token;
        let http = self.http.clone();
        let first = Arc::new(FirstRequest::default());
        let seen = first.clone();
        let conn_info = info.clone();
        // Whether this peer may speak for its clients: decided once per connection.
        let proxied = http.config.proxy.as_ref().is_some_and(|trusted| {
            trusted.trusts_peer(info.client.as_ref().map(|(host, _)| host.as_str()))
        });
        // The service of this connection; `clock` counts its requests in progress (the head
        // clock of HTTP/1.1, the idle clock of HTTP/2), when it has one.
        let served_write = write.clone();
        let service = |clock: Option<Arc<HeadClock>>| {
            let seen = seen.clone();
            let info = info.clone();
            let http = http.clone();
            let write = served_write.clone();
            service_fn(move |req| {
                seen.mark();
                let clocks = service::ConnClocks {
                    head: clock.clone(),
                    write: write.clone(),
                };
                service::handle(req, info.clone(), http.clone(), proxied, clocks)
            })
        };
        let idle_limit = self
            .http
            .config
            .timeout_keep_alive
            .unwrap_or(IDLE_WITHOUT_KEEP_ALIVE);
        // What serving either version takes besides the connection: the clock its service
        // counts requests on, and what `drive` watches. HTTP/2 has no slow head to time (its
        // frames interleave, and h2 bounds them), but a connection without an open stream is
        // idle, and idles only so long.
        let plan = move |h2: bool, phase: watch::Receiver<Phase>| {
            let (clock, head, idle) = if h2 {
                let idle = Arc::new(HeadClock::default());
                (Some(idle.clone()), None, Some((idle, idle_limit)))
            } else {
                (head.as_ref().map(|(c, _)| c.clone()), head, None)
            };
            let d = Drive {
                first,
                conn_info,
                phase,
                head,
                idle,
                write,
            };
            (clock, d)
        };
        let b = &self.builders;
        let h2 = match self.http.config.http {
            HttpVersions::Http1 => false,
            HttpVersions::Http2 => true,
            // Over TLS, ALPN has decided (RFC 9113 §3.3).
            HttpVersions::Auto if info.secure.load(Ordering::Relaxed) => {
                info.alpn_h2.load(Ordering::Relaxed)
            }
            HttpVersions::Auto => {
                let Some((sniffed, io)) = self.sniff(io, &mut phase).await else {
                    return;
                };
                let io = TokioIo::new(io);
                return match sniffed {
                    Sniffed::Closed => {}
                    Sniffed::Http1 => {
                        let (clock, d) = plan(false, phase);
                        let conn = b.h1.serve_connection(io, service(clock)).with_upgrades();
                        self.drive(conn, |c| c.graceful_shutdown(), d).await
                    }
                    Sniffed::Http2 => {
                        let (clock, d) = plan(true, phase);
                        let conn = b.h2.serve_connection(io, service(clock));
                        self.drive(conn, |c| c.graceful_shutdown(), d).await
                    }
                };
            }
        };
        let io = TokioIo::new(io);
        let (clock, d) = plan(h2, phase);
        if h2 {
            let conn = b.h2.serve_connection(io, service(clock));
            self.drive(conn, |c| c.graceful_shutdown(), d).await
        } else {
            let conn = b.h1.serve_connection(io, service(clock)).with_upgrades();
            self.drive(conn, |c| c.graceful_shutdown(), d).await
        }
    }

    /// The HTTP version of a cleartext connection, from its first bytes; None when it never
    /// says (it idled past the keep-alive timeout, or the server is going away).
    async fn sniff<I: Io>(
        &self,
        io: I,
        phase: &mut watch::Receiver<Phase>,
    ) -> Option<(Sniffed, Prefixed<I>)> {
        let idle = self
            .http
            .config
            .timeout_keep_alive
            .unwrap_or(IDLE_WITHOUT_KEEP_ALIVE);
        let give_up = async {
            let mut limit = Box::pin(tokio::time::sleep(idle));
            loop {
                match *phase.borrow_and_update() {
                    Phase::Abort => return,
                    // A connection that has sent nothing yet gets the grace a fresh one gets.
                    Phase::Draining => {
                        let grace = tokio::time::Instant::now() + FIRST_REQUEST_GRACE;
                        if grace < limit.deadline() {
                            limit.as_mut().reset(grace);
                        }
                    }
                    Phase::Running => {}
                }
                tokio::select! {
                    _ = limit.as_mut() => return,
                    changed = phase.changed() => if changed.is_err() { return },
                }
            }
        };
        tokio::select! {
            sniffed = sniff(io) => sniffed.ok(),
            _ = give_up => None,
        }
    }

    /// Serves the connection until it ends, shutting it gracefully on a drain and dropping
    /// it on an abort.
    async fn drive<C, E>(&self, conn: C, shutdown: impl Fn(Pin<&mut C>), d: Drive)
    where
        C: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let Drive {
            first,
            conn_info,
            mut phase,
            head,
            idle,
            write,
        } = d;
        tokio::pin!(conn);
        // HTTP/2 (the one with an idle clock) also times its streams' waits for room.
        let mut write_deadline = write.as_ref().map(|w| match idle {
            Some(_) => w.deadline_with_streams(),
            None => w.deadline(),
        });
        let mut draining = false;
        // Draining, and waiting for a fresh connection's first request before closing.
        let mut awaiting_first = false;
        let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            match *phase.borrow_and_update() {
                Phase::Abort => return,
                Phase::Draining if !draining => {
                    draining = true;
                    if first.began.load(Ordering::Acquire) {
                        shutdown(conn.as_mut());
                    } else {
                        awaiting_first = true;
                        grace = Some(Box::pin(tokio::time::sleep(FIRST_REQUEST_GRACE)));
                    }
                }
                _ => {}
            }
            // Biased: the connection is polled first and no random number is drawn per
            // wake-up.
            tokio::select! {
                biased;
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        // hyper refused a request (and answered it where it could): the
                        // client may still be sending, so the close lingers.
                        conn_info.refused.store(true, Ordering::Relaxed);
                        // Clients that vanish or send garbage are routine (hyper already
                        // answered 400/431 where it could): only worth a debug line.
                        self.http
                            .registry
                            .report()
                            .log(LogLevel::Debug, format!("connection closed: {e}"));
                    }
                    return;
                }
                changed = phase.changed() => if changed.is_err() { return },
                // The first request began (hyper finishes it, then closes), or never came.
                _ = first.began_notify.notified(), if awaiting_first => {
                    awaiting_first = false;
                    shutdown(conn.as_mut());
                }
                _ = async {
                    match grace.as_mut() {
                        Some(g) => g.await,
                        None => std::future::pending().await,
                    }
                }, if awaiting_first => {
                    awaiting_first = false;
                    shutdown(conn.as_mut());
                }
                // An HTTP/2 connection without an open stream for the keep-alive time (one
                // that never sent a request too): GOAWAY, and hyper closes it.
                _ = async {
                    match &idle {
                        Some((clock, limit)) => clock.idle_for(*limit).await,
                        None => std::future::pending().await,
                    }
                }, if idle.is_some() && !draining => {
                    draining = true;
                    awaiting_first = false;
                    shutdown(conn.as_mut());
                }
                // A head trickling in for longer than --timeout-request-head (slowloris):
                // dropped without an answer, as hyper does with its own header timeout.
                _ = async {
                    match &head {
                        Some((clock, limit)) => clock.expired(*limit).await,
                        None => std::future::pending().await,
                    }
                }, if head.is_some() => {
                    self.http.registry.report().log(
                        LogLevel::Debug,
                        "connection closed: request head not complete in time".into(),
                    );
                    return;
                }
                // The client took nothing of what is sent for --timeout-write: dropping the
                // connection drops its response bodies, which tells their apps.
                _ = std::future::poll_fn(|cx| match write_deadline.as_mut() {
                    Some(deadline) => deadline.poll_expired(cx),
                    None => std::task::Poll::Pending,
                }), if write_deadline.is_some() => {
                    conn_info.write_timed_out.store(true, Ordering::Relaxed);
                    self.http.registry.report().log(
                        LogLevel::Debug,
                        "connection closed: the client took nothing for --timeout-write".into(),
                    );
                    return;
                }
            }
        }
    }
}

/// What `drive` watches besides the connection.
struct Drive {
    first: Arc<FirstRequest>,
    conn_info: Arc<ConnInfo>,
    phase: watch::Receiver<Phase>,
    /// The head clock and its limit (`--timeout-request-head`, HTTP/1.1 only).
    head: Option<(Arc<HeadClock>, Duration)>,
    /// HTTP/2: its requests in progress, and how long it may go without one.
    idle: Option<(Arc<HeadClock>, Duration)>,
    /// Since when its client has taken nothing, and for how long it may (`--timeout-write`).
    write: Option<WriteWatch>,
}

/// Whether a connection has begun serving a request yet.
#[derive(Default)]
struct FirstRequest {
    began: AtomicBool,
    began_notify: Notify,
}

impl FirstRequest {
    fn mark(&self) {
        if !self.began.load(Ordering::Relaxed) {
            self.began.store(true, Ordering::Release);
            self.began_notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests;
