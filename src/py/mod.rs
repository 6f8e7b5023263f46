//! The Python-facing wrappers of what lower layers own: the core's settings (`CoreConfig`),
//! the TLS settings, and the memory the supervisor shares with its workers (`LoadSlots` for
//! the connection balancing, `Metrics` for `--metrics-bind`). Each is made in Python and
//! handed to a `Server`; none is part of an interface.

mod config;
mod gate;
mod metrics;
mod siblings;
mod tls;

pub use gate::close_gate;
pub use metrics::Metrics;
pub use siblings::LoadSlots;
pub use tls::TlsSettings;
