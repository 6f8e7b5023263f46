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

/// Polls an HTTP/2 deadline until it expires, or gives up after `within`; the time waited.
async fn h2_expiry(watch: &WriteWatch, within: Duration) -> Option<Duration> {
    let mut deadline = watch.deadline_with_streams();
    let t0 = Instant::now();
    tokio::time::timeout(within, std::future::poll_fn(|cx| deadline.poll_expired(cx)))
        .await
        .ok()
        .map(|()| Instant::now() - t0)
}

#[tokio::test(start_paused = true)]
async fn an_http2_stream_waiting_with_nothing_written_times_out() {
    let watch = WriteWatch::new(LIMIT);
    let clock = watch.clock.clone();
    // The stream starts to wait after the deadline was first polled: it must wake it.
    let stall = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let drive = clock.stall_began();
        drive
            .expect("the first wait hands back the task to wake")
            .wake();
    });
    let waited = h2_expiry(&watch, LIMIT * 10).await;
    stall.await.expect("stall");
    assert_eq!(waited, Some(Duration::from_secs(1) + LIMIT));
}

#[tokio::test(start_paused = true)]
async fn data_taken_on_any_stream_is_progress_for_a_waiting_stream() {
    let watch = WriteWatch::new(LIMIT);
    let _ = watch.clock.stall_began();
    let clock = watch.clock.clone();
    // Another stream's body keeps being taken, each chunk within the limit of the last.
    let other = tokio::spawn(async move {
        for _ in 0..5 {
            tokio::time::sleep(LIMIT / 2).await;
            clock.stream_progress();
        }
    });
    let waited = h2_expiry(&watch, LIMIT * 10).await;
    other.await.expect("other stream");
    assert_eq!(
        waited,
        Some(LIMIT / 2 * 5 + LIMIT),
        "counted from the last chunk"
    );
}

#[tokio::test(start_paused = true)]
async fn control_frames_written_are_no_progress_for_a_waiting_stream() {
    let watch = WriteWatch::new(LIMIT);
    let _ = watch.clock.stall_began();
    let clock = watch.clock.clone();
    // PINGs and their like go out to a client that takes no data: bytes on the socket.
    let pinger = tokio::spawn(async move {
        loop {
            tokio::time::sleep(LIMIT / 4).await;
            clock.written(17);
            clock.flushed();
        }
    });
    let waited = h2_expiry(&watch, LIMIT * 10).await;
    pinger.abort();
    assert_eq!(waited, Some(LIMIT));
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_ends_stops_the_clock() {
    let watch = WriteWatch::new(LIMIT);
    let _ = watch.clock.stall_began();
    let _ = watch.clock.stall_began();
    watch.clock.stall_ended();
    assert!(h2_expiry(&watch, LIMIT / 2).await.is_none());
    watch.clock.stall_ended();
    assert!(
        h2_expiry(&watch, LIMIT * 10).await.is_none(),
        "no stream waits: an idle connection is not timed"
    );
}
