//! The accept loop and per-connection serving, with graceful drain and hard abort.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::linger::Lingering;
use super::listener::{Accepted, Listener};
use super::shared::{ConnInfo, ConnectionToken, Event, LogLevel, Phase, Shared};
use crate::http::service;

pub fn http1_builder(shared: &Shared) -> http1::Builder {
    let cfg = &shared.config;
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .max_header_size(cfg.max_header_size)
        .auto_date_header(cfg.date_header);
    // Not `pipeline_flush`: with it hyper buffers a streaming body without bound when the
    // client reads slowly (its write buffer then always reports room), defeating backpressure.
    match cfg.keep_alive_timeout {
        // hyper's header-read timer starts as soon as a connection waits for a request head,
        // so it bounds idle keep-alive connections and slow headers alike.
        Some(t) => b.keep_alive(true).header_read_timeout(t),
        None => b
            .keep_alive(false)
            .header_read_timeout(Duration::from_secs(5)),
    };
    b
}

pub async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    let builder = Arc::new(http1_builder(&shared));
    let outbox = shared.clone();
    tokio::spawn(async move { outbox.outbox_loop().await });
    let mut phase = shared.phase.subscribe();
    loop {
        if *phase.borrow_and_update() != Phase::Running {
            break;
        }
        tokio::select! {
            res = listener.accept() => match res {
                Ok((io, info)) => {
                    let token = ConnectionToken::new(&shared);
                    let (b, s, p) = (builder.clone(), shared.clone(), shared.phase.subscribe());
                    match io {
                        Accepted::Tcp(io) => tokio::spawn(serve(Lingering::new(io), info, b, s, p, token)),
                        Accepted::Unix(io) => tokio::spawn(serve(Lingering::new(io), info, b, s, p, token)),
                    };
                }
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: not fatal.
                    shared.log(LogLevel::Warning, format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = phase.changed() => {}
        }
    }
    drop(listener);
    if shared.connections.load(Ordering::Acquire) == 0 {
        shared.post(Event::Drained);
    }
    // Keep the runtime alive until every connection is closed.
    while shared.connections.load(Ordering::Acquire) > 0 {
        if phase.changed().await.is_err() {
            break;
        }
        if *phase.borrow() == Phase::Abort {
            // Connection tasks drop themselves on Abort; give them a turn to do so.
            while shared.connections.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

async fn serve<I>(
    io: I,
    info: Arc<ConnInfo>,
    builder: Arc<http1::Builder>,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    _token: ConnectionToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| service::handle(req, info.clone(), svc_shared.clone()));
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let current = *phase.borrow_and_update();
        match current {
            Phase::Abort => return,
            Phase::Draining if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ => {}
        }
        // Biased: the connection is polled first and no random number is drawn per wake-up.
        tokio::select! {
            biased;
            res = conn.as_mut() => {
                if let Err(e) = res {
                    report(&shared, &e);
                }
                return;
            }
            changed = phase.changed() => if changed.is_err() { return },
        }
    }
}

fn report(shared: &Shared, e: &hyper::Error) {
    // Clients that vanish or send garbage are routine (hyper already answered 400/431 where it
    // could), so this is only worth a debug line.
    shared.log(LogLevel::Debug, format!("connection closed: {e}"));
}
