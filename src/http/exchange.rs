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

#[derive(Default)]
struct Inner {
    // request body, filled by the connection task
    chunks: VecDeque<Bytes>,
    buffered: usize,
    body_complete: bool,
    last_body_delivered: bool,
    // lifecycle
    disconnected: bool,
    /// The request body was malformed (bad chunk framing): answer 400 if nothing was sent.
    body_error: bool,
    waker: Option<Arc<dyn AppWaker>>,
    /// Stops the app's call when the server answers in its place (`--timeout-request`):
    /// cancels an ASGI task. Taken when the app is done, so it never outlives the call.
    canceller: Option<Arc<dyn AppWaker>>,
    want_body: bool,
    want_room: bool,
    // response
    responder: Option<oneshot::Sender<Response<ResponseBody>>>,
    status: Option<StatusCode>,
    /// Response body bytes the app gave, for the access log.
    body_bytes: u64,
    response_complete: bool,
    out: VecDeque<Bytes>,
    out_buffered: usize,
    out_aborted: bool,
    body_waker: Option<Waker>,
    /// Released when the app is done, not when the last reference goes: Python code may keep
    /// a request's objects alive (in reference cycles) long after.
    inflight: Option<InflightToken>,
}

impl Inner {
    /// Takes the parked waker if the change at hand is one it waits for.
    fn waker_for(&mut self, body: bool, room: bool) -> Option<Arc<dyn AppWaker>> {
        if (body && self.want_body) || (room && self.want_room) {
            self.want_body = false;
            self.want_room = false;
            self.waker.take()
        } else {
            None
        }
    }

    fn has_room(&self) -> bool {
        self.disconnected || self.out_aborted || self.out_buffered <= OUT_LOW_WATER
    }

    fn body_ready(&self) -> bool {
        self.disconnected
            || !self.chunks.is_empty()
            || (self.body_complete && !self.last_body_delivered)
            || self.response_complete
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
        inflight.fetch_add(1, Ordering::Relaxed);
        let inner = Inner {
            responder: Some(responder),
            inflight: Some(InflightToken(inflight.clone())),
            ..Default::default()
        };
        Arc::new(Self {
            inner: Mutex::new(inner),
            demand: Notify::new(),
            head_request,
        })
    }

    pub fn is_disconnected(&self) -> bool {
        self.inner.lock().disconnected
    }

    // ---- Tokio side: request body ----

    /// Returns false once nobody will read more (disconnected or response done).
    pub fn push_body(&self, data: Bytes) -> bool {
        let waker = {
            let mut g = self.inner.lock();
            if g.disconnected || g.response_complete {
                return false;
            }
            if !data.is_empty() {
                g.buffered += data.len();
                g.chunks.push_back(data);
            }
            g.waker_for(true, false)
        };
        wake(waker);
        true
    }

    pub fn finish_body(&self) {
        let waker = {
            let mut g = self.inner.lock();
            g.body_complete = true;
            g.waker_for(true, false)
        };
        wake(waker);
    }

    /// None once nobody will read more; otherwise whether the pump should wait first.
    pub fn body_paused(&self) -> Option<bool> {
        let g = self.inner.lock();
        if g.disconnected || g.response_complete {
            None
        } else {
            Some(g.buffered >= HIGH_WATER)
        }
    }

    /// The request body could not be parsed; the app sees a disconnect.
    pub fn body_failed(&self) {
        self.inner.lock().body_error = true;
        self.disconnect();
    }

    /// The client went away (or the connection was aborted).
    pub fn disconnect(&self) {
        let (waker, body_waker) = {
            let mut g = self.inner.lock();
            if g.disconnected {
                return;
            }
            g.disconnected = true;
            (g.waker_for(true, true), g.body_waker.take())
        };
        self.demand.notify_one();
        wake(waker);
        if let Some(w) = body_waker {
            w.wake();
        }
    }

    // ---- Tokio side: response body ----

    pub fn poll_out(&self, cx_waker: &Waker) -> OutPoll {
        let (poll, waker) = {
            let mut g = self.inner.lock();
            if let Some(chunk) = g.out.pop_front() {
                g.out_buffered -= chunk.len();
                let waker = if g.out_buffered <= OUT_LOW_WATER {
                    g.waker_for(false, true)
                } else {
                    None
                };
                (OutPoll::Data(chunk), waker)
            } else if g.out_aborted {
                (OutPoll::Aborted, None)
            } else if g.response_complete {
                (OutPoll::End, None)
            } else {
                g.body_waker = Some(cx_waker.clone());
                (OutPoll::Pending, None)
            }
        };
        wake(waker);
        poll
    }

    pub fn out_is_end(&self) -> bool {
        let g = self.inner.lock();
        g.out.is_empty() && g.response_complete && !g.out_aborted
    }

    /// The streaming body was dropped by hyper: finished, or the client went away mid-stream.
    pub fn out_dropped(&self) {
        let complete = {
            let g = self.inner.lock();
            g.response_complete && g.out.is_empty()
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
        if g.disconnected {
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
            let more = !g.body_complete;
            g.last_body_delivered = !more;
            return Some(Received::Body { data, more });
        }
        if g.body_complete && !g.last_body_delivered {
            g.last_body_delivered = true;
            return Some(Received::Body {
                data: Bytes::new(),
                more: false,
            });
        }
        if g.response_complete {
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
        match want {
            Want::Body => g.want_body = true,
            Want::Room => g.want_room = true,
        }
        g.waker = Some(waker);
        drop(g);
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
            if g.disconnected {
                return Err(Error::Disconnected);
            }
            let Some(responder) = g.responder.take() else {
                return Err(Error::Disconnected);
            };
            g.status = Some(status);
            g.body_bytes = first.len() as u64;
            if more {
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
                g.response_complete = true;
                let waker = g.waker_for(true, false);
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
            if g.disconnected {
                return Err(Error::Disconnected);
            }
            let Some(responder) = g.responder.take() else {
                return Err(Error::Disconnected);
            };
            g.status = Some(status);
            g.body_bytes = file.len;
            g.response_complete = true;
            (responder, g.waker_for(true, false))
        };
        self.response_done(waker);
        let body = ResponseBody::File(Box::new(FileBody::new(file)));
        Ok(respond(responder, status, headers, body, false))
    }

    /// Queues a chunk on a response that is already streaming.
    pub fn send_chunk(&self, data: Bytes, more: bool) -> Result<Sent> {
        let (body_waker, full, waker) = {
            let mut g = self.inner.lock();
            if g.disconnected || g.out_aborted {
                return Err(Error::Disconnected);
            }
            if !data.is_empty() {
                g.body_bytes += data.len() as u64;
                g.out_buffered += data.len();
                g.out.push_back(data);
            }
            let waker = if more {
                None
            } else {
                g.response_complete = true;
                g.waker_for(true, false)
            };
            (
                g.body_waker.take(),
                more && g.out_buffered > OUT_HIGH_WATER,
                waker,
            )
        };
        if !more {
            self.response_done(waker);
        }
        Ok(Sent {
            handover: body_waker.map(Handover::Wake),
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
        let (responder, canceller) = {
            let mut g = self.inner.lock();
            if g.disconnected {
                return Err(TooLate);
            }
            let Some(r) = g.responder.take() else {
                return Err(TooLate);
            };
            g.status = Some(response.status());
            (r, g.canceller.take())
        };
        let _ = responder.send(response);
        self.disconnect();
        Ok(canceller)
    }

    /// The app is finished: answers a 500 if it never started a response, or cuts a response
    /// it left half-sent. Returns what happened, for the log.
    pub fn finish(&self) -> Finished {
        // Taken under the lock, dropped after it: what they hold may call back in. A waker
        // left parked by an app that gave up waiting is dropped, not called.
        let (parked, inflight, canceller) = {
            let mut g = self.inner.lock();
            (g.waker.take(), g.inflight.take(), g.canceller.take())
        };
        drop((parked, inflight, canceller));
        let (responder, body_waker, outcome) = {
            let mut g = self.inner.lock();
            if g.response_complete {
                return Finished::Complete;
            }
            if g.disconnected {
                // Dropping the responder ends the service future that waits for a head.
                if let Some(r) = g.responder.take() {
                    if g.body_error {
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
            match g.responder.take() {
                Some(r) => {
                    g.status = Some(StatusCode::INTERNAL_SERVER_ERROR);
                    g.response_complete = true;
                    (Some(r), None, Finished::NoResponse)
                }
                None => {
                    g.out_aborted = true;
                    (None, g.body_waker.take(), Finished::Incomplete)
                }
            }
        };
        if let Some(r) = responder {
            let _ = r.send(plain_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            ));
        }
        if let Some(w) = body_waker {
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
