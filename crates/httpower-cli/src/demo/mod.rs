//! `httpower demo`: an embedded flaky upstream, a bounded workload driven
//! through httpower clients, live progress and a summary table.
//!
//! - [`upstream`] is the local server the clients talk to: endpoints that fail,
//!   stall, rate-limit or are down, deterministically.
//! - [`report`] collects what each client did and renders the summary.

pub(crate) mod report;
pub(crate) mod upstream;
