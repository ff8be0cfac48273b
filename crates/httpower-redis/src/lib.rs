//! The Redis store for httpower limiters: every instance of a service shares the same
//! limits.
//!
//! Per-instance limits multiply with the number of instances; a limit kept in Redis
//! does not. [`RedisStore`] implements httpower-core's
//! [`Store`](httpower_core::store::Store), so any [`Limiter`](httpower_core::store::Limiter)
//! — on the client, in the tower layer, around a database call — runs on Redis by being
//! built on this store instead of the memory one.
//!
//! # How a decision is made
//!
//! * **One atomic script, one round trip.** GCRA, the sliding and fixed windows,
//!   composite checks and concurrency leases are one Lua script (`EVALSHA`, with `EVAL`
//!   as the fallback when the server answers `NOSCRIPT`). Two instances checking the
//!   same key never both take the last cell.
//! * **Redis's clock.** The script reads the server's `TIME` in microseconds; the
//!   instances' clocks never enter a window, so clock skew between hosts cannot loosen
//!   a limit.
//! * **One slot per identifier.** Keys are `prefix:{limiter:identifier}`; the braces are
//!   a Cluster hash tag. Every key carries a TTL equal to the time its state matters,
//!   so identifiers that stop calling cost nothing.
//! * **Outages.** Connections are opened lazily and re-opened with backoff. Each
//!   limiter's `timeout` (default 100 ms) bounds a decision, and its
//!   [`FailMode`](httpower_core::store::FailMode) decides what an unreachable Redis
//!   means: admit (fail open, the default) or deny (fail closed).
//! * **Deny cache.** A key Redis denied is denied locally until its retry time, without
//!   a round trip: an abusive client hammering one key does not hammer Redis.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use httpower_core::rate::{SlidingWindow, WindowQuota};
//! use httpower_core::store::{FailMode, Limiter};
//! use httpower_redis::RedisStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(RedisStore::builder("redis://127.0.0.1:6379").build()?);
//! let login = Limiter::builder(
//!     "login_ip",
//!     SlidingWindow::new(WindowQuota::new(10, Duration::from_secs(300))?),
//! )
//! .fail_mode(FailMode::Closed)
//! .build(store);
//!
//! let verdict = login.key("203.0.113.7").check().await?;
//! if !verdict.decision.allowed {
//!     println!("retry in {:?}", verdict.decision.retry_after);
//! }
//! # Ok(()) }
//! ```

mod builder;
mod connection;
mod deny_cache;
mod key;
mod script;
mod store;

pub use builder::{RedisConfigError, RedisStoreBuilder};
#[cfg(feature = "conformance")]
pub use store::ManualServerTime;
pub use store::{RedisStore, RedisStoreStats};

/// The limiter script's source, for tools that load it themselves (the benchmark's
/// `redis-benchmark` ceiling).
pub const LIMITER_SCRIPT: &str = script::SOURCE;
