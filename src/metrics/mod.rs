//! What a worker counts for `--metrics-bind`, and the Prometheus text made from it.
//!
//! Workers are separate processes, and Prometheus scrapes one address, so the counts live in
//! memory that every worker shares with the supervisor ([`Area`], mapped before the first
//! fork): each worker writes its own slot with relaxed atomic adds on the I/O thread, and the
//! supervisor reads all slots when it is scraped ([`render`]). Nothing is sent between
//! processes per request, and a worker that dies leaves its counts behind, so totals never go
//! backwards when it is replaced.

mod area;
mod render;

pub use area::{Area, Slot, DURATION_BUCKETS};
pub use render::{render, Format, Restarts, Scrape};
