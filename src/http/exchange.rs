//! The state of one request/response exchange, shared by the connection task (Tokio thread)
//! and the app's side (an event loop or a WSGI thread). One mutex guards it, and nobody holds
//! it while calling out, so a waker or finaliser that re-enters can never deadlock.
//!
//! The exchange holds no Python object and knows no interface: an app side that must wait
//! parks an [`AppWaker`] here and is woken once when what it wants may have changed; response
//! heads and body wake-ups come back as [`Handover`]s that the app side delivers to the I/O
//! thread as suits it (batched through the bridge's outbox, or at once).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use super::body::{plain_response, ResponseBody, StreamBody};
use super::file::{FileBody, FileRange};
use super::write_timer::WriteClock;
use crate::bridge::outbox::Deliver;
use crate::error::{Error, Result};

/// Request body buffered ahead of the app before the socket stops being read. Large enough
/// for few wake-ups, small enough for flat memory.
pub const HIGH_WATER: usize = 256 * 1024;
/// Response body queued ahead of the socket before the app must wait, and the level at which
/// it may go on: with room for two typical 1 MiB chunks the socket never idles while the app
/// is woken to produce the next one.
pub const OUT_HIGH_WATER: usize = 1024 * 1024;
pub const OUT_LOW_WATER: usize = 512 * 1024;

/// The next thing the app learns about the request body.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Body {
        data: Bytes,
        more: bool,
    },
    /// The client is gone, or the response is complete and nothing more will be read.
    Disconnect,
}

/// What a parked app side waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Request body data, its end, or a disconnect.
    Body,
    /// Room in the response queue, or a disconnect.
    Room,
}

/// How a waiting app side is woken (shared with the WebSocket session, hence in the bridge).
/// Called at most once per [`Exchange::park`], never under the exchange's lock.
pub use crate::bridge::AppWaker;

/// Work for the I/O thread that the app side produced.
pub enum Handover {
    /// The response head (and a whole body, or the stream that will carry it).
    Respond(
        oneshot::Sender<Response<ResponseBody>>,
        Response<ResponseBody>,
    ),
    /// The response stream has new data.
    Wake(Waker),
}

impl Deliver for Handover {
    fn deliver(self) {
        match self {
            // A dropped receiver means the client left; the exchange already knows.
            Handover::Respond(tx, response) => drop(tx.send(response)),
            Handover::Wake(waker) => waker.wake(),
        }
    }
}

/// What a send step asks of the caller.
pub struct Sent {
    /// To be delivered to the I/O thread.
    pub handover: Option<Handover>,
    /// The response queue is over its high-water mark: wait for [`Want::Room`].
    pub full: bool,
}

/// The request body as the app reads it. The client leaving ends this side for good: from
/// then on the app reads a disconnect, whatever is still buffered, and has nothing to wait
/// for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// More of the body may come.
    Open,
    /// The body has ended and the app has yet to read its end.
    Ended,
    /// The app has read the end (`more: false`).
    EndRead,
    /// The client is gone, or the server answered in the app's place.
    Disconnected,
    /// The body could not be parsed (bad chunk framing): as `Disconnected`, and answered 400
    /// if nothing was sent.
    Malformed,
}

impl Reading {
    fn is_gone(self) -> bool {
        matches!(self, Self::Disconnected | Self::Malformed)
    }
}

/// The response, as far as the app has given it.
enum Writing {
    /// Nothing sent yet: the head goes to hyper through this.
    Pending(oneshot::Sender<Response<ResponseBody>>),
    /// The app's head went out with a stream, and more is to come. Holds hyper's task while
    /// it waits on an empty queue.
    Streaming(Option<Waker>),
    /// The app gave all of its response, or the server's 500 stood in for one that never
    /// came: the request body is no longer wanted.
    Complete,
    /// The app finished before the end of its stream: the queue drains, then the
    /// connection is cut.
    Aborted,
    /// No response of the app's will go out: the server answered in its place, or the client
    /// left before there was one. Only ever with the client gone.
    Closed,
}

/// What a parked app side waits for.
#[derive(Clone, Copy)]
enum Wants {
    Body,
    Room,
    /// An ASGI request parks itself for its receive() and for its send(), which may both be
    /// pending at once: either news wakes it.
    Both,
}

impl Wants {
    /// Whether news of `what` concerns a side waiting for `self` (`Both`: news for anyone).
    fn meets(self, what: Wants) -> bool {
        !matches!(
            (self, what),
            (Wants::Body, Wants::Room) | (Wants::Room, Wants::Body)
        )
    }

    fn and(self, want: Want) -> Wants {
        match (self, want) {
            (Wants::Body, Want::Body) => Wants::Body,
            (Wants::Room, Want::Room) => Wants::Room,
            _ => Wants::Both,
        }
    }
}

impl From<Want> for Wants {
    fn from(want: Want) -> Self {
        match want {
            Want::Body => Wants::Body,
            Want::Room => Wants::Room,
        }
    }
}

/// An app side waiting for news, and what news.
struct Parked {
    waker: Arc<dyn AppWaker>,
    wants: Wants,
}

/// Who must hear that the client is gone, woken after the lock is released.
struct Cut {
    app: Option<Arc<dyn AppWaker>>,
    stream: Option<Waker>,
}

struct Inner {
    // request body, filled by the connection task
    chunks: VecDeque<Bytes>,
    buffered: usize,
    reading: Reading,
    parked: Option<Parked>,
    /// Stops the app's call when the server answers in its place (`--timeout-request`):
    /// cancels an ASGI task. Taken when the app is done, so it never outlives the call.
    canceller: Option<Arc<dyn AppWaker>>,
    // response
    writing: Writing,
    status: Option<StatusCode>,
    /// Response body bytes the app gave, for the access log.
    body_bytes: u64,
    out: VecDeque<Bytes>,
    out_buffered: usize,
    /// Released when the app is done, not when the last reference goes: Python code may keep
    /// a request's objects alive (in reference cycles) long after.
    inflight: Option<InflightToken>,
    /// HTTP/2 with `--timeout-write`: the connection's write clock, told while the app waits
    /// for room (the stream's flow-control window may be what is shut, which no socket
    /// write shows).
    stall_clock: Option<Arc<WriteClock>>,
    /// The clock was told this exchange waits, and not yet that it stopped.
    stall_counted: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.end_stall();
    }
}

impl Inner {
    /// Takes the parked waker if `news` is what it waits for.
    fn waker_for(&mut self, news: Wants) -> Option<Arc<dyn AppWaker>> {
        match &self.parked {
            Some(p) if p.wants.meets(news) => {
                self.end_stall();
                self.parked.take().map(|p| p.waker)
            }
            _ => None,
        }
    }

    fn end_stall(&mut self) {
        if std::mem::take(&mut self.stall_counted) {
            if let Some(clock) = &self.stall_clock {
                clock.stall_ended();
            }
        }
    }

    /// Nobody will read more of the request body.
    fn done_with_body(&self) -> bool {
        self.reading.is_gone() || matches!(self.writing, Writing::Complete)
    }

    fn has_room(&self) -> bool {
        self.reading.is_gone()
            || matches!(self.writing, Writing::Aborted)
            || self.out_buffered <= OUT_LOW_WATER
    }

    fn body_ready(&self) -> bool {
        self.reading.is_gone()
            || !self.chunks.is_empty()
            || self.reading == Reading::Ended
            || matches!(self.writing, Writing::Complete)
    }

    /// The responder, if nothing was sent yet; the response is `Closed` until the caller
    /// says what it became.
    fn take_responder(&mut self) -> Option<oneshot::Sender<Response<ResponseBody>>> {
        match std::mem::replace(&mut self.writing, Writing::Closed) {
            Writing::Pending(responder) => Some(responder),
            other => {
                self.writing = other;
                None
            }
        }
    }

    /// The client is gone (`how`: `Disconnected` or `Malformed`). Returns who must hear of
    /// it, or None if it was gone already.
    fn cut(&mut self, how: Reading) -> Option<Cut> {
        if self.reading.is_gone() {
            // A body found malformed after the client left still earns its 400 (if nothing
            // was sent), as it would have the other way round.
            if how == Reading::Malformed {
                self.reading = how;
            }
            return None;
        }
        self.reading = how;
        let stream = match &mut self.writing {
            Writing::Streaming(waiting) => waiting.take(),
            _ => None,
        };
        Some(Cut {
            app: self.waker_for(Wants::Both),
            stream,
        })
    }
}

pub struct Exchange {
    inner: Mutex<Inner>,
    /// Wakes the request-body pump when the app has room for more or stopped caring.
    pub demand: Notify,
    /// A HEAD response carries the length of the body it does not send.
    head_request: bool,
}

/// hyper writes an app's Content-Length as it is and frames a whole body by its real size: a
/// mismatch would put a malformed response on the wire and desynchronise the connection.
fn check_length(status: StatusCode, headers: &HeaderMap, len: u64) -> Result<()> {
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        return Ok(());
    }
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(());
    };
    let declared = first.as_bytes();
    let valid = !declared.is_empty()
        && declared.iter().all(u8::is_ascii_digit)
        && values.all(|v| v.as_bytes() == declared);
    if !valid {
        return Err(Error::protocol(format!(
            "invalid Content-Length {:?} in the response",
            String::from_utf8_lossy(declared)
        )));
    }
    if status == StatusCode::NOT_MODIFIED {
        return Ok(());
    }
    let matches = std::str::from_utf8(declared)
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
        == Some(len);
    if !matches {
        return Err(Error::protocol(format!(
            "the response body has {len} bytes but its Content-Length says {}",
            String::from_utf8_lossy(declared)
        )));
    }
    Ok(())
}

/// The server cannot answer in the app's place: the app's response has started, or the
/// client left.
#[derive(Debug, thiserror::Error)]
#[error("the response has started or the client left")]
pub struct TooLate;

/// Counts an exchange towards `--limit-concurrency` until the app is done with it.
struct InflightToken(Arc<AtomicUsize>);

impl Drop for InflightToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn wake(waker: Option<Arc<dyn AppWaker>>) {
    if let Some(w) = waker {
        w.wake();
    }
}

impl Exchange {
    pub fn new(
        inflight: &Arc<AtomicUsize>,
        responder: oneshot::Sender<Response<ResponseBody>>,
        head_request: bool,
    ) -> Arc<Self> {
        Self::with_stall_clock(inflight, responder, head_request, None)
    }

    /// An HTTP/2 stream's exchange, telling `stall_clock` while its app waits for room.
    pub fn with_stall_clock(
        inflight: &Arc<AtomicUsize>,
        responder: oneshot::Sender<Response<ResponseBody>>,
        head_request: bool,
        stall_clock: Option<Arc<WriteClock>>,
    ) -> Arc<Self> {
        inflight.fetch_add(1, Ordering::Relaxed);
        let inner = Inner {
            chunks: VecDeque::new(),
            buffered: 0,
            reading: Reading::Open,
            parked: None,
            canceller: None,
            writing: Writing::Pending(responder),
            status: None,
            body_bytes: 0,
            out: VecDeque::new(),
            out_buffered: 0,
            inflight: Some(InflightToken(inflight.clone())),
            stall_clock,
            stall_counted: false,
        };
        Arc::new(Self {
            inner: Mutex::new(inner),
            demand: Notify::new(),
            head_request,
        })
    }

    pub fn is_disconnected(&self) -> bool {
        self.inner.lock().reading.is_gone()
    }

    // ---- Tokio side: request body ----

    /// Returns false once nobody will read more (disconnected or response done).
    pub fn push_body(&self, data: Bytes) -> bool {
        let waker = {
            let mut g = self.inner.lock();
            if g.done_with_body() {
                return false;
            }
            if !data.is_empty() {
                g.buffered += data.len();
                g.chunks.push_back(data);
            }
            g.waker_for(Wants::Body)
        };
        wake(waker);
        true
    }

    pub fn finish_body(&self) {
        let waker = {
            let mut g = self.inner.lock();
            if g.reading == Reading::Open {
                g.reading = Reading::Ended;
            }
            g.waker_for(Wants::Body)
        };
        wake(waker);
    }

    /// None once nobody will read more; otherwise whether the pump should wait first.
    pub fn body_paused(&self) -> Option<bool> {
        let g = self.inner.lock();
        if g.done_with_body() {
            None
        } else {
            Some(g.buffered >= HIGH_WATER)
        }
    }

    /// The request body could not be parsed; the app sees a disconnect.
    pub fn body_failed(&self) {
        let cut = self.inner.lock().cut(Reading::Malformed);
        self.tell_cut(cut);
    }

    /// The client went away (or the connection was aborted).
    pub fn disconnect(&self) {
        let cut = self.inner.lock().cut(Reading::Disconnected);
        self.tell_cut(cut);
    }

    fn tell_cut(&self, cut: Option<Cut>) {
        let Some(cut) = cut else {
            return;
        };
        self.demand.notify_one();
        wake(cut.app);
        if let Some(w) = cut.stream {
            w.wake();
        }
    }

    // ---- Tokio side: response body ----

    pub fn poll_out(&self, cx_waker: &Waker) -> OutPoll {
        let (poll, waker) = {
            let mut guard = self.inner.lock();
            let g = &mut *guard;
            if let Some(chunk) = g.out.pop_front() {
                g.out_buffered -= chunk.len();
                if let Some(clock) = &g.stall_clock {
                    clock.stream_progress();
                }
                let waker = if g.out_buffered <= OUT_LOW_WATER {
                    g.waker_for(Wants::Room)
                } else {
                    None
                };
                (OutPoll::Data(chunk), waker)
            } else {
                let poll = match &mut g.writing {
                    Writing::Streaming(waiting) => {
                        *waiting = Some(cx_waker.clone());
                        OutPoll::Pending
                    }
                    Writing::Complete => OutPoll::End,
                    // No stream exists before the app's head, nor after the server answered
                    // in its place; Aborted is the one way to fail a body.
                    Writing::Aborted | Writing::Pending(_) | Writing::Closed => OutPoll::Aborted,
                };
                (poll, None)
            }
        };
        wake(waker);
        poll
    }

    pub fn out_is_end(&self) -> bool {
        let g = self.inner.lock();
        g.out.is_empty() && matches!(g.writing, Writing::Complete)
    }

    /// The streaming body was dropped by hyper: finished, or the client went away mid-stream.
    pub fn out_dropped(&self) {
        let complete = {
            let g = self.inner.lock();
            matches!(g.writing, Writing::Complete) && g.out.is_empty()
        };
        if !complete {
            self.disconnect();
        }
    }

    // ---- app side: request body ----

    /// The next message about the request body, or None if the app must wait for one.
    pub fn next_received(&self) -> Option<Received> {
        let mut g = self.inner.lock();
        let msg = Self::next_locked(&mut g);
        if matches!(msg, Some(Received::Body { .. })) {
            drop(g);
            self.demand.notify_one();
        }
        msg
    }

    fn next_locked(g: &mut Inner) -> Option<Received> {
        if g.reading.is_gone() {
            return Some(Received::Disconnect);
        }
        if !g.chunks.is_empty() {
            let data = if g.chunks.len() == 1 {
                g.chunks.pop_front().unwrap_or_default()
            } else {
                let mut joined = Vec::with_capacity(g.buffered);
                g.chunks
                    .drain(..)
                    .for_each(|c| joined.extend_from_slice(&c));
                Bytes::from(joined)
            };
            g.buffered = 0;
            let more = g.reading == Reading::Open;
            if !more {
                g.reading = Reading::EndRead;
            }
            return Some(Received::Body { data, more });
        }
        if g.reading == Reading::Ended {
            g.reading = Reading::EndRead;
            return Some(Received::Body {
                data: Bytes::new(),
                more: false,
            });
        }
        if matches!(g.writing, Writing::Complete) {
            return Some(Received::Disconnect);
        }
        None
    }

    /// Parks `waker` until what the app wants may have changed. False if it already has, so
    /// the caller looks again instead of waiting: the check and the park are one step here.
    pub fn park(&self, want: Want, waker: Arc<dyn AppWaker>) -> bool {
        let mut g = self.inner.lock();
        let ready = match want {
            Want::Body => g.body_ready(),
            Want::Room => g.has_room(),
        };
        if ready {
            return false;
        }
        let wants = match g.parked.take() {
            Some(earlier) => earlier.wants.and(want),
            None => want.into(),
        };
        g.parked = Some(Parked { waker, wants });
        let mut drive = None;
        if want == Want::Room && !g.stall_counted {
            if let Some(clock) = &g.stall_clock {
                drive = clock.stall_began();
                g.stall_counted = true;
            }
        }
        drop(g);
        if let Some(w) = drive {
            w.wake();
        }
        if want == Want::Body {
            // The pump may be paused waiting for the app to ask.
            self.demand.notify_one();
        }
        true
    }

    /// Whether a send may go on: there is room, or waiting is pointless (client gone).
    pub fn has_room(&self) -> bool {
        self.inner.lock().has_room()
    }

    // ---- app side: response ----

    /// Starts the response with either the whole body (`more` false) or the first chunk of a
    /// stream.
    pub fn start_response(
        self: &Arc<Self>,
        status: StatusCode,
        headers: HeaderMap,
        first: Bytes,
        more: bool,
    ) -> Result<Sent> {
        if !more && !self.head_request {
            check_length(status, &headers, first.len() as u64)?;
        }
        let (responder, body, full, waker) = {
            let mut g = self.inner.lock();
            if g.reading.is_gone() {
                return Err(Error::Disconnected);
            }
            let Some(responder) = g.take_responder() else {
                return Err(Error::Disconnected);
            };
            g.status = Some(status);
            g.body_bytes = first.len() as u64;
            if more {
                g.writing = Writing::Streaming(None);
                if !first.is_empty() {
                    g.out_buffered += first.len();
                    g.out.push_back(first);
                }
                let full = g.out_buffered > OUT_HIGH_WATER;
                (
                    responder,
                    ResponseBody::Stream(StreamBody::new(self.clone())),
                    full,
                    None,
                )
            } else {
                g.writing = Writing::Complete;
                let waker = g.waker_for(Wants::Body);
                (responder, ResponseBody::full(first), false, waker)
            }
        };
        if !more {
            self.response_done(waker);
        }
        Ok(respond(responder, status, headers, body, full))
    }

    /// Starts and completes the response with a file the server reads itself: the app is
    /// done with it at once. The Content-Length is the file's; one the app declared must
    /// match it (a HEAD response's is taken as it is).
    pub fn start_file(
        self: &Arc<Self>,
        status: StatusCode,
        mut headers: HeaderMap,
        file: FileRange,
    ) -> Result<Sent> {
        if !headers.contains_key(http::header::CONTENT_LENGTH) {
            headers.insert(http::header::CONTENT_LENGTH, file.len.into());
        } else if !self.head_request {
            check_length(status, &headers, file.len)?;
        }
        let (responder, waker) = {
            let mut g = self.inner.lock();
            if g.reading.is_gone() {
                return Err(Error::Disconnected);
            }
            let Some(responder) = g.take_responder() else {
                return Err(Error::Disconnected);
            };
            g.status = Some(status);
            g.body_bytes = file.len;
            g.writing = Writing::Complete;
            (responder, g.waker_for(Wants::Body))
        };
        self.response_done(waker);
        let body = ResponseBody::File(Box::new(FileBody::new(file)));
        Ok(respond(responder, status, headers, body, false))
    }

    /// Queues a chunk on a response that is already streaming.
    pub fn send_chunk(&self, data: Bytes, more: bool) -> Result<Sent> {
        let (stream_waker, full, waker) = {
            let mut guard = self.inner.lock();
            let g = &mut *guard;
            if g.reading.is_gone() {
                return Err(Error::Disconnected);
            }
            let stream_waker = match &mut g.writing {
                Writing::Streaming(waiting) => waiting.take(),
                Writing::Aborted | Writing::Closed => return Err(Error::Disconnected),
                Writing::Pending(_) => {
                    return Err(Error::protocol("a response body chunk before its head"))
                }
                Writing::Complete => {
                    return Err(Error::protocol("a response body chunk after its end"))
                }
            };
            if !data.is_empty() {
                g.body_bytes += data.len() as u64;
                g.out_buffered += data.len();
                g.out.push_back(data);
            }
            let waker = if more {
                None
            } else {
                g.writing = Writing::Complete;
                g.waker_for(Wants::Body)
            };
            (stream_waker, more && g.out_buffered > OUT_HIGH_WATER, waker)
        };
        if !more {
            self.response_done(waker);
        }
        Ok(Sent {
            handover: stream_waker.map(Handover::Wake),
            full,
        })
    }

    /// Once the response is complete the request body is no longer wanted: a reader waiting
    /// for it learns so, and the pump stops.
    fn response_done(&self, waker: Option<Arc<dyn AppWaker>>) {
        wake(waker);
        self.demand.notify_one();
    }

    /// Registers how to stop the app's call should the server answer in its place.
    pub fn set_canceller(&self, canceller: Arc<dyn AppWaker>) {
        let mut g = self.inner.lock();
        if g.inflight.is_some() {
            g.canceller = Some(canceller);
        }
    }

    /// The server answers in the app's place (a request body over `--limit-request-body`, a
    /// handler past `--timeout-request`): the response goes out now, and from here on the
    /// app sees a disconnect. Returns the canceller to run, or Err when the app's own
    /// response has started (or the client left) and nothing can be answered any more.
    pub fn answer_instead(
        &self,
        response: Response<ResponseBody>,
    ) -> std::result::Result<Option<Arc<dyn AppWaker>>, TooLate> {
        let (responder, canceller, cut) = {
            let mut g = self.inner.lock();
            if g.reading.is_gone() {
                return Err(TooLate);
            }
            let Some(r) = g.take_responder() else {
                return Err(TooLate);
            };
            g.status = Some(response.status());
            // Cut in the same step, so that no send of the app's slips in between.
            let cut = g.cut(Reading::Disconnected);
            (r, g.canceller.take(), cut)
        };
        let _ = responder.send(response);
        self.tell_cut(cut);
        Ok(canceller)
    }

    /// The app is finished: answers a 500 if it never started a response, or cuts a response
    /// it left half-sent. Returns what happened, for the log.
    pub fn finish(&self) -> Finished {
        // Taken under the lock, dropped after it: what they hold may call back in. A waker
        // left parked by an app that gave up waiting is dropped, not called.
        let (parked, inflight, canceller) = {
            let mut g = self.inner.lock();
            // An app that gave up waiting for room waits no more.
            g.end_stall();
            (g.parked.take(), g.inflight.take(), g.canceller.take())
        };
        drop((parked, inflight, canceller));
        let (responder, stream_waker, outcome) = {
            let mut guard = self.inner.lock();
            let g = &mut *guard;
            match (&mut g.writing, g.reading.is_gone()) {
                (Writing::Complete, _) => return Finished::Complete,
                (Writing::Pending(_), true) => {
                    // Dropping the responder ends the service future that waits for a head.
                    if let Some(r) = g.take_responder() {
                        if g.reading == Reading::Malformed {
                            g.status = Some(StatusCode::BAD_REQUEST);
                            let mut resp = plain_response(StatusCode::BAD_REQUEST, "Bad Request");
                            resp.headers_mut().insert(
                                http::header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                            let _ = r.send(resp);
                        }
                    }
                    return Finished::Disconnected;
                }
                (_, true) | (Writing::Closed, false) => return Finished::Disconnected,
                (Writing::Pending(_), false) => {
                    g.status = Some(StatusCode::INTERNAL_SERVER_ERROR);
                    let responder = g.take_responder();
                    g.writing = Writing::Complete;
                    (responder, None, Finished::NoResponse)
                }
                (Writing::Streaming(waiting), false) => {
                    let waiting = waiting.take();
                    g.writing = Writing::Aborted;
                    (None, waiting, Finished::Incomplete)
                }
                (Writing::Aborted, false) => (None, None, Finished::Incomplete),
            }
        };
        if let Some(r) = responder {
            let _ = r.send(plain_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            ));
        }
        if let Some(w) = stream_waker {
            w.wake();
        }
        self.demand.notify_one();
        outcome
    }

    pub fn status(&self) -> Option<StatusCode> {
        self.inner.lock().status
    }

    /// The status and the response body bytes the app gave, for the access log.
    pub fn outcome(&self) -> (Option<StatusCode>, u64) {
        let g = self.inner.lock();
        (g.status, g.body_bytes)
    }
}

fn respond(
    responder: oneshot::Sender<Response<ResponseBody>>,
    status: StatusCode,
    headers: HeaderMap,
    body: ResponseBody,
    full: bool,
) -> Sent {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Sent {
        handover: Some(Handover::Respond(responder, response)),
        full,
    }
}

pub enum OutPoll {
    Data(Bytes),
    Pending,
    End,
    Aborted,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    Complete,
    Disconnected,
    NoResponse,
    Incomplete,
}

/// Held by the service future until the response head is handed to hyper: if hyper drops the
/// future first (the client closed the connection), the app learns of it.
pub struct DisconnectGuard(pub Option<Arc<Exchange>>);

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if let Some(ex) = self.0.take() {
            ex.disconnect();
        }
    }
}

#[cfg(test)]
mod tests;
