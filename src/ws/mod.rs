//! WebSockets (RFC 6455, with permessage-deflate from RFC 7692): recognising the opening
//! handshake, the state one connection shares with its app, and the task that frames it.
//!
//! The framing itself is yawc's (its `Streaming` layer: masking, control frames, inflate and
//! deflate); reassembly of fragmented messages, UTF-8 checks, size limits, pings and the
//! close handshake are ours, so that every way a connection ends maps to one close code the
//! app and the peer both see. Holds no Python object: the app side waits through
//! [`crate::bridge::AppWaker`], like an HTTP exchange.

pub mod deflate;
pub mod handshake;
pub mod reassembly;
pub mod session;
pub mod socket;
pub mod utf8;
pub mod watch;

pub use session::{Accept, Event, Message, Outgoing, Session};

/// Close codes juggler sends or reports (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    /// Reported to the app when the peer closed without a code.
    pub const NO_STATUS: u16 = 1005;
    /// Reported to the app when the connection ended without a close frame.
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}
