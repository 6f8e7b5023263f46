use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::watched_io::Watched;

const LIMIT: Duration = Duration::from_secs(2);

/// A server side whose client holds at most 16 bytes unread, and the client side.
fn pipe(
    watch: &WriteWatch,
) -> (
    Watched<tokio::io::DuplexStream, Arc<WriteClock>>,
    tokio::io::DuplexStream,
) {
    let (server, client) = tokio::io::duplex(16);
    (Watched::new(server, watch.clock.clone()), client)
}

#[tokio::test(start_paused = true)]
async fn a_client_that_takes_nothing_is_cut_off_after_the_limit() {
    let watch = WriteWatch::new(LIMIT);
    let (mut server, _client) = pipe(&watch);
    let t0 = Instant::now();
    let sent = tokio::time::timeout(LIMIT * 10, within(&watch, server.write_all(&[0; 1024])))
        .await
        .expect("cut off in time");
    assert_eq!(sent.err(), Some(WriteTimedOut));
    assert_eq!(
        Instant::now() - t0,
        LIMIT,
        "counted from the first blocked write"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_client_that_keeps_taking_bytes_is_not_cut_off() {
    let watch = WriteWatch::new(LIMIT);
    let (mut server, mut client) = pipe(&watch);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut byte = [0; 1];
        // One byte a second: far slower than the writer, never still for the limit.
        while client.read_exact(&mut byte).await.is_ok() {
            got.push(byte[0]);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        got.len()
    });
    let sent = within(&watch, async {
        server.write_all(&[7; 64]).await?;
        server.shutdown().await
    })
    .await;
    assert!(matches!(sent, Ok(Ok(()))), "the writer finished");
    drop(server);
    assert_eq!(reader.await.expect("reader"), 64);
}

#[tokio::test(start_paused = true)]
async fn idle_time_after_a_block_does_not_count() {
    let watch = WriteWatch::new(LIMIT);
    let (mut server, mut client) = pipe(&watch);
    // Blocked once, then drained: the block is over.
    let mut buf = [0; 16];
    let write = within(&watch, async {
        server.write_all(&[1; 32]).await?;
        server.flush().await
    });
    let read = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        client.read_exact(&mut buf).await?;
        client.read_exact(&mut buf).await
    };
    let (sent, read) = tokio::join!(write, read);
    assert!(matches!(sent, Ok(Ok(()))));
    assert!(read.is_ok());
    // Nothing is being written now: a connection may idle as long as it likes.
    let idle = tokio::time::timeout(LIMIT * 10, within(&watch, std::future::pending::<()>())).await;
    assert!(idle.is_err(), "an idle connection is not timed");
}
