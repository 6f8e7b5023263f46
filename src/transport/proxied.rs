//! Reading a PROXY protocol header (`--proxy-protocol`) off a new connection, before TLS and
//! HTTP see it: a trusted peer's header gives the connection its client; from any other peer
//! a header is refused, since believing it would let anyone claim any address.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::listener::ConnInfo;
use super::proxy_header::{self, HeaderError, Parsed, Source, V2_MAX_PAYLOAD};
use crate::trusted::TrustedPeers;

/// Read at a time while looking for the header: a version 1 line or a version 2 header with
/// its addresses fits; what the client sent after the header is kept for the protocol.
const READ_CHUNK: usize = 512;
/// Never more than a whole version 2 header is held.
const MAX_HELD: usize = 16 + V2_MAX_PAYLOAD;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("connection closed before its PROXY header ended")]
    Closed,
    #[error("PROXY header from {0}, which is not in --forwarded-allow-ips")]
    Untrusted(String),
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Reads a PROXY header, if the connection opens with one. Returns who the header says the
/// client is (`None` when there was no header) and the stream with every byte read past the
/// header put back.
pub async fn read_header<I: AsyncRead + Unpin>(
    mut io: I,
    info: &ConnInfo,
    trusted: &TrustedPeers,
) -> Result<(Option<Source>, Replayed<I>), ProxyError> {
    let mut held = Vec::with_capacity(READ_CHUNK);
    loop {
        let start = held.len();
        held.resize((start + READ_CHUNK).min(MAX_HELD), 0);
        let n = io.read(&mut held[start..]).await?;
        held.truncate(start + n);
        if n == 0 {
            return Err(ProxyError::Closed);
        }
        match proxy_header::parse(&held)? {
            Parsed::Incomplete => continue,
            Parsed::NotHeader => return Ok((None, Replayed::new(held, 0, io))),
            Parsed::Header { len, source } => {
                let peer = info.client.as_ref().map(|(ip, _)| ip.as_str());
                if !trusted.trusts_peer(peer) {
                    return Err(ProxyError::Untrusted(
                        peer.unwrap_or("a UNIX socket peer").to_owned(),
                    ));
                }
                return Ok((Some(source), Replayed::new(held, len, io)));
            }
        }
    }
}

/// The connection's details with the client the proxy named.
pub fn relayed(info: &ConnInfo, source: Source) -> Arc<ConnInfo> {
    let client = match source {
        Source::Tcp(addr) => Some((addr.ip().to_canonical().to_string(), addr.port())),
        Source::Unix => None,
        Source::Local => info.client.clone(),
    };
    Arc::new(info.with_client(client))
}

/// A stream with the bytes read past its PROXY header put back in front.
pub struct Replayed<I> {
    held: Vec<u8>,
    start: usize,
    io: I,
}

impl<I> Replayed<I> {
    fn new(mut held: Vec<u8>, start: usize, io: I) -> Self {
        if start == held.len() {
            // Nothing to give back: the buffer is not kept for the connection's life.
            held = Vec::new();
            return Self { held, start: 0, io };
        }
        Self { held, start, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Replayed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.held.len() {
            let n = (this.held.len() - this.start).min(buf.remaining());
            buf.put_slice(&this.held[this.start..this.start + n]);
            this.start += n;
            if this.start == this.held.len() {
                this.held = Vec::new();
                this.start = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

forward_async_write!(Replayed);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::listener::ServerAddr;
    use tokio::io::AsyncWriteExt;

    fn info(peer: &str) -> ConnInfo {
        ConnInfo::new(
            Some((peer.to_owned(), 5000)),
            ServerAddr::Tcp("127.0.0.1".into(), 8000),
        )
    }

    fn trusting(list: &str) -> TrustedPeers {
        TrustedPeers::parse(&[list]).expect("test value")
    }

    async fn arrive(
        sent: &[&[u8]],
        peer: &str,
        trusted: &str,
    ) -> Result<(Option<Source>, Vec<u8>), ProxyError> {
        let (mut client, server) = tokio::io::duplex(64);
        let sent: Vec<Vec<u8>> = sent.iter().map(|s| s.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for piece in sent {
                client.write_all(&piece).await.expect("test value");
                tokio::task::yield_now().await;
            }
        });
        let info = info(peer);
        let result = read_header(server, &info, &trusting(trusted)).await;
        writer.await.expect("test value");
        let (source, mut rest) = result?;
        let mut after = Vec::new();
        rest.read_to_end(&mut after).await.expect("test value");
        Ok((source, after))
    }

    #[tokio::test]
    async fn a_trusted_header_in_pieces_names_the_client_and_the_request_follows() {
        let (source, after) = arrive(
            &[
                b"PROXY TCP4 192.0.2.7 ",
                b"10.0.0.1 4",
                b"1000 80\r\nGET / HT",
                b"TP/1.1\r\n\r\n",
            ],
            "127.0.0.1",
            "127.0.0.1",
        )
        .await
        .expect("test value");
        assert_eq!(
            source,
            Some(Source::Tcp("192.0.2.7:41000".parse().expect("test value")))
        );
        assert_eq!(after, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn no_header_gives_back_every_byte() {
        let (source, after) = arrive(&[b"GET / HTTP/1.1\r\n\r\n"], "192.0.2.9", "127.0.0.1")
            .await
            .expect("test value");
        assert_eq!(source, None);
        assert_eq!(after, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn a_header_from_an_untrusted_peer_is_refused() {
        let err = arrive(
            &[b"PROXY TCP4 1.2.3.4 10.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n"],
            "192.0.2.9",
            "127.0.0.1",
        )
        .await
        .expect_err("refused");
        assert!(
            matches!(err, ProxyError::Untrusted(ref p) if p == "192.0.2.9"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn malformed_and_cut_headers_are_errors() {
        let err = arrive(&[b"PROXY TCP9 x\r\n"], "127.0.0.1", "127.0.0.1")
            .await
            .expect_err("refused");
        assert!(matches!(err, ProxyError::Header(_)), "{err}");
        let err = arrive(&[b"PROXY TCP4 1.2"], "127.0.0.1", "127.0.0.1")
            .await
            .expect_err("refused");
        assert!(matches!(err, ProxyError::Closed), "{err}");
    }

    #[test]
    fn the_relayed_client_replaces_the_peer_unless_local() {
        let peer = info("127.0.0.1");
        let tcp = relayed(
            &peer,
            Source::Tcp("[::ffff:192.0.2.1]:9".parse().expect("test value")),
        );
        assert_eq!(tcp.client, Some(("192.0.2.1".into(), 9)));
        assert_eq!(relayed(&peer, Source::Unix).client, None);
        assert_eq!(
            relayed(&peer, Source::Local).client,
            Some(("127.0.0.1".into(), 5000))
        );
    }
}
