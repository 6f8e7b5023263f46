//! Which HTTP version a cleartext connection speaks, from its first bytes: HTTP/2 with prior
//! knowledge (h2c) opens with a fixed preface, anything else is HTTP/1.1. Over TLS, ALPN has
//! decided already.
//!
//! hyper-util's auto builder does the same, but stays in the way of every read and poll
//! afterwards (about 1 % of a small request's instructions); here the bytes read to decide
//! are handed back once, and the connection is then served by hyper's own HTTP/1.1 or HTTP/2
//! connection directly.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, PartialEq, Eq)]
pub enum Sniffed {
    Http1,
    Http2,
    /// The client closed before saying anything that decides.
    Closed,
}

/// Reads until the bytes so far are no longer a prefix of the preface (HTTP/1.1; usually
/// after the first byte) or are the whole preface (HTTP/2). The bytes read come back in the
/// returned stream.
pub async fn sniff<I: AsyncRead + Unpin>(mut io: I) -> io::Result<(Sniffed, Prefixed<I>)> {
    let mut buf = [0u8; PREFACE.len()];
    let mut len = 0;
    let verdict = loop {
        let n = io.read(&mut buf[len..]).await?;
        if n == 0 {
            break Sniffed::Closed;
        }
        len += n;
        if buf[..len] != PREFACE[..len] {
            break Sniffed::Http1;
        }
        if len == PREFACE.len() {
            break Sniffed::Http2;
        }
    };
    Ok((
        verdict,
        Prefixed {
            prefix: buf,
            start: 0,
            end: len,
            io,
        },
    ))
}

/// A stream with bytes already read from it put back in front.
pub struct Prefixed<I> {
    prefix: [u8; PREFACE.len()],
    start: usize,
    end: usize,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.end {
            let n = (this.end - this.start).min(buf.remaining());
            buf.put_slice(&this.prefix[this.start..this.start + n]);
            this.start += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

forward_async_write!(Prefixed);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn sniffed(chunks: &[&[u8]]) -> (Sniffed, Vec<u8>) {
        let mut b = tokio_test_reader(chunks);
        let (verdict, mut rest) = sniff(&mut b).await.expect("sniff");
        let mut all = Vec::new();
        rest.read_to_end(&mut all).await.expect("read");
        (verdict, all)
    }

    /// A reader that returns the chunks one read at a time.
    fn tokio_test_reader(chunks: &[&[u8]]) -> ChunkReader {
        ChunkReader(chunks.iter().map(|c| c.to_vec()).collect())
    }

    struct ChunkReader(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for ChunkReader {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(c) = self.0.pop_front() {
                buf.put_slice(&c);
            }
            Poll::Ready(Ok(()))
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn http1_is_told_by_its_first_byte_and_nothing_is_lost() {
        let (v, all) = run(sniffed(&[b"GET / HTTP/1.1\r\n", b"\r\n"]));
        assert_eq!(v, Sniffed::Http1);
        assert_eq!(all, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn the_preface_is_http2_even_in_pieces() {
        let (v, all) = run(sniffed(&[
            b"PRI * HT",
            b"TP/2.0\r\n\r\nSM\r\n\r\n",
            b"frames",
        ]));
        assert_eq!(v, Sniffed::Http2);
        assert_eq!(&all[..24], PREFACE);
        assert_eq!(&all[24..], b"frames");
    }

    #[test]
    fn a_near_miss_is_http1_and_silence_is_closed() {
        let (v, all) = run(sniffed(&[b"PRI * HTTP/1.1\r\n"]));
        assert_eq!(v, Sniffed::Http1);
        assert_eq!(all, b"PRI * HTTP/1.1\r\n");
        assert_eq!(run(sniffed(&[])).0, Sniffed::Closed);
        assert_eq!(run(sniffed(&[b"PRI"])).0, Sniffed::Closed);
    }
}
