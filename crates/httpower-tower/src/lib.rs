//! Inbound protection for tower and axum services.
//!
//! The server side of httpower: the same limiters and stores that protect outgoing
//! calls protect a service's own endpoints (a login form, a public API), keyed by the
//! client's address — read from forwarding headers only when the connection comes from
//! a trusted proxy — by a credential, or by an API key.
//!
//! A login limited by client address (10 per 5 minutes) and by credential (5 per 15
//! minutes, fail-closed), both of which must pass; a credential denial charges nothing
//! to the address's quota:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use axum::{routing::{get, post}, Router};
//! use httpower_core::rate::{SlidingWindow, WindowQuota};
//! use httpower_core::store::{CompositeMode, FailMode, Limiter, MemoryStore, Store};
//! use httpower_tower::extract::RequestParts;
//! use httpower_tower::RateLimitLayer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let per_ip = WindowQuota::new(10, Duration::from_secs(300))?;
//! let per_user = WindowQuota::new(5, Duration::from_secs(900))?;
//! let login_ip = Limiter::builder("login_ip", SlidingWindow::new(per_ip))
//!     .build(Arc::clone(&store));
//! let login_user = Limiter::builder("login_user", SlidingWindow::new(per_user))
//!     .fail_mode(FailMode::Closed)
//!     .build(store);
//!
//! let layer = RateLimitLayer::builder()
//!     .limit(login_ip, |r: &RequestParts<'_>| {
//!         r.peer.map_or_else(String::new, |peer| peer.ip().to_string())
//!     })
//!     .limit(login_user, |r: &RequestParts<'_>| {
//!         let user = r.headers.get("x-user").and_then(|v| v.to_str().ok());
//!         user.unwrap_or_default().to_owned()
//!     })
//!     .mode(CompositeMode::AllMustPass)
//!     .include("/login")
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/login", post(|| async { "welcome" }))
//!     .route("/health", get(|| async { "ok" }))
//!     .layer(layer);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! Over the limit the layer answers 429 with `Retry-After`, `RateLimit` and
//! `RateLimit-Policy` headers and a JSON body; see [`response`] for the exact formats
//! and [`layer`] for path patterns, composite modes and store failures.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod config;
pub mod correlation;
pub mod extract;
pub mod health;
pub mod key;
pub mod layer;
pub mod response;

pub use layer::{RateLimit, RateLimitLayer, RateLimitLayerBuilder};
