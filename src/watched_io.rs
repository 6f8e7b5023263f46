//! A stream that tells a watcher what crossed it: the metrics count bytes both ways
//! (`--metrics-bind`, below TLS, so the counts are what crossed the wire), the head clock
//! notes reads (`--timeout-request-head`, `http::head_timer`), and the write clock notes
//! writes that wait for the client and writes that go through (`--timeout-write`,
//! `http::write_timer`). At the ground of the layers, so that the transport (`transport`)
//! and the protocol (`http`) both use it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::Slot;

/// What a [`Watched`] stream reports to.
pub trait IoWatcher: Unpin {
    /// `n` bytes (more than zero) were read.
    fn read(&self, _n: usize) {}
    /// `n` bytes were written.
    fn written(&self, _n: usize) {}
    /// A write or a flush could not go on: the peer is not taking what is sent.
    fn write_blocked(&self) {}
    /// A flush completed: everything written so far has gone out.
    fn flushed(&self) {}
}

/// Every accepted connection goes through one, counted or not: one more type of stream would
/// double the copies of the whole HTTP stack the compiler makes, for a branch it saves per
/// read and write.
impl IoWatcher for Option<Slot> {
    fn read(&self, n: usize) {
        if let Some(slot) = self {
            slot.bytes_in(n);
        }
    }

    fn written(&self, n: usize) {
        if let Some(slot) = self {
            slot.bytes_out(n);
        }
    }
}

pub struct Watched<S, W> {
    io: S,
    watcher: W,
}

impl<S, W> Watched<S, W> {
    pub fn new(io: S, watcher: W) -> Self {
        Self { io, watcher }
    }
}

impl<S, W: IoWatcher> Watched<S, W> {
    fn wrote(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(n)) => self.watcher.written(*n),
            Poll::Pending => self.watcher.write_blocked(),
            Poll::Ready(Err(_)) => {}
        }
    }
}

impl<S: AsyncRead + Unpin, W: IoWatcher> AsyncRead for Watched<S, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            this.watcher.read(read);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin, W: IoWatcher> AsyncWrite for Watched<S, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, data);
        this.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        match polled {
            Poll::Ready(Ok(())) => this.watcher.flushed(),
            Poll::Pending => this.watcher.write_blocked(),
            Poll::Ready(Err(_)) => {}
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
