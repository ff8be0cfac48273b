//! Transport-agnostic resilience policies.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod clock;
pub mod rate;
pub mod store;
