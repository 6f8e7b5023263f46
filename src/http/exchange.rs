//! The state of one request/response exchange, shared by the connection task (Tokio thread)
//! and the app's `receive`/`send` (event loop thread). One mutex guards it; nobody holds it
//! while calling into Python, so a finaliser that re-enters can never deadlock.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use parking_lot::Mutex;
use pyo3::PyObject;
use tokio::sync::{oneshot, Notify};

use super::body::ResponseBody;
use crate::server::shared::{Deferred, Event, Shared};

/// Request body buffered ahead of the app before the socket stops being read. Large enough
/// for few wake-ups, small enough for flat memory.
pub const HIGH_WATER: usize = 256 * 1024;
/// Response body queued ahead of the socket before `send()` waits, and the level at which it
/// resumes: with room for two typical 1 MiB chunks the socket never idles while the app is
/// woken to produce the next one.
const OUT_HIGH_WATER: usize = 1024 * 1024;
const OUT_LOW_WATER: usize = 512 * 1024;

/// What `receive()` hands to the app, decided under the lock, turned into a dict outside it.
pub enum Received {
    Body { data: Bytes, more: bool },
    Disconnect,
}

#[derive(Default)]
pub struct ExchangeInner {
    // request body, filled by the connection task
    chunks: VecDeque<Bytes>,
    buffered: usize,
    body_complete: bool,
    last_body_delivered: bool,
    receive_waiters: Vec<PyObject>,
    // lifecycle
    disconnected: bool,
    /// The request body was malformed (bad chunk framing): answer 400 if nothing was sent.
    body_error: bool,
    wake_posted: bool,
    // response
    responder: Option<oneshot::Sender<Response<ResponseBody>>>,
    status: Option<StatusCode>,
    response_complete: bool,
    out: VecDeque<Bytes>,
    out_buffered: usize,
    out_aborted: bool,
    body_waker: Option<Waker>,
    send_waiter: Option<PyObject>,
}

pub struct Exchange {
    inner: Mutex<ExchangeInner>,
    /// Wakes the request-body pump when the app has room for more.
    pub demand: Notify,
    shared: Arc<Shared>,
    _inflight: InflightToken,
}

/// Counts an exchange towards `--limit-concurrency` for as long as either side holds it.
pub struct InflightToken(Arc<Shared>);

impl InflightToken {
    pub fn new(shared: &Arc<Shared>) -> Self {
        shared.inflight.fetch_add(1, Ordering::Relaxed);
        Self(shared.clone())
    }
}

impl Drop for InflightToken {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct SendOutcome {
    /// The queue is over the high-water mark: the caller waits for room.
    pub full: bool,
    /// Something was handed to [`Shared::defer`] into an empty outbox: schedule a flush.
    pub flush: bool,
}

impl Exchange {
    pub fn new(
        shared: Arc<Shared>,
        responder: oneshot::Sender<Response<ResponseBody>>,
    ) -> Arc<Self> {
        let inner = ExchangeInner {
            responder: Some(responder),
            ..Default::default()
        };
        Arc::new(Self {
            inner: Mutex::new(inner),
            demand: Notify::new(),
            _inflight: InflightToken::new(&shared),
            shared,
        })
    }

    pub fn is_disconnected(&self) -> bool {
        self.inner.lock().disconnected
    }

    /// Posts one wake-up to the loop if the app is waiting on something.
    fn wake_app(self: &Arc<Self>, g: &mut ExchangeInner) {
        if !g.wake_posted && (!g.receive_waiters.is_empty() || g.send_waiter.is_some()) {
            g.wake_posted = true;
            self.shared.post(Event::Wake(self.clone()));
        }
    }

    // ---- Tokio side: request body ----

    /// Returns false once nobody will read more (disconnected or response done).
    pub fn push_body(self: &Arc<Self>, data: Bytes) -> bool {
        let mut g = self.inner.lock();
        if g.disconnected || g.response_complete {
            return false;
        }
        if !data.is_empty() {
            g.buffered += data.len();
            g.chunks.push_back(data);
        }
        self.wake_app(&mut g);
        true
    }

    pub fn finish_body(self: &Arc<Self>) {
        let mut g = self.inner.lock();
        g.body_complete = true;
        self.wake_app(&mut g);
    }

    /// True while the pump should wait before reading more.
    pub fn body_paused(&self) -> Option<bool> {
        let g = self.inner.lock();
        if g.disconnected || g.response_complete {
            None
        } else {
            Some(g.buffered >= HIGH_WATER)
        }
    }

    /// The request body could not be parsed; the app sees a disconnect.
    pub fn body_failed(self: &Arc<Self>) {
        self.inner.lock().body_error = true;
        self.disconnect();
    }

    /// The client went away (or the connection was aborted).
    pub fn disconnect(self: &Arc<Self>) {
        let waker = {
            let mut g = self.inner.lock();
            if g.disconnected {
                return;
            }
            g.disconnected = true;
            self.wake_app(&mut g);
            g.body_waker.take()
        };
        self.demand.notify_one();
        if let Some(w) = waker {
            w.wake();
        }
    }

    // ---- Tokio side: response body ----

    pub fn poll_out(self: &Arc<Self>, waker: &Waker) -> OutPoll {
        let mut g = self.inner.lock();
        if let Some(chunk) = g.out.pop_front() {
            g.out_buffered -= chunk.len();
            if g.out_buffered <= OUT_LOW_WATER {
                self.wake_app(&mut g);
            }
            return OutPoll::Data(chunk);
        }
        if g.out_aborted {
            return OutPoll::Aborted;
        }
        if g.response_complete {
            return OutPoll::End;
        }
        g.body_waker = Some(waker.clone());
        OutPoll::Pending
    }

    pub fn out_is_end(&self) -> bool {
        let g = self.inner.lock();
        g.out.is_empty() && g.response_complete && !g.out_aborted
    }

    /// The streaming body was dropped by hyper: finished, or the client went away mid-stream.
    pub fn out_dropped(self: &Arc<Self>) {
        let complete = {
            let g = self.inner.lock();
            g.response_complete && g.out.is_empty()
        };
        if !complete {
            self.disconnect();
        }
    }

    // ---- loop side: receive ----

    /// The next message for `receive()`, or None if the app must wait.
    pub fn next_received(&self) -> Option<Received> {
        let mut g = self.inner.lock();
        let msg = Self::next_locked(&mut g);
        if matches!(msg, Some(Received::Body { .. })) {
            drop(g);
            self.demand.notify_one();
        }
        msg
    }

    fn next_locked(g: &mut ExchangeInner) -> Option<Received> {
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

    pub fn add_receive_waiter(&self, fut: PyObject) -> Result<(), PyObject> {
        let mut g = self.inner.lock();
        // Something may have arrived between the first check and now.
        if g.disconnected
            || !g.chunks.is_empty()
            || g.body_complete && !g.last_body_delivered
            || g.response_complete
        {
            return Err(fut);
        }
        g.receive_waiters.push(fut);
        drop(g);
        self.demand.notify_one();
        Ok(())
    }

    /// Called on the loop thread for an `Event::Wake`: hands back the waiters to resolve.
    pub fn take_waiters(&self) -> (Vec<PyObject>, Option<PyObject>) {
        let mut g = self.inner.lock();
        g.wake_posted = false;
        let receivers = std::mem::take(&mut g.receive_waiters);
        let sender = if g.disconnected || g.out_buffered <= OUT_LOW_WATER || g.out_aborted {
            g.send_waiter.take()
        } else {
            None
        };
        (receivers, sender)
    }

    // ---- loop side: send ----

    /// Sends the head with either the whole body or the first chunk of a stream.
    pub fn start_response(
        self: &Arc<Self>,
        status: StatusCode,
        headers: HeaderMap,
        first: Bytes,
        more: bool,
    ) -> crate::error::Result<SendOutcome> {
        let (responder, body) = {
            let mut g = self.inner.lock();
            if g.disconnected {
                return Err(crate::error::Error::Disconnected);
            }
            let Some(responder) = g.responder.take() else {
                return Err(crate::error::Error::Disconnected);
            };
            g.status = Some(status);
            if more {
                if !first.is_empty() {
                    g.out_buffered += first.len();
                    g.out.push_back(first);
                }
                (
                    responder,
                    ResponseBody::Stream(super::body::StreamBody::new(self.clone())),
                )
            } else {
                g.response_complete = true;
                (responder, ResponseBody::full(first))
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        let flush = self.shared.defer(Deferred::Respond(responder, response));
        self.after_response_step();
        let full = more && self.inner.lock().out_buffered > OUT_HIGH_WATER;
        Ok(SendOutcome { full, flush })
    }

    /// Queues a chunk on a response that is already streaming.
    pub fn send_chunk(
        self: &Arc<Self>,
        data: Bytes,
        more: bool,
    ) -> crate::error::Result<SendOutcome> {
        let (waker, full) = {
            let mut g = self.inner.lock();
            if g.disconnected {
                return Err(crate::error::Error::Disconnected);
            }
            if !data.is_empty() {
                g.out_buffered += data.len();
                g.out.push_back(data);
            }
            if !more {
                g.response_complete = true;
            }
            (g.body_waker.take(), more && g.out_buffered > OUT_HIGH_WATER)
        };
        let flush = waker.is_some_and(|w| self.shared.defer(Deferred::Wake(w)));
        if !more {
            self.after_response_step();
        }
        Ok(SendOutcome { full, flush })
    }

    pub fn set_send_waiter(&self, fut: PyObject) -> Result<(), PyObject> {
        let mut g = self.inner.lock();
        if g.disconnected || g.out_buffered <= OUT_LOW_WATER {
            return Err(fut);
        }
        g.send_waiter = Some(fut);
        Ok(())
    }

    /// Once the response is complete, the request body is no longer wanted.
    fn after_response_step(self: &Arc<Self>) {
        let mut g = self.inner.lock();
        if g.response_complete {
            self.wake_app(&mut g);
            drop(g);
            self.demand.notify_one();
        }
    }

    /// The app is finished: answers a 500 if it never started a response, or cuts a
    /// response it left half-sent. Returns what happened, for the log.
    pub fn finish(self: &Arc<Self>) -> Finished {
        let (responder, waker, outcome) = {
            let mut g = self.inner.lock();
            if g.response_complete {
                return Finished::Complete;
            }
            if g.disconnected {
                // Dropping the responder ends the service future that waits for a head.
                if let Some(r) = g.responder.take() {
                    if g.body_error {
                        g.status = Some(StatusCode::BAD_REQUEST);
                        let mut resp =
                            super::body::plain_response(StatusCode::BAD_REQUEST, "Bad Request");
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
            let _ = r.send(super::body::plain_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            ));
        }
        if let Some(w) = waker {
            w.wake();
        }
        self.demand.notify_one();
        outcome
    }

    pub fn status(&self) -> Option<StatusCode> {
        self.inner.lock().status
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
/// future first (the client closed the connection), the app learns of it through `receive()`.
pub struct DisconnectGuard(pub Option<Arc<Exchange>>);

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if let Some(ex) = self.0.take() {
            ex.disconnect();
        }
    }
}
