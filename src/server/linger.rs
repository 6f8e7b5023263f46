//! Closing a connection that still has unread request bytes without losing our last answer.
//!
//! When hyper refuses a request (400, 431) it answers and closes at once. If the client's
//! request was not read to the end, or the client is still sending, closing the socket makes
//! the kernel answer with a reset instead of a FIN: a client still uploading then fails on
//! send without reading our answer, and the reset can discard an answer not read yet. So on
//! drop, a connection whose client has not closed its side is half-closed and drained for a
//! short, bounded while (as nginx's lingering close does) before the socket is closed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Streams that can tell, without blocking, whether unread bytes are waiting.
pub trait Peek: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn try_read_now(&self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Peek for TcpStream {
    fn try_read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.try_read(buf)
    }
}

impl Peek for UnixStream {
    fn try_read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.try_read(buf)
    }
}

pub struct Lingering<S: Peek> {
    inner: Option<S>,
}

impl<S: Peek> Lingering<S> {
    pub fn new(stream: S) -> Self {
        Self {
            inner: Some(stream),
        }
    }

    fn stream(&mut self) -> io::Result<&mut S> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection closed"))
    }
}

impl<S: Peek> Drop for Lingering<S> {
    fn drop(&mut self) {
        let Some(stream) = self.inner.take() else {
            return;
        };
        let mut probe = [0u8; 1];
        // A client that closed its side sends nothing more: no need to linger. One that has
        // not may still be sending (the rest of a refused head, an upload the server
        // answered early), and closing now would answer its bytes with a reset.
        match stream.try_read_now(&mut probe) {
            Ok(0) => return,
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return,
            _ => {}
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            let mut stream = stream;
            let _ = stream.shutdown().await;
            let mut buf = vec![0u8; 16 * 1024];
            let mut drained = 0;
            let _ = tokio::time::timeout(LINGER_TIME, async {
                while drained < LINGER_BYTES {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
            })
            .await;
        });
    }
}

impl<S: Peek> AsyncRead for Lingering<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<S: Peek> AsyncWrite for Lingering<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_write(cx, data),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, Lingering<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, Lingering::new(server))
    }

    #[tokio::test]
    async fn a_client_still_sending_after_the_answer_is_drained_not_reset() {
        let (mut client, mut server) = pair().await;
        client
            .write_all(b"the start of a request")
            .await
            .expect("send");
        server.write_all(b"431 answer").await.expect("answer");
        // The server is done with the connection while the client has not closed its side.
        drop(server);
        let mut got = Vec::new();
        client
            .read_to_end(&mut got)
            .await
            .expect("the answer, then a FIN");
        assert_eq!(got, b"431 answer");
        // The client goes on sending: drained, not answered with a reset.
        for _ in 0..5 {
            client
                .write_all(&[b'a'; 1024])
                .await
                .expect("still accepted");
            tokio::task::yield_now().await;
        }
    }
}
