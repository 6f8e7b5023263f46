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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::listener::ConnInfo;

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
    info: Arc<ConnInfo>,
}

impl<S: Peek> Lingering<S> {
    pub fn new(stream: S, info: Arc<ConnInfo>) -> Self {
        Self {
            inner: Some(stream),
            info,
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
        // Unread bytes are waiting, or a refused request's client may still be sending (the
        // rest of a head too large to read): closing now would answer with a reset. Other
        // closes (after a complete exchange) do not linger, and cost nothing more.
        let lingers = match stream.try_read_now(&mut probe) {
            Ok(n) => n > 0,
            Err(e) => {
                e.kind() == io::ErrorKind::WouldBlock && self.info.refused.load(Ordering::Relaxed)
            }
        };
        if !lingers {
            return;
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

    async fn pair(refused: bool) -> (TcpStream, TcpStream, Arc<ConnInfo>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let info = Arc::new(ConnInfo {
            client: None,
            server: crate::transport::ServerAddr::Tcp("127.0.0.1".into(), addr.port()),
            derived: std::sync::OnceLock::new(),
            refused: std::sync::atomic::AtomicBool::new(refused),
            write_timed_out: Default::default(),
            secure: Default::default(),
            alpn_h2: Default::default(),
        });
        (client, server, info)
    }

    /// The client goes on sending after the server's answer and FIN: Ok if its bytes were
    /// taken, an error once they are answered with a reset.
    async fn keep_sending(client: &mut TcpStream) -> io::Result<()> {
        for _ in 0..5 {
            client.write_all(&[b'a'; 1024]).await?;
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    async fn answer_and_close(
        client: &mut TcpStream,
        server: TcpStream,
        info: Arc<ConnInfo>,
        read_request: bool,
    ) {
        client
            .write_all(b"the start of a request")
            .await
            .expect("send");
        let mut server = Lingering::new(server, info);
        if read_request {
            let mut buf = [0u8; 22];
            server.read_exact(&mut buf).await.expect("request");
        }
        server.write_all(b"431 answer").await.expect("answer");
        drop(server);
        let mut got = Vec::new();
        client
            .read_to_end(&mut got)
            .await
            .expect("the answer, then a FIN");
        assert_eq!(got, b"431 answer");
    }

    #[tokio::test]
    async fn unread_bytes_are_drained_not_reset() {
        let (mut client, server, info) = pair(false).await;
        answer_and_close(&mut client, server, info, false).await;
        keep_sending(&mut client).await.expect("drained, not reset");
    }

    #[tokio::test]
    async fn a_refused_client_still_sending_is_drained_even_with_nothing_unread() {
        let (mut client, server, info) = pair(true).await;
        answer_and_close(&mut client, server, info, true).await;
        keep_sending(&mut client).await.expect("drained, not reset");
    }

    #[tokio::test]
    async fn a_normal_close_with_nothing_unread_does_not_linger() {
        let (mut client, server, info) = pair(false).await;
        answer_and_close(&mut client, server, info, true).await;
        assert!(keep_sending(&mut client).await.is_err(), "closed at once");
    }
}
