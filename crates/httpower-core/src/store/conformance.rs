//! The shared rate-limit test vectors and the runner every store must pass.
//!
//! The vectors (`testdata/rate_limit_vectors.toml`) are the executable form of the
//! semantics documented in [`crate::rate`]. A store proves it makes the same decisions
//! as the reference algorithms by running them:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use httpower_core::clock::{ManualClock, Nanos};
//! use httpower_core::store::{conformance, MemoryStore};
//!
//! let clock = ManualClock::new();
//! let store = MemoryStore::with_clock(clock.clone());
//! let report = conformance::run(&store, Nanos::ZERO, |t| clock.set(t)).await.unwrap();
//! assert!(report.steps > 0);
//! # });
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::Store;
use crate::clock::Nanos;
use crate::rate::{Algorithm, AnyAlgorithm, FixedWindow, Gcra, Quota, SlidingWindow, WindowQuota};

/// The vector file's text.
pub const VECTORS: &str = include_str!("../../testdata/rate_limit_vectors.toml");

/// Spacing between the origins of consecutive cases: every window in the file divides it.
pub const CASE_SPACING: Duration = Duration::from_secs(86_400);

/// The parsed vector file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vectors {
    /// The cases, each one limiter.
    pub case: Vec<Case>,
}

/// One limiter and the steps run against it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The case's name, also the limiter's name in the store.
    pub name: String,
    /// `gcra`, `sliding_window` or `fixed_window`.
    pub algorithm: String,
    /// GCRA: cells per period.
    pub rate: Option<u32>,
    /// GCRA: the period in milliseconds.
    pub period_ms: Option<u64>,
    /// GCRA: the burst.
    pub burst: Option<u32>,
    /// Windows: the limit.
    pub limit: Option<u32>,
    /// Windows: the window in milliseconds.
    pub window_ms: Option<u64>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// One request and the decision expected for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Milliseconds since the case's origin.
    pub t_ms: u64,
    /// The identifier.
    pub key: String,
    /// Cells asked for.
    pub cost: u32,
    /// Expected admission.
    pub allowed: Option<bool>,
    /// Expected remaining cells.
    pub remaining: Option<u32>,
    /// Expected reset, in milliseconds.
    pub reset_after_ms: Option<u64>,
    /// Expected retry-after, in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// Expected error instead of a decision (`cost_exceeds_limit`).
    pub error: Option<String>,
}

/// What a conformance run covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Cases run.
    pub cases: usize,
    /// Steps checked.
    pub steps: usize,
}

/// A store decided differently from the vectors (or the vectors are malformed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("case `{case}` step {step}: {detail}")]
pub struct Mismatch {
    /// The case's name.
    pub case: String,
    /// The step's index.
    pub step: usize,
    /// Expected versus found.
    pub detail: String,
}

/// Parses the vector file.
pub fn vectors() -> Result<Vectors, Mismatch> {
    toml::from_str(VECTORS).map_err(|err| Mismatch {
        case: "<file>".into(),
        step: 0,
        detail: err.to_string(),
    })
}

impl Case {
    /// The algorithm the case describes.
    pub fn algorithm(&self) -> Result<AnyAlgorithm, String> {
        let ms = Duration::from_millis;
        let need = |v: Option<u32>, f: &str| v.ok_or_else(|| format!("missing `{f}`"));
        let need_ms = |v: Option<u64>, f: &str| v.map(ms).ok_or_else(|| format!("missing `{f}`"));
        Ok(match self.algorithm.as_str() {
            "gcra" => {
                let quota = Quota::new(
                    need(self.rate, "rate")?,
                    need_ms(self.period_ms, "period_ms")?,
                    need(self.burst, "burst")?,
                )
                .map_err(|e| e.to_string())?;
                Gcra::new(quota).into()
            }
            "sliding_window" | "fixed_window" => {
                let quota = WindowQuota::new(
                    need(self.limit, "limit")?,
                    need_ms(self.window_ms, "window_ms")?,
                )
                .map_err(|e| e.to_string())?;
                if self.algorithm == "sliding_window" {
                    SlidingWindow::new(quota).into()
                } else {
                    FixedWindow::new(quota).into()
                }
            }
            other => return Err(format!("unknown algorithm `{other}`")),
        })
    }
}

/// Runs every vector against `store`. `origin` must be a whole number of days on the
/// store's clock (so windows align as in the file); `set_time` moves the store's clock
/// to the given instant before each step, and is only ever called with increasing times.
pub async fn run<S: Store + ?Sized>(
    store: &S,
    origin: Nanos,
    mut set_time: impl FnMut(Nanos),
) -> Result<Report, Mismatch> {
    let vectors = vectors()?;
    let mut steps = 0;
    for (index, case) in vectors.case.iter().enumerate() {
        let fail = |step: usize, detail: String| Mismatch {
            case: case.name.clone(),
            step,
            detail,
        };
        let algorithm = case.algorithm().map_err(|d| fail(0, d))?;
        let case_origin = origin + CASE_SPACING * u32::try_from(index).unwrap_or(u32::MAX);
        store
            .reset(&case.name, None)
            .await
            .map_err(|e| fail(0, format!("reset failed: {e}")))?;
        for (n, step) in case.steps.iter().enumerate() {
            set_time(case_origin + Duration::from_millis(step.t_ms));
            steps += 1;
            if let Some(error) = &step.error {
                if error != "cost_exceeds_limit" {
                    return Err(fail(n, format!("unknown expected error `{error}`")));
                }
                if step.cost <= algorithm.limit() {
                    return Err(fail(n, format!("cost {} fits the limit", step.cost)));
                }
                continue;
            }
            let decision = store
                .check(&case.name, &algorithm, &step.key, step.cost)
                .await
                .map_err(|e| fail(n, format!("store error: {e}")))?;
            let found = (
                decision.allowed,
                decision.limit,
                decision.remaining,
                decision.reset_after,
                decision.retry_after,
            );
            let expected = (
                step.allowed.unwrap_or(true),
                algorithm.limit(),
                step.remaining.unwrap_or(0),
                Duration::from_millis(step.reset_after_ms.unwrap_or(0)),
                Duration::from_millis(step.retry_after_ms.unwrap_or(0)),
            );
            if found != expected {
                return Err(fail(
                    n,
                    format!(
                        "expected (allowed, limit, remaining, reset_after, retry_after) = \
                         {expected:?}, found {found:?}"
                    ),
                ));
            }
        }
    }
    Ok(Report {
        cases: vectors.case.len(),
        steps,
    })
}
