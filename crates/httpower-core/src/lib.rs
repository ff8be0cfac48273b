//! Transport-agnostic resilience policies.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod bulkhead;
pub mod clock;
pub mod retry;
pub mod timeout;
