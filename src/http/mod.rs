//! HTTP serving with hyper: the per-request service and the bodies it reads and writes.

pub mod body;
pub mod exchange;
pub mod service;
