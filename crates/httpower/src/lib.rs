//! A resilient HTTP client built on the `httpower-core` policies.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod config;
pub mod feedback;
pub mod security;
