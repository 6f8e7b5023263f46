//! Listening sockets handed over by the Python side as file descriptors (bound by the
//! supervisor, possibly inherited across fork), adopted by Tokio in the worker.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use std::any::Any;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use tokio::io::unix::AsyncFd;
use tokio::net::{TcpStream, UnixStream};

/// Where a connection came from and arrived at.
pub struct ConnInfo {
    pub client: Option<(String, u16)>,
    pub server: ServerAddr,
    /// Whatever the interface derives from the addresses once per connection rather than per
    /// request (ASGI keeps its `client`/`server` tuples here); the transport never looks in.
    pub derived: OnceLock<Box<dyn Any + Send + Sync>>,
    /// The protocol layer refused a request on this connection (400, 431) and closes it while
    /// the client may still be sending: its close lingers (`transport::linger`).
    pub refused: AtomicBool,
    /// The protocol layer closed the connection because its client took nothing of what was
    /// sent for `--timeout-write`: the access lines of its requests say so.
    pub write_timed_out: AtomicBool,
    /// Served over TLS (set before the handshake): `https`/`wss` in the scope.
    pub secure: AtomicBool,
    /// The TLS handshake chose HTTP/2 by ALPN.
    pub alpn_h2: AtomicBool,
}

impl ConnInfo {
    pub fn new(client: Option<(String, u16)>, server: ServerAddr) -> Self {
        Self {
            client,
            server,
            derived: OnceLock::new(),
            refused: AtomicBool::new(false),
            write_timed_out: AtomicBool::new(false),
            secure: AtomicBool::new(false),
            alpn_h2: AtomicBool::new(false),
        }
    }

    /// The same connection with another client: the one a PROXY header names, read before
    /// anything else was derived or decided.
    pub fn with_client(&self, client: Option<(String, u16)>) -> Self {
        Self::new(client, self.server.clone())
    }

    /// What the interface derived from the addresses, made on first use.
    pub fn derived<T: Any + Send + Sync, E>(
        &self,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<Option<&T>, E> {
        if self.derived.get().is_none() {
            // Two requests of one connection racing here both make the value; one is kept.
            let _ = self.derived.set(Box::new(make()?));
        }
        Ok(self.derived.get().and_then(|d| d.downcast_ref::<T>()))
    }
}

#[derive(Clone, Debug)]
pub enum ServerAddr {
    Tcp(String, u16),
    Unix(String),
}

/// A listening socket for the I/O thread to adopt.
pub struct ListenSocket {
    pub fd: OwnedFd,
    pub unix: bool,
    /// This worker alone listens on it (`--reuse-port`); otherwise it is shared with the
    /// sibling workers and the supervisor, which decides when its gate closes.
    pub own: bool,
}

/// Polled for readiness apart from accepting, so that a worker can leave a pending
/// connection to a sibling (`transport::balance`).
pub enum Listener {
    Tcp(AsyncFd<std::net::TcpListener>),
    Unix(AsyncFd<std::os::unix::net::UnixListener>, String),
}

pub enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

fn tcp_connection(
    stream: std::net::TcpStream,
    peer: std::net::SocketAddr,
) -> io::Result<(Accepted, Arc<ConnInfo>)> {
    stream.set_nonblocking(true)?;
    // Small responses must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr()?;
    let info = ConnInfo::new(
        Some((peer.ip().to_canonical().to_string(), peer.port())),
        ServerAddr::Tcp(local.ip().to_canonical().to_string(), local.port()),
    );
    Ok((Accepted::Tcp(TcpStream::from_std(stream)?), Arc::new(info)))
}

fn unix_connection(
    stream: std::os::unix::net::UnixStream,
    path: &str,
) -> io::Result<(Accepted, Arc<ConnInfo>)> {
    stream.set_nonblocking(true)?;
    let info = ConnInfo::new(None, ServerAddr::Unix(path.to_owned()));
    Ok((
        Accepted::Unix(UnixStream::from_std(stream)?),
        Arc::new(info),
    ))
}

/// Watches a listening socket for readability only.
fn register<T: std::os::fd::AsRawFd>(listener: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: the listener owns its descriptor and the AsyncFd owns the listener, so the
    // descriptor stays open and the same until the AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// A duplicate of the caller's descriptor, so that Python may close its socket object freely.
pub fn dup_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1; it never touches memory.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

impl Listener {
    /// Must run inside the Tokio runtime that will poll it.
    pub fn adopt(fd: OwnedFd, unix: bool) -> io::Result<Self> {
        if unix {
            let std = std::os::unix::net::UnixListener::from(fd);
            std.set_nonblocking(true)?;
            let path = std
                .local_addr()?
                .as_pathname()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            Ok(Listener::Unix(register(std)?, path))
        } else {
            let std = std::net::TcpListener::from(fd);
            std.set_nonblocking(true)?;
            Ok(Listener::Tcp(register(std)?))
        }
    }

    /// The listening socket's descriptor (for its gate, `transport::gate`).
    pub fn raw_fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Listener::Tcp(l) => l.get_ref().as_raw_fd(),
            Listener::Unix(l, _) => l.get_ref().as_raw_fd(),
        }
    }

    /// Waits until a connection may be pending (without taking it).
    pub async fn ready(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.readable().await.map(drop),
            Listener::Unix(l, _) => l.readable().await.map(drop),
        }
    }

    /// Takes a pending connection, if there is one. `nudged`: a sibling said one is waiting,
    /// which this worker's own readiness may not know about.
    pub fn try_accept(&self, nudged: bool) -> io::Result<Option<(Accepted, Arc<ConnInfo>)>> {
        let result = match self {
            Listener::Tcp(l) => {
                let accepted = if nudged {
                    l.get_ref().accept()
                } else {
                    l.try_io(tokio::io::Interest::READABLE, |l| l.accept())
                };
                accepted.and_then(|(stream, peer)| tcp_connection(stream, peer))
            }
            Listener::Unix(l, path) => {
                let accepted = if nudged {
                    l.get_ref().accept()
                } else {
                    l.try_io(tokio::io::Interest::READABLE, |l| l.accept())
                };
                accepted.and_then(|(stream, _)| unix_connection(stream, path))
            }
        };
        match result {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}
