//! How Rust work reaches the Python thread and back (see DESIGN.md, "The bridge").

pub mod awaitable;
pub mod mailbox;
pub mod wakeup;

pub use mailbox::Mailbox;
