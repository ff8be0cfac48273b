//! A resilient HTTP client built on the `httpower-core` policies.
//!
//! Every request runs through one pipeline, in this order:
//!
//! ```text
//! correlation id → dedup → rate limit → circuit breaker → retry ┐
//!                                  server feedback gate → attempt timeout → transport
//! (all of it under the total timeout)
//! ```
//!
//! * **Retries follow the rules**: only transient outcomes (408, 429, 500, 502, 503,
//!   504, resets, timeouts), only for idempotent methods unless the caller opts in
//!   (`retry_safe`) or sends an `Idempotency-Key`; `Retry-After` in every form replaces
//!   the backoff, capped by `max_retry_after`; a shared retry budget keeps an outage
//!   from multiplying traffic.
//! * **One breaker per host** (or per configured key) records one outcome per logical
//!   request and, while open, fails fast without touching the network.
//! * **The client-side limiter** charges one token per logical request, slows down while
//!   the host's breaker is half-open or open, and the **server's rate-limit headers**
//!   (`RateLimit`, `X-RateLimit-*`, `Retry-After`) hold requests until the server's
//!   quota resets, so the client slows down before it is answered 429.
//! * **Test mode** ([`testing`]) blocks the network; stubs answer, and injected
//!   transport faults are retried like real ones.
//!
//! Clients come from code ([`ClientBuilder`]) or from `httpower.toml`
//! ([`config::Config`], [`Client::from_config`]).
//!
//! ```
//! use std::time::Duration;
//! use httpower::testing::{Stub, StubReply, TransportFault};
//! use httpower::Client;
//! use httpower_core::clock::ManualClock;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // The dependency resets the connection once, then answers.
//! let orders = Stub::get("/orders/7").replies([
//!     StubReply::fault(TransportFault::Reset),
//!     StubReply::json(200, &serde_json::json!({"id": 7})),
//! ]);
//! let clock = ManualClock::new();
//! let client = Client::builder()
//!     .base_url("https://shop.example.com")
//!     .clock(clock.clone())
//!     .stub(orders.clone())
//!     .build()
//!     .unwrap();
//!
//! let request = tokio::spawn({
//!     let client = client.clone();
//!     async move { client.get("/orders/7").send().await }
//! });
//! // The retry waits for its backoff on the manual clock: move time instead of sleeping.
//! while !request.is_finished() {
//!     clock.advance(Duration::from_millis(100));
//!     tokio::task::yield_now().await;
//! }
//! let response = request.await.unwrap().unwrap();
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.attempts(), 2);
//! assert_eq!(orders.hits(), 2);
//! # });
//! ```
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod blocking;
mod client;
pub mod config;
mod dedup;
mod error;
pub mod events;
mod execute;
pub mod feedback;
pub mod observe;
mod profile;
mod request;
mod response;
pub mod sanitize;
pub mod security;
pub mod stores;
pub mod testing;
mod transport;

pub use client::{Breakers, Client, ClientBuilder, DEFAULT_RETRY_STATUSES};
pub use error::{Error, Reason, TimeoutPhase};
pub use events::{ClientEvent, RequestInfo};
pub use request::RequestBuilder;
pub use response::Response;

pub use httpower_core as core;
/// The Redis store crate, for the types [`stores::Stores::redis`] hands out.
#[cfg(feature = "redis")]
pub use httpower_redis as redis;
