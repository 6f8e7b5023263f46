//! One WebSocket's state, shared by the task that frames its socket (I/O thread) and the app
//! (the event loop thread). One mutex guards it and nobody calls out while holding it: wakers
//! are taken under the lock and woken after.
//!
//! Both directions are bounded: messages from the peer wait here up to `max_queue` before
//! the socket stops being read, and messages from the app up to [`OUT_HIGH_WATER`] bytes
//! before the app's `send()` waits.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Waker};

use bytes::Bytes;
use http::HeaderMap;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::bridge::AppWaker;

/// Bytes queued towards the peer before the app's `send()` waits, and the level at which it
/// may go on.
pub const OUT_HIGH_WATER: usize = 1024 * 1024;
pub const OUT_LOW_WATER: usize = 512 * 1024;

/// A whole message. Text has been checked to be UTF-8 (by the reassembly, or by the app's
/// `str`).
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Text(Bytes),
    Binary(Bytes),
}

impl Message {
    fn len(&self) -> usize {
        match self {
            Self::Text(b) | Self::Binary(b) => b.len(),
        }
    }
}

/// The app's `websocket.accept`.
pub struct Accept {
    pub subprotocol: Option<String>,
    pub headers: HeaderMap,
}

/// What the app sends towards the peer.
#[derive(Debug)]
pub enum Outgoing {
    Message(Message),
    Close { code: u16, reason: String },
}

/// What the app learns next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Message(Message),
    /// The connection is over (peer's close, a protocol error, a lost socket, shutdown).
    Closed {
        code: u16,
        reason: String,
    },
}

/// What an app side waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Event,
    Room,
}

/// Why the app cannot send.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The connection is over: the app gets `ClientDisconnected`.
    Ended,
    /// The app already closed it, or accepted it twice.
    AfterClose,
}

/// The result of a send: a waker for the framing task (to deliver as the caller batches
/// them), and whether the app must now wait for [`Want::Room`].
pub struct Sent {
    pub wake: Option<Waker>,
    pub full: bool,
}

#[derive(Default)]
struct Inner {
    accept: Option<oneshot::Sender<Accept>>,
    inbound: VecDeque<Message>,
    /// How the connection ended, for `websocket.disconnect`; set once.
    ended: Option<(u16, String)>,
    outbound: VecDeque<Outgoing>,
    out_bytes: usize,
    app_closed: bool,
    app_waker: Option<Arc<dyn AppWaker>>,
    want_event: bool,
    want_room: bool,
    io_waker: Option<Waker>,
}

impl Inner {
    fn has_room(&self) -> bool {
        self.ended.is_some() || self.out_bytes <= OUT_LOW_WATER
    }

    fn app_waker_for(&mut self, event: bool, room: bool) -> Option<Arc<dyn AppWaker>> {
        if (event && self.want_event) || (room && self.want_room) {
            self.want_event = false;
            self.want_room = false;
            self.app_waker.take()
        } else {
            None
        }
    }
}

pub struct Session {
    inner: Mutex<Inner>,
    max_queue: usize,
}

impl Session {
    /// A session waiting for the app's answer, and where that answer arrives.
    pub fn new(max_queue: usize) -> (Arc<Self>, oneshot::Receiver<Accept>) {
        let (tx, rx) = oneshot::channel();
        let session = Self {
            inner: Mutex::new(Inner {
                accept: Some(tx),
                ..Inner::default()
            }),
            max_queue: max_queue.max(1),
        };
        (Arc::new(session), rx)
    }

    // ---- the app's side ----

    /// Hands the app's `websocket.accept` to the connection, which answers 101.
    pub fn accept(&self, accept: Accept) -> Result<(), Refused> {
        let mut inner = self.inner.lock();
        if inner.ended.is_some() {
            return Err(Refused::Ended);
        }
        let tx = inner.accept.take().ok_or(Refused::AfterClose)?;
        drop(inner);
        // A dropped receiver: the client left while the app decided.
        tx.send(accept).map_err(|_| Refused::Ended)
    }

    /// Whether the app has not yet answered the handshake (nor has the client left).
    pub fn is_connecting(&self) -> bool {
        self.inner.lock().accept.is_some()
    }

    /// Gives up on the handshake: the app answers with an HTTP response instead.
    pub fn refuse(&self) {
        self.inner.lock().accept = None;
    }

    /// The next message, or how the connection ended. The waker, when there is one, lets
    /// the framing task read again (the queue had been full).
    pub fn next_event(&self) -> (Option<Event>, Option<Waker>) {
        let mut inner = self.inner.lock();
        if let Some(msg) = inner.inbound.pop_front() {
            let wake = if inner.inbound.len() + 1 == self.max_queue {
                inner.io_waker.take()
            } else {
                None
            };
            return (Some(Event::Message(msg)), wake);
        }
        let ended = inner.ended.clone();
        (
            ended.map(|(code, reason)| Event::Closed { code, reason }),
            None,
        )
    }

    /// Parks the app side until what it wants may be there; `false` if it already is.
    pub fn park(&self, want: Want, waker: Arc<dyn AppWaker>) -> bool {
        let mut inner = self.inner.lock();
        let ready = match want {
            Want::Event => !inner.inbound.is_empty() || inner.ended.is_some(),
            Want::Room => inner.has_room(),
        };
        if ready {
            return false;
        }
        match want {
            Want::Event => inner.want_event = true,
            Want::Room => inner.want_room = true,
        }
        inner.app_waker = Some(waker);
        true
    }

    pub fn has_room(&self) -> bool {
        self.inner.lock().has_room()
    }

    pub fn is_ended(&self) -> bool {
        self.inner.lock().ended.is_some()
    }

    /// Queues a message or the app's close for the peer.
    pub fn send(&self, out: Outgoing) -> Result<Sent, Refused> {
        let mut inner = self.inner.lock();
        if inner.ended.is_some() {
            return Err(Refused::Ended);
        }
        if inner.app_closed {
            return Err(Refused::AfterClose);
        }
        match &out {
            Outgoing::Message(m) => inner.out_bytes += m.len(),
            Outgoing::Close { .. } => inner.app_closed = true,
        }
        inner.outbound.push_back(out);
        Ok(Sent {
            wake: inner.io_waker.take(),
            full: inner.out_bytes >= OUT_HIGH_WATER,
        })
    }

    // ---- the framing task's side ----

    /// The next thing to send; when there is none, the task is woken once there is.
    pub fn take_outgoing(&self, cx: &Context<'_>) -> Option<Outgoing> {
        let mut inner = self.inner.lock();
        let Some(out) = inner.outbound.pop_front() else {
            inner.io_waker = Some(cx.waker().clone());
            return None;
        };
        if let Outgoing::Message(m) = &out {
            inner.out_bytes -= m.len();
        }
        let wake = if inner.has_room() {
            inner.app_waker_for(false, true)
        } else {
            None
        };
        drop(inner);
        if let Some(w) = wake {
            w.wake();
        }
        Some(out)
    }

    /// Whether another message from the peer may be read; when not, the task is woken once
    /// the app has taken one.
    pub fn room_for_inbound(&self, cx: &Context<'_>) -> bool {
        let mut inner = self.inner.lock();
        if inner.inbound.len() < self.max_queue {
            return true;
        }
        inner.io_waker = Some(cx.waker().clone());
        false
    }

    pub fn push_inbound(&self, msg: Message) {
        let mut inner = self.inner.lock();
        if inner.ended.is_some() {
            return;
        }
        inner.inbound.push_back(msg);
        let wake = inner.app_waker_for(true, false);
        drop(inner);
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// The connection is over: the app's next `receive()` (after the messages already
    /// queued) gets `websocket.disconnect` with this code, and its sends fail. The first
    /// ending wins.
    pub fn end(&self, code: u16, reason: &str) {
        let mut inner = self.inner.lock();
        inner.accept = None;
        if inner.ended.is_none() {
            inner.ended = Some((code, reason.to_owned()));
        }
        inner.outbound.clear();
        inner.out_bytes = 0;
        let wake = inner.app_waker_for(true, true);
        drop(inner);
        if let Some(w) = wake {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl AppWaker for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn task() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count::default());
        (c.clone(), Waker::from(c))
    }

    fn text(s: &str) -> Message {
        Message::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn accept_reaches_the_connection_once() {
        let (s, mut rx) = Session::new(4);
        assert!(s.is_connecting());
        let accept = || Accept {
            subprotocol: Some("chat".into()),
            headers: HeaderMap::new(),
        };
        assert!(s.accept(accept()).is_ok());
        assert_eq!(
            rx.try_recv().ok().and_then(|a| a.subprotocol),
            Some("chat".into())
        );
        assert!(!s.is_connecting());
        assert_eq!(s.accept(accept()).err(), Some(Refused::AfterClose));
        let (s, rx) = Session::new(4);
        drop(rx);
        assert_eq!(
            s.accept(accept()).err(),
            Some(Refused::Ended),
            "client left"
        );
    }

    #[test]
    fn inbound_queue_is_bounded_and_wakes_the_reader() {
        let (s, _rx) = Session::new(2);
        let (reader, waker) = task();
        let cx = Context::from_waker(&waker);
        assert!(s.room_for_inbound(&cx));
        s.push_inbound(text("a"));
        s.push_inbound(text("b"));
        assert!(!s.room_for_inbound(&cx), "full at max_queue");
        let (ev, wake) = s.next_event();
        assert_eq!(ev, Some(Event::Message(text("a"))));
        wake.expect("the reader was waiting").wake();
        assert_eq!(reader.0.load(Ordering::SeqCst), 1);
        let (_, wake) = s.next_event();
        assert!(wake.is_none(), "the reader was not waiting any more");
        assert_eq!(s.next_event().0, None);
    }

    #[test]
    fn app_waits_for_messages_and_for_the_end() {
        let (s, _rx) = Session::new(4);
        let app = Arc::new(Count::default());
        assert!(s.park(Want::Event, app.clone()));
        s.push_inbound(text("x"));
        assert_eq!(app.0.load(Ordering::SeqCst), 1);
        assert!(!s.park(Want::Event, app.clone()), "a message is there");
        assert_eq!(s.next_event().0, Some(Event::Message(text("x"))));
        assert!(s.park(Want::Event, app.clone()));
        s.end(1001, "bye");
        assert_eq!(app.0.load(Ordering::SeqCst), 2);
        let closed = Event::Closed {
            code: 1001,
            reason: "bye".into(),
        };
        assert_eq!(s.next_event().0, Some(closed));
        s.end(1006, "");
        assert!(
            matches!(s.next_event().0, Some(Event::Closed { code: 1001, .. })),
            "the first ending wins"
        );
    }

    #[test]
    fn messages_queued_before_the_end_are_still_delivered() {
        let (s, _rx) = Session::new(4);
        s.push_inbound(text("last"));
        s.end(1000, "");
        assert_eq!(s.next_event().0, Some(Event::Message(text("last"))));
        assert!(matches!(
            s.next_event().0,
            Some(Event::Closed { code: 1000, .. })
        ));
    }

    #[test]
    fn sends_are_bounded_and_refused_after_close_or_end() {
        let (s, _rx) = Session::new(4);
        let (io, waker) = task();
        let cx = Context::from_waker(&waker);
        assert!(s.take_outgoing(&cx).is_none());
        let big = || Outgoing::Message(Message::Binary(Bytes::from(vec![0; OUT_HIGH_WATER / 2])));
        let sent = s.send(big()).expect("open");
        assert!(!sent.full);
        sent.wake.expect("the writer was waiting").wake();
        assert_eq!(io.0.load(Ordering::SeqCst), 1);
        let sent = s.send(big()).expect("open");
        assert!(sent.full, "at the high-water mark");
        let app = Arc::new(Count::default());
        assert!(s.park(Want::Room, app.clone()));
        assert!(s.take_outgoing(&cx).is_some());
        assert_eq!(
            app.0.load(Ordering::SeqCst),
            1,
            "woken once below low water"
        );
        assert!(s.has_room());
        s.send(Outgoing::Close {
            code: 1000,
            reason: String::new(),
        })
        .expect("open");
        assert_eq!(
            s.send(Outgoing::Message(text("late"))).err(),
            Some(Refused::AfterClose)
        );
        s.end(1000, "");
        assert_eq!(
            s.send(Outgoing::Message(text("late"))).err(),
            Some(Refused::Ended)
        );
        assert!(
            s.take_outgoing(&cx).is_none(),
            "the end drops what was queued"
        );
    }

    #[test]
    fn room_comes_back_only_below_low_water_as_the_peer_takes_messages() {
        let (s, _rx) = Session::new(4);
        let cx = Context::from_waker(Waker::noop());
        let chunk = || Outgoing::Message(Message::Binary(Bytes::from(vec![0; 600 * 1024])));
        assert!(s.has_room());
        s.send(chunk()).expect("open");
        assert!(s.send(chunk()).expect("open").full);
        assert!(!s.has_room());
        assert!(s.take_outgoing(&cx).is_some());
        assert!(
            !s.has_room(),
            "600 KiB still queued is over the low-water mark"
        );
        assert!(s.take_outgoing(&cx).is_some());
        assert!(s.has_room());
    }

    #[test]
    fn a_parked_app_is_woken_only_by_what_it_waits_for() {
        let (s, _rx) = Session::new(4);
        let cx = Context::from_waker(Waker::noop());
        let reader = Arc::new(Count::default());
        assert!(s.park(Want::Event, reader.clone()));
        // Room made by the peer is no news to a reader.
        s.send(Outgoing::Message(text("x"))).expect("open");
        assert!(s.take_outgoing(&cx).is_some());
        assert_eq!(reader.0.load(Ordering::SeqCst), 0);
        s.push_inbound(text("in"));
        assert_eq!(reader.0.load(Ordering::SeqCst), 1);
        // A writer waiting for room is not woken by a message for the app.
        let (s, _rx) = Session::new(4);
        let big = || Outgoing::Message(Message::Binary(Bytes::from(vec![0; OUT_HIGH_WATER])));
        assert!(s.send(big()).expect("open").full);
        let writer = Arc::new(Count::default());
        assert!(s.park(Want::Room, writer.clone()));
        s.push_inbound(text("in"));
        assert_eq!(writer.0.load(Ordering::SeqCst), 0);
        assert!(s.take_outgoing(&cx).is_some());
        assert_eq!(writer.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_refused_handshake_can_no_longer_be_accepted_and_the_end_is_known() {
        let (s, _rx) = Session::new(4);
        assert!(!s.is_ended());
        s.refuse();
        assert!(!s.is_connecting());
        assert!(
            !s.is_ended(),
            "refusing is not the end: the HTTP answer still goes out"
        );
        let accept = Accept {
            subprotocol: None,
            headers: HeaderMap::new(),
        };
        assert_eq!(s.accept(accept).err(), Some(Refused::AfterClose));
        s.end(1000, "");
        assert!(s.is_ended());
    }
}
