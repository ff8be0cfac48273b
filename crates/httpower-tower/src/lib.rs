//! Inbound protection for tower and axum services.
//!
//! The server side of httpower: the same limiters and stores that protect outgoing
//! calls protect a service's own endpoints (a login form, a public API), keyed by the
//! client's address — read from forwarding headers only when the connection comes from
//! a trusted proxy — by a credential, or by an API key.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod extract;
pub mod layer;
pub mod response;

pub use layer::{RateLimit, RateLimitLayer, RateLimitLayerBuilder};
