//! Listening sockets handed over by the Python side as file descriptors (bound by the
//! supervisor, possibly inherited across fork), adopted by Tokio in the worker.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use std::any::Any;
use std::sync::OnceLock;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Where a connection came from and arrived at.
pub struct ConnInfo {
    pub client: Option<(String, u16)>,
    pub server: ServerAddr,
    /// Whatever the interface derives from the addresses once per connection rather than per
    /// request (ASGI keeps its `client`/`server` tuples here); the transport never looks in.
    pub derived: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl ConnInfo {
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

pub enum ServerAddr {
    Tcp(String, u16),
    Unix(String),
}

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, String),
}

pub enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
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
            Ok(Listener::Unix(UnixListener::from_std(std)?, path))
        } else {
            let std = std::net::TcpListener::from(fd);
            std.set_nonblocking(true)?;
            Ok(Listener::Tcp(TcpListener::from_std(std)?))
        }
    }

    pub async fn accept(&self) -> io::Result<(Accepted, Arc<ConnInfo>)> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                // Small responses must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr()?;
                let info = ConnInfo {
                    client: Some((peer.ip().to_canonical().to_string(), peer.port())),
                    server: ServerAddr::Tcp(local.ip().to_canonical().to_string(), local.port()),
                    derived: OnceLock::new(),
                };
                Ok((Accepted::Tcp(stream), Arc::new(info)))
            }
            Listener::Unix(l, path) => {
                let (stream, _) = l.accept().await?;
                let info = ConnInfo {
                    client: None,
                    server: ServerAddr::Unix(path.clone()),
                    derived: OnceLock::new(),
                };
                Ok((Accepted::Unix(stream), Arc::new(info)))
            }
        }
    }
}
