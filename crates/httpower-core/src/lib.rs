//! Transport-agnostic resilience policies.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod breaker;
pub mod clock;
