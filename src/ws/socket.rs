//! The task that serves one upgraded connection: frames from the peer become messages for the
//! app, the app's messages become frames, pings keep the peer honest, and every way the
//! connection can end becomes one close code for both sides.
//!
//! One poll function drives reading, writing and the timers, because they all need the
//! framed stream mutably; it runs until the connection is over and the socket shut down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep, Instant, Sleep};
use yawc::close::CloseCode;
use yawc::{Frame, OpCode, WebSocketError};

use super::close_code::{ABNORMAL, GOING_AWAY, INTERNAL_ERROR, NO_STATUS};
use super::reassembly::{Data, Reassembly, Violation};
use super::session::{Message, Outgoing, Session};
use super::watch::Verdict;
use crate::config::WsConfig;

/// How long a close we sent waits for the peer's before the socket is shut anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The same wait when the server is going away: shutdown must not hang on a silent peer.
const SHUTDOWN_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

type Streaming<S> = yawc::streaming::Streaming<S>;

/// Serves the WebSocket until it is closed; `shutdown` completes when the server stops
/// waiting for open connections (the end of a graceful shutdown).
pub async fn serve<S>(
    ws: Streaming<S>,
    verdict: Arc<Verdict>,
    session: Arc<Session>,
    config: &WsConfig,
    shutdown: impl Future<Output = ()>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut driver = Driver {
        ws,
        verdict,
        session,
        reassembly: Reassembly::new(config.max_size),
        stage: Stage::Open,
        pending: None,
        unflushed: false,
        ping_interval: config.ping_interval,
        ping_timeout: config.ping_timeout,
        next_ping: config.ping_interval.map(|i| Box::pin(sleep(i))),
        pong_due: None,
        deadline: None,
        shutdown: Box::pin(shutdown),
        shutdown_seen: false,
        read_paused: false,
    };
    std::future::poll_fn(|cx| driver.poll(cx)).await;
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Open,
    /// We sent a close; waiting for the peer's.
    Closing,
    /// The peer closed or broke the protocol: our close frame (queued by yawc) goes out.
    Flushing,
    /// We failed the connection (RFC 6455 §7.1.7): our close frame goes out, and then the
    /// socket is shut without waiting for the peer's.
    Failing,
    /// Close frames exchanged: shutting the socket.
    Shutdown,
}

struct Driver<S, F> {
    ws: Streaming<S>,
    /// What the watch on the socket found before yawc saw it (see `watch`).
    verdict: Arc<Verdict>,
    session: Arc<Session>,
    reassembly: Reassembly,
    stage: Stage,
    /// A frame waiting for room in the write buffer.
    pending: Option<Frame>,
    unflushed: bool,
    ping_interval: Option<Duration>,
    ping_timeout: Option<Duration>,
    next_ping: Option<Pin<Box<Sleep>>>,
    pong_due: Option<Pin<Box<Sleep>>>,
    /// Bounds every stage after `Open`.
    deadline: Option<Pin<Box<Sleep>>>,
    shutdown: Pin<Box<F>>,
    shutdown_seen: bool,
    /// Reading stopped because the app is `max_queue` messages behind.
    read_paused: bool,
}

/// Whether the poll loop goes round again.
enum Flow {
    Again,
    Idle,
    Done,
}

impl<S, F> Driver<S, F>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let flows = [
                self.poll_timers(cx),
                self.poll_write(cx),
                self.poll_read(cx),
            ];
            if flows.iter().any(|f| matches!(f, Flow::Done)) {
                return Poll::Ready(());
            }
            if flows.iter().all(|f| matches!(f, Flow::Idle)) {
                return Poll::Pending;
            }
        }
    }

    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Flow {
        if !self.shutdown_seen && self.shutdown.as_mut().poll(cx).is_ready() {
            self.shutdown_seen = true;
            self.session.end(GOING_AWAY, "server shutting down");
            if self.stage == Stage::Open {
                self.send_close(GOING_AWAY, "server shutting down", SHUTDOWN_CLOSE_TIMEOUT);
            } else {
                self.limit(SHUTDOWN_CLOSE_TIMEOUT);
            }
            return Flow::Again;
        }
        if poll_sleep(&mut self.deadline, cx) {
            // The peer never finished the close handshake, or the socket never drained.
            self.session.end(ABNORMAL, "close timed out");
            return Flow::Done;
        }
        if poll_sleep(&mut self.pong_due, cx) {
            if self.read_paused {
                // The pong may be waiting unread behind messages the app has not taken: a
                // slow app is not a dead peer. The clock starts again when reading does.
                self.pong_due = self.ping_timeout.map(|t| Box::pin(sleep(t)));
                return Flow::Again;
            }
            self.session.end(ABNORMAL, "keepalive ping timeout");
            if self.pending.is_none() {
                // Best effort, without waiting: the peer is presumed gone.
                self.pending = Some(Frame::close(
                    CloseCode::from(INTERNAL_ERROR),
                    "keepalive ping timeout",
                ));
                let _ = self.poll_write(cx);
            }
            return Flow::Done;
        }
        if poll_sleep(&mut self.next_ping, cx) {
            if self.stage == Stage::Open {
                // A frame still waiting for room means the peer is slow to read: no ping
                // this time, and no deadline for a pong never asked for.
                if self.pending.is_none() {
                    self.pending = Some(Frame::ping(Bytes::new()));
                    if self.pong_due.is_none() {
                        self.pong_due = self.ping_timeout.map(|t| Box::pin(sleep(t)));
                    }
                }
                self.next_ping = self.ping_interval.map(|i| Box::pin(sleep(i)));
            }
            return Flow::Again;
        }
        Flow::Idle
    }

    /// Moves the app's messages (and our control frames) into the framed stream.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Flow {
        if self.stage == Stage::Shutdown {
            return match Pin::new(&mut self.ws).poll_close(cx) {
                Poll::Pending => Flow::Idle,
                Poll::Ready(_) => Flow::Done,
            };
        }
        let mut progressed = false;
        loop {
            if self.pending.is_none() && self.stage == Stage::Open {
                self.pending = match self.session.take_outgoing(cx) {
                    None => None,
                    Some(Outgoing::Message(Message::Text(b))) => Some(Frame::text(b)),
                    Some(Outgoing::Message(Message::Binary(b))) => Some(Frame::binary(b)),
                    Some(Outgoing::Close { code, reason }) => {
                        self.stage = Stage::Closing;
                        self.limit(CLOSE_TIMEOUT);
                        Some(close_frame(code, &reason))
                    }
                };
            }
            let Some(frame) = self.pending.take() else {
                break;
            };
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Pending => {
                    self.pending = Some(frame);
                    return Flow::Idle;
                }
                Poll::Ready(Err(_)) => return self.lost(),
                Poll::Ready(Ok(())) => {}
            }
            if Pin::new(&mut self.ws).start_send(frame).is_err() {
                return self.lost();
            }
            self.unflushed = true;
            progressed = true;
        }
        if self.unflushed {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => return self.lost(),
                Poll::Pending => {}
            }
        }
        if self.stage == Stage::Failing && !self.unflushed && self.pending.is_none() {
            self.stage = Stage::Shutdown;
            return Flow::Again;
        }
        if progressed {
            Flow::Again
        } else {
            Flow::Idle
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Flow {
        match self.stage {
            Stage::Shutdown | Stage::Failing => return Flow::Idle,
            // Backpressure: the peer waits while the app is `max_queue` messages behind.
            Stage::Open if !self.session.room_for_inbound(cx) => {
                self.read_paused = true;
                return Flow::Idle;
            }
            _ => {}
        }
        self.read_paused = false;
        let frame = match self.ws.poll_next_frame(cx) {
            // The frames before the bad one have been taken (the watch hands yawc nothing
            // from it on): now the connection fails.
            Poll::Pending => match self.verdict.take() {
                Some(violation) => return self.fail(&violation),
                None => return Flow::Idle,
            },
            Poll::Ready(Ok(frame)) => frame,
            Poll::Ready(Err(WebSocketError::ConnectionClosed)) if self.stage == Stage::Flushing => {
                // yawc has written out the close frame it owed the peer.
                self.stage = Stage::Shutdown;
                return Flow::Again;
            }
            Poll::Ready(Err(e)) => return self.on_error(e),
        };
        let (opcode, fin, payload) = frame.into_parts();
        let kind = match opcode {
            OpCode::Text => Data::Text,
            OpCode::Binary => Data::Binary,
            OpCode::Continuation => Data::Continuation,
            OpCode::Pong => {
                self.pong_due = None;
                return Flow::Again;
            }
            // yawc queued the pong; it goes out with the next read or write.
            OpCode::Ping => return Flow::Again,
            OpCode::Close => return self.on_peer_close(&payload),
        };
        if self.stage != Stage::Open {
            // Data after our close frame is read and dropped while we wait for theirs.
            return Flow::Again;
        }
        match self.reassembly.push(kind, fin, payload) {
            Ok(Some(msg)) => self.session.push_inbound(msg),
            Ok(None) => {}
            Err(violation) => return self.fail(&violation),
        }
        Flow::Again
    }

    /// Fails the connection (RFC 6455 §7.1.7) for what the peer sent.
    fn fail(&mut self, violation: &Violation) -> Flow {
        if self.stage != Stage::Open {
            // Our close frame is already on its way, or the peer's is in: the closing
            // handshake goes on as it was.
            return Flow::Again;
        }
        self.session.end(violation.close_code(), violation.reason());
        self.send_close(violation.close_code(), violation.reason(), CLOSE_TIMEOUT);
        self.stage = Stage::Failing;
        Flow::Again
    }

    fn on_peer_close(&mut self, payload: &Bytes) -> Flow {
        let (code, reason) = parse_close(payload);
        self.session.end(code, &reason);
        self.drop_pending_data();
        if self.stage == Stage::Closing {
            // The answer to our close: done, and the echo yawc queued is not sent.
            self.stage = Stage::Shutdown;
        } else {
            self.stage = Stage::Flushing;
            self.limit(CLOSE_TIMEOUT);
        }
        Flow::Again
    }

    /// A protocol error yawc detected; it has queued the close frame that says so.
    fn on_error(&mut self, error: WebSocketError) -> Flow {
        // The code yawc put in the close frame it queued, so that the app and the peer are
        // told the same.
        let code = match &error {
            WebSocketError::ConnectionClosed => return self.lost(),
            // Bad deflate data comes as an I/O error too: InvalidInput from yawc's inflater
            // (InvalidData from other paths). Any other kind is the socket failing, with no
            // close frame to send.
            WebSocketError::IoError(e)
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
                ) =>
            {
                return self.lost()
            }
            WebSocketError::FrameTooLarge => super::close_code::TOO_BIG,
            WebSocketError::InvalidUTF8 => super::close_code::INVALID_PAYLOAD,
            WebSocketError::InvalidOpCode(_) => super::close_code::UNSUPPORTED,
            WebSocketError::ReservedBitsNotZero
            | WebSocketError::ControlFrameFragmented
            | WebSocketError::PingFrameTooLarge
            | WebSocketError::InvalidFragment
            | WebSocketError::InvalidCloseFrame
            | WebSocketError::InvalidCloseCode
            | WebSocketError::FragmentTimeout
            | WebSocketError::InvalidContinuationFrame
            | WebSocketError::CompressionNotSupported => super::close_code::PROTOCOL_ERROR,
            _ => INTERNAL_ERROR,
        };
        self.session.end(code, &error.to_string());
        self.drop_pending_data();
        self.stage = Stage::Flushing;
        self.limit(CLOSE_TIMEOUT);
        Flow::Again
    }

    /// Once a close frame is on its way nothing else may follow it (RFC 6455 §5.5.1): a data
    /// frame still waiting for room is dropped (the app was told the connection ended).
    fn drop_pending_data(&mut self) {
        if self
            .pending
            .as_ref()
            .is_some_and(|f| f.opcode() != OpCode::Close)
        {
            self.pending = None;
        }
    }

    /// The socket failed or closed without a close frame.
    fn lost(&mut self) -> Flow {
        self.session.end(ABNORMAL, "");
        Flow::Done
    }

    fn send_close(&mut self, code: u16, reason: &str, within: Duration) {
        // A frame still waiting for room is dropped: the connection is ending, and the app
        // has been told (the session ended first).
        self.stage = Stage::Closing;
        self.limit(within);
        self.pending = Some(close_frame(code, reason));
    }

    /// Sets (or shortens) the deadline for the connection to be over.
    fn limit(&mut self, within: Duration) {
        let at = Instant::now() + within;
        match &mut self.deadline {
            Some(d) if d.deadline() <= at => {}
            _ => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }
}

/// Whether an optional timer fired (it is then cleared).
fn poll_sleep(timer: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> bool {
    let fired = timer
        .as_mut()
        .is_some_and(|t| t.as_mut().poll(cx).is_ready());
    if fired {
        *timer = None;
    }
    fired
}

/// A close frame; the reason is cut to fit the 125 bytes of a control frame.
fn close_frame(code: u16, reason: &str) -> Frame {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Frame::close(CloseCode::from(code), &reason.as_bytes()[..end])
}

/// The code and reason of a close frame the peer sent (yawc has checked both).
fn parse_close(payload: &Bytes) -> (u16, String) {
    if payload.len() < 2 {
        return (NO_STATUS, String::new());
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
    (code, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let frame = close_frame(1000, &long);
        let payload = frame.payload();
        assert!(payload.len() <= 125);
        assert!(
            std::str::from_utf8(&payload[2..]).is_ok(),
            "cut on a char boundary"
        );
        assert_eq!(&payload[..2], &1000u16.to_be_bytes());
    }

    #[test]
    fn parses_peer_close_frames() {
        assert_eq!(parse_close(&Bytes::new()), (1005, String::new()));
        let mut p = 4001u16.to_be_bytes().to_vec();
        p.extend_from_slice(b"bye");
        assert_eq!(parse_close(&Bytes::from(p)), (4001, "bye".into()));
    }
}
