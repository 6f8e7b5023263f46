//! The h2c sniff on a cleartext connection: the first bytes decide HTTP/1.1 or HTTP/2, and
//! every byte read to decide must come back, in order, before the rest of the stream.
//!
//! Input: the first byte sets how the stream is cut into reads (so the preface can arrive
//! in pieces), the rest is what the client sends.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use _juggler::http::sniff::{sniff, Sniffed, PREFACE};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// A client whose bytes arrive in reads of at most `chunk` bytes.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, sent)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(cut % 32) + 1;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async {
        let (verdict, mut stream) = sniff(Chunked { data: sent, chunk })
            .await
            .expect("reads never fail here");
        let expected = if sent.is_empty() {
            Sniffed::Closed
        } else if sent.starts_with(PREFACE) {
            Sniffed::Http2
        } else if PREFACE.starts_with(sent) {
            // A true prefix of the preface, then silence.
            Sniffed::Closed
        } else {
            Sniffed::Http1
        };
        assert_eq!(verdict, expected);
        let mut back = Vec::new();
        stream
            .read_to_end(&mut back)
            .await
            .expect("reads never fail here");
        assert_eq!(back, sent, "bytes lost or reordered by the sniff");
    });
});
