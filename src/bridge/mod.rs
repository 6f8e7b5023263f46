//! The crossing between the Tokio I/O thread and the Python thread, both ways.
//!
//! Every request crosses twice, so the crossing decides performance. A naive crossing pays a
//! thread wake-up (and on a busy core a context switch) per message in each direction. Here
//! each direction batches instead:
//!
//! * **In, to the loop thread: [`mailbox`].** The I/O thread posts events (a parsed request,
//!   "body data arrived", a log line) into a vector and wakes the event loop through an
//!   eventfd ([`wakeup`]) that the loop watches with `add_reader`. While the I/O thread is
//!   busy it holds the wake-up back, until it is about to park (Tokio's `on_thread_park`), or
//!   64 events or 1 ms have piled up; the loop then takes the whole pile under the GIL once.
//!   Other threads that post wake the loop at once.
//! * **Out, to the I/O thread: [`outbox`].** Response heads and body wake-ups produced on the
//!   loop thread are queued, and the loop schedules one flush per iteration (`call_soon`), so
//!   all the responses of one iteration reach Tokio with one wake-up. WSGI threads use the
//!   same outbox with its look-out (see `outbox.rs`).
//!
//! Both are generic over what they carry; the interfaces decide what crosses. How long the
//! crossing into the loop takes is the loop's lag ([`lag`]), measured with probes that cross
//! like any event.

pub mod held_wakeup;
pub mod lag;
pub mod mailbox;
pub mod outbox;
pub mod wakeup;

pub use mailbox::Mailbox;
pub use outbox::{Deliver, Outbox};

/// How a waiting app side is woken: an event loop posts to its mailbox, a WSGI thread's
/// condition variable is signalled. The protocol layers park one where an app waits (for
/// request body, room to send, a WebSocket message) and call it at most once per park, never
/// under their own lock, so a waker that re-enters cannot deadlock.
pub trait AppWaker: Send + Sync {
    fn wake(self: std::sync::Arc<Self>);
}
