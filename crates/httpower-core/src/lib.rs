//! Transport-agnostic resilience policies.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod breaker;
pub mod bulkhead;
pub mod clock;
pub mod pipeline;
pub mod rate;
pub mod retry;
pub mod store;
pub mod timeout;
