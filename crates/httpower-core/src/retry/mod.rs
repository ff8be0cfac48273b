//! Retrying transient failures, without making outages worse.
//!
//! A retry is a bet that the next attempt will go better than the last. The bet pays for
//! brief, independent failures (a dropped connection, a node restarting) and loses badly
//! when the dependency is overloaded or down: then every retry is extra load on the one
//! thing that needs less. This module makes the bet with limits on every side:
//!
//! * **Only what the caller calls transient is retried.** A classifier looks at each
//!   outcome, success or error, and answers [`Classification::Success`],
//!   [`Classification::Retry`] or [`Classification::Fail`]. Because it sees successful
//!   outcomes too, an HTTP layer can retry a `503` response and read its `Retry-After`.
//! * **Waits grow and spread** with capped exponential [`Backoff`] and [`Jitter`].
//! * **The server's hint wins.** A hint (`Retry-After`, parsed by
//!   [`parse_retry_after`]) replaces the backoff; a hint longer than `max_retry_after`
//!   stops the call and is handed back as `retry_after` instead of parking the task.
//! * **The deadline is respected.** No retry is scheduled whose wait would reach the
//!   call's deadline.
//! * **A [`RetryBudget`] bounds amplification** across all calls sharing it; see its
//!   module docs for why a per-call maximum is not enough on its own.
//!
//! Two ways to use it: [`RetryPolicy::run`] / [`RetryPolicy::retry`] drive an async
//! operation end to end, sleeping on an injected [`Clock`](crate::clock::Clock); a
//! pipeline that interleaves other policies between attempts drives the state machine
//! ([`RetryPolicy::start`], then [`RetryState::next`] after each attempt) itself.
//!
//! Nothing is logged here. Each retry is reported as a [`RetryEvent`] (returned in
//! [`Step::Retry`] and passed to the optional `on_retry` hook), and each stop as a
//! [`StopReason`], so the layer above decides how to log and count them.
//!
//! ```
//! use std::time::Duration;
//! use httpower_core::clock::{Clock, TokioClock};
//! use httpower_core::retry::{Classification, Jitter, RetryPolicy, StopReason};
//!
//! # let runtime = tokio::runtime::Builder::new_current_thread()
//! #     .enable_time().start_paused(true).build().unwrap();
//! # runtime.block_on(async {
//! let clock = TokioClock::new();
//! let policy = RetryPolicy::builder()
//!     .base_delay(Duration::from_millis(100))
//!     .jitter(Jitter::None)
//!     .build()?;
//!
//! let start = clock.now();
//! let outcome = policy
//!     .run(
//!         &clock,
//!         None,
//!         |result: &Result<&str, &str>| match result {
//!             Ok(_) => Classification::Success,
//!             // The server said when to come back: that replaces the backoff.
//!             Err("busy") => Classification::retry_after("busy", Some(Duration::from_secs(2))),
//!             Err(_) => Classification::retry("unavailable"),
//!         },
//!         |attempt| async move {
//!             match attempt {
//!                 1 => Err("unavailable"),
//!                 2 => Err("busy"),
//!                 _ => Ok("done"),
//!             }
//!         },
//!     )
//!     .await;
//! assert_eq!(outcome.result, Ok("done"));
//! assert_eq!(outcome.attempts, 3);
//! assert_eq!(outcome.stop, StopReason::Succeeded);
//! // 100 ms of backoff, then the 2 s the server asked for.
//! assert_eq!(clock.now().saturating_duration_since(start), Duration::from_millis(2100));
//! # Ok::<(), httpower_core::retry::RetryPolicyError>(())
//! # }).unwrap();
//! ```

pub mod backoff;
pub mod budget;
mod policy;
pub mod retry_after;

pub use backoff::{Backoff, BackoffError, Jitter};
pub use budget::{BudgetError, RetryBudget, RetryBudgetBuilder};
pub use policy::{
    Classification, RetryError, RetryEvent, RetryOutcome, RetryPolicy, RetryPolicyBuilder,
    RetryPolicyError, RetryState, Step, StopReason,
};
pub use retry_after::parse_retry_after;
