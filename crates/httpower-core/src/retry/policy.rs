//! The retry state machine and the runner that drives it.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::backoff::{Backoff, BackoffError, Jitter};
use super::budget::RetryBudget;
use crate::clock::{Clock, Nanos};

/// What the caller's classifier says about one attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    /// The outcome is final and good: stop.
    Success,
    /// The outcome is transient: another attempt may succeed.
    Retry {
        /// A server's own estimate of when to come back (such as `Retry-After`). When
        /// present it replaces the backoff delay.
        hint: Option<Duration>,
        /// Why the attempt is retryable, for events and logs (`"status 503"`).
        reason: Cow<'static, str>,
    },
    /// The outcome is final and retrying would not change it: stop.
    Fail,
}

impl Classification {
    /// A transient outcome without a server hint.
    pub fn retry(reason: impl Into<Cow<'static, str>>) -> Self {
        Classification::Retry {
            hint: None,
            reason: reason.into(),
        }
    }

    /// A transient outcome with an optional server hint (such as a parsed `Retry-After`).
    pub fn retry_after(reason: impl Into<Cow<'static, str>>, hint: Option<Duration>) -> Self {
        Classification::Retry {
            hint,
            reason: reason.into(),
        }
    }
}

/// One retry about to happen: reported to the `on_retry` hook and returned by
/// [`RetryState::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEvent {
    /// The attempt that failed, counted from 1. The next attempt is `attempt + 1`.
    pub attempt: u32,
    /// How long the caller waits before the next attempt.
    pub delay: Duration,
    /// Whether `delay` came from the server's hint rather than the backoff.
    pub from_hint: bool,
    /// Why the attempt is being retried (from the classifier).
    pub reason: Cow<'static, str>,
}

/// Why a call stopped retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The classifier accepted the outcome.
    Succeeded,
    /// The classifier said the outcome is not worth retrying.
    NotRetryable,
    /// Every allowed attempt was made.
    MaxRetries {
        /// Attempts made, the first one included.
        attempts: u32,
    },
    /// The shared retry budget is spent: retrying now would amplify an outage.
    BudgetExhausted,
    /// The server asked for a longer wait than `max_retry_after`; the caller should
    /// surface `retry_after` instead of parking the task.
    HintTooLong {
        /// The wait the server asked for.
        retry_after: Duration,
    },
    /// Waiting `delay` would reach or pass the call's deadline.
    DeadlineWouldPass {
        /// The wait the next retry needed.
        delay: Duration,
        /// Time left before the deadline.
        remaining: Duration,
    },
}

impl StopReason {
    /// A stable machine-readable name for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::Succeeded => "succeeded",
            StopReason::NotRetryable => "not_retryable",
            StopReason::MaxRetries { .. } => "max_retries",
            StopReason::BudgetExhausted => "budget_exhausted",
            StopReason::HintTooLong { .. } => "retry_after_too_long",
            StopReason::DeadlineWouldPass { .. } => "deadline_would_pass",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Succeeded => f.write_str("succeeded"),
            StopReason::NotRetryable => f.write_str("outcome is not retryable"),
            StopReason::MaxRetries { attempts } => write!(f, "gave up after {attempts} attempts"),
            StopReason::BudgetExhausted => f.write_str("retry budget exhausted"),
            StopReason::HintTooLong { retry_after } => {
                write!(
                    f,
                    "server asked to retry after {retry_after:?}, longer than allowed"
                )
            }
            StopReason::DeadlineWouldPass { delay, remaining } => write!(
                f,
                "waiting {delay:?} would pass the deadline ({remaining:?} left)"
            ),
        }
    }
}

/// What the caller does next, as decided by [`RetryState::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Wait `event.delay`, then make attempt `event.attempt + 1`.
    Retry(RetryEvent),
    /// Stop and return the last outcome.
    Stop(StopReason),
}

impl Step {
    /// The wait before the next attempt, or `None` when stopping.
    pub fn delay(&self) -> Option<Duration> {
        match self {
            Step::Retry(event) => Some(event.delay),
            Step::Stop(_) => None,
        }
    }
}

/// An invalid [`RetryPolicy`] setting; [`field`](RetryPolicyError::field) names it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryPolicyError {
    /// The backoff settings are invalid.
    #[error(transparent)]
    Backoff(#[from] BackoffError),
}

impl RetryPolicyError {
    /// The name of the offending setting (`base_delay`, `max_delay`, `jitter_factor`).
    pub fn field(&self) -> &'static str {
        match self {
            RetryPolicyError::Backoff(e) => e.field(),
        }
    }
}

/// Retries after the first attempt unless the builder says otherwise.
const DEFAULT_MAX_RETRIES: u32 = 3;
/// The longest server hint honoured by waiting unless the builder says otherwise.
const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The `on_retry` hook, shared by the clones of a policy.
#[derive(Clone)]
struct Hook(Arc<dyn Fn(&RetryEvent) + Send + Sync>);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hook").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
enum BudgetChoice {
    /// A fresh default budget, made at `build` on the builder's clock (the monotonic
    /// clock unless [`RetryPolicyBuilder::clock`] was called).
    Default,
    Shared(RetryBudget),
    Disabled,
}

/// Builds a [`RetryPolicy`]; see [`RetryPolicy::builder`] for the defaults.
#[derive(Debug, Clone)]
pub struct RetryPolicyBuilder {
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: Jitter,
    max_retry_after: Duration,
    budget: BudgetChoice,
    clock: Option<Arc<dyn Clock>>,
    on_retry: Option<Hook>,
}

impl Default for RetryPolicyBuilder {
    fn default() -> Self {
        let backoff = Backoff::default();
        RetryPolicyBuilder {
            max_retries: DEFAULT_MAX_RETRIES,
            base_delay: backoff.base_delay(),
            max_delay: backoff.max_delay(),
            jitter: backoff.jitter(),
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            budget: BudgetChoice::Default,
            clock: None,
            on_retry: None,
        }
    }
}

impl RetryPolicyBuilder {
    /// Retries after the first attempt (3 means at most 4 attempts). 0 disables retry.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// The delay before the first retry (default 1 s).
    pub fn base_delay(mut self, base_delay: Duration) -> Self {
        self.base_delay = base_delay;
        self
    }

    /// The cap on the backoff delay (default 30 s).
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// The jitter (default [`Jitter::Proportional`] with factor 0.2).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Base delay, cap and jitter at once, from a validated [`Backoff`].
    pub fn backoff(self, backoff: Backoff) -> Self {
        self.base_delay(backoff.base_delay())
            .max_delay(backoff.max_delay())
            .jitter(backoff.jitter())
    }

    /// The longest server hint that is honoured by waiting (default 60 s). A longer
    /// hint stops the call with [`StopReason::HintTooLong`].
    pub fn max_retry_after(mut self, max_retry_after: Duration) -> Self {
        self.max_retry_after = max_retry_after;
        self
    }

    /// Spend retries from `budget` (shared with every other user of its clones).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = BudgetChoice::Shared(budget);
        self
    }

    /// Retry without a budget: only `max_retries` bounds retries. Not recommended for
    /// calls to a shared dependency; see [`RetryBudget`].
    pub fn no_budget(mut self) -> Self {
        self.budget = BudgetChoice::Disabled;
        self
    }

    /// The clock of the default budget (default: the process's monotonic clock).
    ///
    /// The budget's window moves with this clock, so give it the clock that drives the
    /// calls: a pipeline on a [`ManualClock`](crate::clock::ManualClock) or on tokio's
    /// paused time should pass the same clock here, or its budget would refill on real
    /// time while everything else runs on test time. Only the default budget uses it: a
    /// budget passed to [`budget`](RetryPolicyBuilder::budget) keeps its own clock, and
    /// the policy itself reads time from the clock given to [`RetryPolicy::run`] or
    /// [`RetryState::next_on`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Calls `hook` before each retry's wait (to log or count retries). It runs inline,
    /// so it should be quick.
    pub fn on_retry(mut self, hook: impl Fn(&RetryEvent) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Hook(Arc::new(hook)));
        self
    }

    /// The validated policy.
    pub fn build(self) -> Result<RetryPolicy, RetryPolicyError> {
        let backoff = Backoff::new(self.base_delay, self.max_delay, self.jitter)?;
        Ok(self.with_backoff(backoff))
    }

    /// The policy, with `backoff` standing for the builder's (already validated)
    /// base delay, cap and jitter. Everything else cannot be invalid.
    fn with_backoff(self, backoff: Backoff) -> RetryPolicy {
        debug_assert_eq!(
            (backoff.base_delay(), backoff.max_delay(), backoff.jitter()),
            (self.base_delay, self.max_delay, self.jitter)
        );
        let budget = match self.budget {
            BudgetChoice::Default => Some(match self.clock {
                Some(clock) => RetryBudget::with_shared_clock(clock),
                None => RetryBudget::default(),
            }),
            BudgetChoice::Shared(budget) => Some(budget),
            BudgetChoice::Disabled => None,
        };
        RetryPolicy {
            max_retries: self.max_retries,
            backoff,
            max_retry_after: self.max_retry_after,
            budget,
            on_retry: self.on_retry,
        }
    }
}

/// When and how long to retry. Cheap to clone; clones share the budget and the hook.
///
/// Defaults: 3 retries, [`Backoff::default`], `max_retry_after` 60 s, and a fresh
/// [`RetryBudget::default`] (build the policy once and clone it, so that the budget is
/// shared). The default budget reads the process's monotonic clock unless
/// [`RetryPolicyBuilder::clock`] names another one; a test that drives time by hand
/// should set that clock, or pass [`RetryPolicyBuilder::budget`] a budget on its own
/// clock.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_retries: u32,
    backoff: Backoff,
    max_retry_after: Duration,
    budget: Option<RetryBudget>,
    on_retry: Option<Hook>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // The default builder holds `Backoff::default()`'s settings, which are valid.
        RetryPolicyBuilder::default().with_backoff(Backoff::default())
    }
}

impl RetryPolicy {
    /// A builder starting from the defaults.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::default()
    }

    /// Retries allowed after the first attempt.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The backoff between attempts.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The longest server hint honoured by waiting.
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// The shared budget, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// Begins one logical call: records it with the budget and returns the state that
    /// decides, after each attempt, whether to retry.
    pub fn start(&self) -> RetryState<'_> {
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        RetryState {
            policy: self,
            attempts: 0,
            previous_delay: None,
            last_hint: None,
            stopped: None,
        }
    }

    /// Runs `op` until the classifier accepts an outcome or a stop rule fires, sleeping
    /// on `clock` between attempts, and returns everything about the last attempt.
    ///
    /// `op` receives the attempt number (from 1). No retry is scheduled whose wait would
    /// reach `deadline`; the runner does not otherwise enforce the deadline: wrap it in
    /// [`timeout_at`](crate::timeout::timeout_at) for that.
    pub async fn run<C, T, E, Cl, Op, Fut>(
        &self,
        clock: &C,
        deadline: Option<Nanos>,
        classify: Cl,
        mut op: Op,
    ) -> RetryOutcome<T, E>
    where
        C: Clock + ?Sized,
        Cl: Fn(&Result<T, E>) -> Classification,
        Op: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut state = self.start();
        loop {
            let result = op(state.attempts() + 1).await;
            let classification = classify(&result);
            match state.next_on(classification, clock, deadline) {
                Step::Retry(event) => {
                    drop(result);
                    clock.sleep(event.delay).await;
                }
                Step::Stop(stop) => {
                    return RetryOutcome {
                        result,
                        attempts: state.attempts(),
                        stop,
                        retry_after: state.last_hint(),
                    }
                }
            }
        }
    }

    /// [`run`](RetryPolicy::run) without a deadline, as a `Result`: `Ok` whenever the
    /// last attempt returned `Ok`, otherwise the last error with the attempt count.
    pub async fn retry<C, T, E, Cl, Op, Fut>(
        &self,
        clock: &C,
        classify: Cl,
        op: Op,
    ) -> Result<T, RetryError<E>>
    where
        C: Clock + ?Sized,
        Cl: Fn(&Result<T, E>) -> Classification,
        Op: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(clock, None, classify, op).await.into_result()
    }
}

/// The per-call retry state machine.
///
/// Made by [`RetryPolicy::start`]. After each attempt, feed the classification to
/// [`next`](RetryState::next); it answers [`Step::Retry`] (wait, then try again) or
/// [`Step::Stop`]. Once it has stopped it keeps answering the same stop.
#[derive(Debug, Clone)]
pub struct RetryState<'p> {
    policy: &'p RetryPolicy,
    attempts: u32,
    previous_delay: Option<Duration>,
    last_hint: Option<Duration>,
    stopped: Option<StopReason>,
}

impl RetryState<'_> {
    /// Attempts classified so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The server hint of the last retryable outcome, if it had one. After a stop this is
    /// what the caller reports as `retry_after`.
    pub fn last_hint(&self) -> Option<Duration> {
        self.last_hint
    }

    /// Decides what follows the attempt just classified, with thread-local randomness.
    ///
    /// `now` and `deadline` are readings of the same clock.
    pub fn next(
        &mut self,
        classification: Classification,
        now: Nanos,
        deadline: Option<Nanos>,
    ) -> Step {
        self.step(classification, || now, deadline, &mut rand::thread_rng())
    }

    /// [`next`](RetryState::next) reading `clock` only if the decision needs the time
    /// (a retryable outcome under a deadline): the path of a call that succeeds stays
    /// free of clock reads.
    pub fn next_on<C: Clock + ?Sized>(
        &mut self,
        classification: Classification,
        clock: &C,
        deadline: Option<Nanos>,
    ) -> Step {
        self.step(
            classification,
            || clock.now(),
            deadline,
            &mut rand::thread_rng(),
        )
    }

    /// [`next`](RetryState::next) with the caller's random number generator (for
    /// repeatable jitter in tests).
    ///
    /// The rules, in order: a success or a non-retryable outcome stops; a retryable one
    /// stops when `max_retries` retries were made; a server hint replaces the backoff
    /// delay, and stops the call if it exceeds `max_retry_after`; a wait that would reach
    /// the deadline stops; last, one retry is withdrawn from the budget, and an empty
    /// budget stops. A retry is withdrawn only when it is actually granted.
    pub fn next_with_rng<R: Rng + ?Sized>(
        &mut self,
        classification: Classification,
        now: Nanos,
        deadline: Option<Nanos>,
        rng: &mut R,
    ) -> Step {
        self.step(classification, || now, deadline, rng)
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        classification: Classification,
        now: impl FnOnce() -> Nanos,
        deadline: Option<Nanos>,
        rng: &mut R,
    ) -> Step {
        if let Some(stop) = self.stopped {
            return Step::Stop(stop);
        }
        self.attempts = self.attempts.saturating_add(1);
        let step = self.decide(classification, now, deadline, rng);
        match &step {
            Step::Stop(stop) => self.stopped = Some(*stop),
            Step::Retry(event) => {
                if let Some(Hook(hook)) = &self.policy.on_retry {
                    hook(event);
                }
            }
        }
        step
    }

    fn decide<R: Rng + ?Sized>(
        &mut self,
        classification: Classification,
        now: impl FnOnce() -> Nanos,
        deadline: Option<Nanos>,
        rng: &mut R,
    ) -> Step {
        let (hint, reason) = match classification {
            Classification::Success => {
                self.last_hint = None;
                return Step::Stop(StopReason::Succeeded);
            }
            Classification::Fail => {
                self.last_hint = None;
                return Step::Stop(StopReason::NotRetryable);
            }
            Classification::Retry { hint, reason } => (hint, reason),
        };
        self.last_hint = hint;
        if self.attempts > self.policy.max_retries {
            return Step::Stop(StopReason::MaxRetries {
                attempts: self.attempts,
            });
        }
        let (delay, from_hint) = match hint {
            Some(hint) if hint > self.policy.max_retry_after => {
                return Step::Stop(StopReason::HintTooLong { retry_after: hint });
            }
            Some(hint) => (hint, true),
            None => {
                let delay = self
                    .policy
                    .backoff
                    .delay(self.attempts, self.previous_delay, rng);
                (delay, false)
            }
        };
        if let Some(deadline) = deadline {
            // The only use of the time: read it only when there is a deadline.
            let now = now();
            if now + delay >= deadline {
                return Step::Stop(StopReason::DeadlineWouldPass {
                    delay,
                    remaining: deadline.saturating_duration_since(now),
                });
            }
        }
        if let Some(budget) = &self.policy.budget {
            if !budget.try_withdraw() {
                return Step::Stop(StopReason::BudgetExhausted);
            }
        }
        if !from_hint {
            self.previous_delay = Some(delay);
        }
        Step::Retry(RetryEvent {
            attempt: self.attempts,
            delay,
            from_hint,
            reason,
        })
    }
}

/// Everything about a call's last attempt, from [`RetryPolicy::run`].
#[derive(Debug)]
#[non_exhaustive]
pub struct RetryOutcome<T, E> {
    /// What the last attempt returned.
    pub result: Result<T, E>,
    /// Attempts made, the first one included.
    pub attempts: u32,
    /// Why retrying stopped.
    pub stop: StopReason,
    /// The server hint of the last attempt when it was retryable (report it as
    /// `retry_after`, in particular on [`StopReason::HintTooLong`]).
    pub retry_after: Option<Duration>,
}

impl<T, E> RetryOutcome<T, E> {
    /// `Ok` when the last attempt returned `Ok` (whatever the stop reason), otherwise a
    /// [`RetryError`] carrying the last error.
    pub fn into_result(self) -> Result<T, RetryError<E>> {
        match self.result {
            Ok(value) => Ok(value),
            Err(error) => Err(RetryError {
                error,
                attempts: self.attempts,
                stop: self.stop,
                retry_after: self.retry_after,
            }),
        }
    }
}

/// The last error of a call that stopped retrying.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryError<E> {
    /// The last attempt's error.
    pub error: E,
    /// Attempts made, the first one included.
    pub attempts: u32,
    /// Why retrying stopped.
    pub stop: StopReason,
    /// The server hint of the last attempt, if it had one.
    pub retry_after: Option<Duration>,
}

impl<E> RetryError<E> {
    /// The last attempt's error.
    pub fn into_inner(self) -> E {
        self.error
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} after {} attempt{} ({}): {}",
            match self.stop {
                StopReason::NotRetryable => "failed",
                _ => "retries stopped",
            },
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.stop,
            self.error
        )
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, TokioClock};
    use parking_lot::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    const SEC: Duration = Duration::from_secs(1);

    fn policy(builder: RetryPolicyBuilder) -> RetryPolicy {
        match builder.jitter(Jitter::None).build() {
            Ok(p) => p,
            Err(e) => unreachable!("valid policy rejected: {e}"),
        }
    }

    fn budget(clock: impl Clock, ratio: f64, min_per_sec: u32) -> RetryBudget {
        match RetryBudget::builder()
            .ratio(ratio)
            .min_per_sec(min_per_sec)
            .build(clock)
        {
            Ok(b) => b,
            Err(e) => unreachable!("valid budget rejected: {e}"),
        }
    }

    /// Every error is transient; an `Err` whose text parses as seconds carries that hint.
    fn classify(result: &Result<u32, String>) -> Classification {
        match result {
            Ok(_) => Classification::Success,
            Err(e) if e == "fatal" => Classification::Fail,
            Err(e) => {
                Classification::retry_after("unavailable", e.parse().ok().map(Duration::from_secs))
            }
        }
    }

    fn elapsed(clock: &TokioClock) -> Duration {
        clock.now().as_duration()
    }

    #[test]
    fn defaults_match_the_spec() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_retries(), 3);
        assert_eq!(p.max_retry_after(), 60 * SEC);
        assert_eq!(*p.backoff(), Backoff::default());
        assert!(p.budget().is_some(), "budget on by default");
        let built = RetryPolicy::builder().build();
        assert!(matches!(&built, Ok(b) if b.budget().is_some() && b.max_retries() == 3));
    }

    #[test]
    fn default_budget_runs_on_the_builder_clock() {
        let clock = ManualClock::new();
        let p = policy(RetryPolicy::builder().clock(clock.clone()));
        let Some(spent) = p.budget() else {
            unreachable!("the default budget is on")
        };
        // The default budget: a floor of 10 retries/s over a 10 s window.
        let granted = (0..1_000).filter(|_| spent.try_withdraw()).count();
        assert_eq!(granted, 100);
        assert_eq!(spent.remaining(), 0);
        // Only the manual clock can move the window: a budget on the monotonic clock
        // would still be spent.
        clock.advance(10 * SEC);
        assert_eq!(spent.remaining(), 100);
        // A budget passed explicitly keeps its own clock.
        let own = ManualClock::new();
        let p = policy(RetryPolicy::builder().clock(clock.clone()).budget(budget(
            own.clone(),
            0.0,
            1,
        )));
        let Some(spent) = p.budget() else {
            unreachable!("an explicit budget is on")
        };
        assert_eq!((0..100).filter(|_| spent.try_withdraw()).count(), 10);
        clock.advance(10 * SEC);
        assert_eq!(
            spent.remaining(),
            0,
            "the builder's clock is not the budget's"
        );
        own.advance(10 * SEC);
        assert_eq!(spent.remaining(), 10);
    }

    #[test]
    fn default_policy_is_the_default_builder() {
        let built = default_built();
        let default = RetryPolicy::default();
        // Debug shows every setting (the budget's included), so equal output means the
        // same configuration.
        assert_eq!(format!("{default:?}"), format!("{built:?}"));
        assert!(format!("{default:?}").contains("on_retry: None"));
        let hooked = policy(RetryPolicy::builder().on_retry(|_| {}));
        assert!(format!("{hooked:?}").contains("on_retry: Some(Hook"));
    }

    fn default_built() -> RetryPolicy {
        match RetryPolicy::builder().build() {
            Ok(p) => p,
            Err(e) => unreachable!("default policy rejected: {e}"),
        }
    }

    #[test]
    fn builder_rejects_bad_backoff_naming_the_field() {
        let err = RetryPolicy::builder().base_delay(Duration::ZERO).build();
        assert!(
            matches!(&err, Err(e) if e.field() == "base_delay"),
            "{err:?}"
        );
        let err = RetryPolicy::builder()
            .base_delay(10 * SEC)
            .max_delay(SEC)
            .build();
        assert!(
            matches!(&err, Err(e) if e.field() == "max_delay"),
            "{err:?}"
        );
        let err = RetryPolicy::builder()
            .jitter(Jitter::Proportional { factor: 2.0 })
            .build();
        assert!(
            matches!(&err, Err(e) if e.field() == "jitter_factor"),
            "{err:?}"
        );
    }

    #[test]
    fn state_machine_follows_the_rules() {
        let p = policy(RetryPolicy::builder().no_budget());
        let mut s = p.start();
        let now = Nanos::ZERO;
        let step = s.next(Classification::retry("reset"), now, None);
        assert_eq!(
            step,
            Step::Retry(RetryEvent {
                attempt: 1,
                delay: SEC,
                from_hint: false,
                reason: "reset".into()
            })
        );
        assert_eq!(
            s.next(Classification::retry("reset"), now, None).delay(),
            Some(2 * SEC)
        );
        assert_eq!(
            s.next(Classification::retry("reset"), now, None).delay(),
            Some(4 * SEC)
        );
        let stop = Step::Stop(StopReason::MaxRetries { attempts: 4 });
        assert_eq!(s.next(Classification::retry("reset"), now, None), stop);
        assert_eq!(s.attempts(), 4);
        // A stop is final.
        assert_eq!(s.next(Classification::Success, now, None), stop);

        let mut s = p.start();
        assert_eq!(
            s.next(Classification::Fail, now, None),
            Step::Stop(StopReason::NotRetryable)
        );
        let mut s = p.start();
        assert_eq!(
            s.next(Classification::Success, now, None),
            Step::Stop(StopReason::Succeeded)
        );
        assert_eq!(s.attempts(), 1);
    }

    #[test]
    fn hint_overrides_backoff_and_long_hints_stop() {
        let p = policy(RetryPolicy::builder().no_budget());
        let mut s = p.start();
        let hinted = s.next(
            Classification::retry_after("429", Some(7 * SEC)),
            Nanos::ZERO,
            None,
        );
        assert!(
            matches!(&hinted, Step::Retry(e) if e.delay == 7 * SEC && e.from_hint),
            "{hinted:?}"
        );
        // A past date parses to zero: retry now.
        let now = s.next(
            Classification::retry_after("503", Some(Duration::ZERO)),
            Nanos::ZERO,
            None,
        );
        assert_eq!(now.delay(), Some(Duration::ZERO));
        // Exactly max_retry_after is still honoured; one more second is not.
        let at_cap = s.next(
            Classification::retry_after("503", Some(60 * SEC)),
            Nanos::ZERO,
            None,
        );
        assert_eq!(at_cap.delay(), Some(60 * SEC));
        let mut s = p.start();
        let too_long = s.next(
            Classification::retry_after("503", Some(61 * SEC)),
            Nanos::ZERO,
            None,
        );
        assert_eq!(
            too_long,
            Step::Stop(StopReason::HintTooLong {
                retry_after: 61 * SEC
            })
        );
        assert_eq!(s.last_hint(), Some(61 * SEC));
    }

    #[test]
    fn no_retry_whose_wait_reaches_the_deadline() {
        let p = policy(RetryPolicy::builder().no_budget());
        let mut s = p.start();
        let now = Nanos::from_duration(10 * SEC);
        let deadline = Some(Nanos::from_duration(12 * SEC));
        assert_eq!(
            s.next(Classification::retry("x"), now, deadline).delay(),
            Some(SEC)
        );
        assert_eq!(
            s.next(Classification::retry("x"), now, deadline),
            Step::Stop(StopReason::DeadlineWouldPass {
                delay: 2 * SEC,
                remaining: 2 * SEC
            })
        );
        // A hint counts against the deadline too.
        let mut s = p.start();
        let step = s.next(
            Classification::retry_after("x", Some(5 * SEC)),
            now,
            deadline,
        );
        assert!(
            matches!(step, Step::Stop(StopReason::DeadlineWouldPass { delay, .. }) if delay == 5 * SEC)
        );
    }

    #[test]
    fn budget_is_spent_only_on_retries_that_happen() {
        let clock = ManualClock::new();
        let b = budget(clock, 1.0, 0);
        let p = policy(RetryPolicy::builder().budget(b.clone()).max_retries(5));
        let mut s = p.start(); // deposits one call: one retry available
        assert_eq!(b.remaining(), 1);
        // Stops for other reasons do not touch the budget.
        let long = s.next(
            Classification::retry_after("x", Some(3600 * SEC)),
            Nanos::ZERO,
            None,
        );
        assert!(matches!(long, Step::Stop(StopReason::HintTooLong { .. })));
        let mut s = p.start();
        let late = s.next(Classification::retry("x"), Nanos::ZERO, Some(Nanos::ZERO));
        assert!(matches!(
            late,
            Step::Stop(StopReason::DeadlineWouldPass { .. })
        ));
        assert_eq!(b.remaining(), 2, "two calls deposited, nothing withdrawn");
        let mut s = p.start();
        assert!(matches!(
            s.next(Classification::retry("x"), Nanos::ZERO, None),
            Step::Retry(_)
        ));
        assert!(matches!(
            s.next(Classification::retry("x"), Nanos::ZERO, None),
            Step::Retry(_)
        ));
        assert!(matches!(
            s.next(Classification::retry("x"), Nanos::ZERO, None),
            Step::Retry(_)
        ));
        assert_eq!(
            s.next(Classification::retry("x"), Nanos::ZERO, None),
            Step::Stop(StopReason::BudgetExhausted)
        );
        assert_eq!(b.remaining(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn runner_backs_off_then_gives_up() {
        let clock = TokioClock::new();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&events);
        let p = policy(
            RetryPolicy::builder()
                .no_budget()
                .on_retry(move |e| seen.lock().push((e.attempt, e.delay))),
        );
        let result = p
            .retry(&clock, classify, |attempt| async move {
                Err::<u32, _>(format!("attempt {attempt} failed"))
            })
            .await;
        assert_eq!(
            result,
            Err(RetryError {
                error: "attempt 4 failed".to_owned(),
                attempts: 4,
                stop: StopReason::MaxRetries { attempts: 4 },
                retry_after: None
            })
        );
        assert_eq!(elapsed(&clock), 7 * SEC, "1 s + 2 s + 4 s of backoff");
        assert_eq!(*events.lock(), vec![(1, SEC), (2, 2 * SEC), (3, 4 * SEC)]);
    }

    #[tokio::test(start_paused = true)]
    async fn runner_returns_the_first_success() {
        let clock = TokioClock::new();
        let p = policy(RetryPolicy::builder().no_budget());
        let outcome = p
            .run(&clock, None, classify, |attempt| async move {
                if attempt < 3 {
                    Err("2".to_owned()) // transient, server says 2 s
                } else {
                    Ok(attempt)
                }
            })
            .await;
        assert_eq!(outcome.result, Ok(3));
        assert_eq!(
            (outcome.attempts, outcome.stop, outcome.retry_after),
            (3, StopReason::Succeeded, None)
        );
        assert_eq!(
            elapsed(&clock),
            4 * SEC,
            "two hinted waits of 2 s replace the backoff"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn runner_surfaces_long_hints_without_sleeping() {
        let clock = TokioClock::new();
        let p = policy(RetryPolicy::builder().no_budget());
        let result = p
            .retry(&clock, classify, |_| async {
                Err::<u32, _>("3600".to_owned())
            })
            .await;
        let err = result.err();
        assert_eq!(
            err.as_ref().map(|e| (e.attempts, e.retry_after)),
            Some((1, Some(3600 * SEC)))
        );
        assert_eq!(
            err.as_ref().map(|e| e.stop),
            Some(StopReason::HintTooLong {
                retry_after: 3600 * SEC
            })
        );
        assert_eq!(elapsed(&clock), Duration::ZERO, "did not park the task");
    }

    #[tokio::test(start_paused = true)]
    async fn runner_stops_on_fatal_and_respects_the_deadline() {
        let clock = TokioClock::new();
        let p = policy(RetryPolicy::builder().no_budget());
        let calls = AtomicU64::new(0);
        let fatal = p
            .retry(&clock, classify, |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<u32, _>("fatal".to_owned()) }
            })
            .await;
        assert!(matches!(
            fatal,
            Err(RetryError {
                attempts: 1,
                stop: StopReason::NotRetryable,
                ..
            })
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let deadline = Some(clock.now() + Duration::from_millis(2500));
        let outcome = p
            .run(&clock, deadline, classify, |_| async {
                Err::<u32, _>("down".to_owned())
            })
            .await;
        assert_eq!(outcome.attempts, 2);
        assert_eq!(
            outcome.stop,
            StopReason::DeadlineWouldPass {
                delay: 2 * SEC,
                remaining: Duration::from_millis(1500)
            }
        );
        assert_eq!(
            elapsed(&clock),
            SEC,
            "slept once, then stopped before the deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn runner_keeps_ok_outcomes_the_classifier_retried() {
        // An `Ok` the classifier calls transient (an HTTP 503 response, say) is handed
        // back as it is once retries stop, with the reason.
        let clock = TokioClock::new();
        let p = policy(RetryPolicy::builder().no_budget().max_retries(1));
        let outcome = p
            .run(
                &clock,
                None,
                |r: &Result<u16, ()>| match r {
                    Ok(503) => Classification::retry_after("status 503", Some(SEC)),
                    _ => Classification::Success,
                },
                |_| async { Ok(503) },
            )
            .await;
        assert_eq!(outcome.result, Ok(503));
        assert_eq!(outcome.stop, StopReason::MaxRetries { attempts: 2 });
        assert_eq!(outcome.retry_after, Some(SEC));
        assert_eq!(outcome.into_result(), Ok(503));
    }

    #[test]
    fn retry_error_displays_and_chains() {
        let err = RetryError {
            error: std::io::Error::other("connection reset"),
            attempts: 4,
            stop: StopReason::MaxRetries { attempts: 4 },
            retry_after: None,
        };
        assert_eq!(
            err.to_string(),
            "retries stopped after 4 attempts (gave up after 4 attempts): connection reset"
        );
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("connection reset"));
        assert_eq!(StopReason::BudgetExhausted.as_str(), "budget_exhausted");
    }

    /// A dependency that is down for good, 10,000 calls at 1,000 calls/s, each allowed
    /// 3 retries. Without a budget that is 40,000 attempts; with the default budget
    /// (ratio 0.2, floor 10 retries/s, 10 s window) retries add at most 20% plus the floor.
    #[tokio::test(start_paused = true)]
    async fn retry_budget_caps_amplification() {
        const CALLS: u64 = 10_000;
        async fn run(policy: RetryPolicy, clock: TokioClock) -> u64 {
            let attempts = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..CALLS {
                let (policy, attempts) = (policy.clone(), Arc::clone(&attempts));
                tasks.push(tokio::spawn(async move {
                    policy
                        .retry(&clock, classify, |_| {
                            attempts.fetch_add(1, Ordering::SeqCst);
                            async { Err::<u32, _>("down".to_owned()) }
                        })
                        .await
                }));
                clock.sleep(Duration::from_millis(1)).await;
            }
            for task in tasks {
                assert!(matches!(task.await, Ok(Err(_))), "every call fails");
            }
            attempts.load(Ordering::SeqCst)
        }
        let backoff = |b: RetryPolicyBuilder| {
            b.max_retries(3)
                .base_delay(Duration::from_millis(10))
                .max_delay(Duration::from_millis(100))
        };

        let clock = TokioClock::new();
        let unbudgeted = run(policy(backoff(RetryPolicy::builder()).no_budget()), clock).await;
        assert_eq!(
            unbudgeted,
            4 * CALLS,
            "without a budget every call retries 3 times"
        );

        let clock = TokioClock::new();
        let budget = RetryBudget::new(clock);
        let start = clock.now();
        let attempts = run(
            policy(backoff(RetryPolicy::builder()).budget(budget.clone())),
            clock,
        )
        .await;
        let simulated = clock.now().saturating_duration_since(start);

        // The floor is granted anew for every window the run overlaps: a run of `T`
        // overlaps at most ceil(T / ttl) + 1 windows of `ttl`.
        let windows = simulated.as_nanos().div_ceil(budget.ttl().as_nanos()) as u64 + 1;
        let floor_allowance = budget.floor_per_window() * windows;
        let bound = CALLS + CALLS / 5 + floor_allowance;
        assert!(
            attempts <= bound,
            "{attempts} attempts for {CALLS} calls over {simulated:?}: more than 1.2 x calls \
             + floor allowance ({} retries/s x {:?} x {windows} windows = {floor_allowance}) = {bound}",
            budget.min_per_sec(),
            budget.ttl(),
        );
        assert!(
            attempts > CALLS + CALLS / 10,
            "the budget still allows retries: {attempts}"
        );
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn classification() -> impl Strategy<Value = Classification> {
        prop_oneof![
            1 => Just(Classification::Success),
            1 => Just(Classification::Fail),
            6 => proptest::option::of(0u64..120).prop_map(|hint| {
                Classification::retry_after("transient", hint.map(Duration::from_secs))
            }),
        ]
    }

    proptest! {
        #[test]
        fn state_machine_never_breaks_its_rules(
            max_retries in 0u32..6,
            seed in any::<u64>(),
            deadline_s in proptest::option::of(0u64..200),
            steps in proptest::collection::vec((classification(), 0u64..20), 1..12),
        ) {
            let policy = RetryPolicy::builder()
                .max_retries(max_retries)
                .jitter(Jitter::Decorrelated)
                .no_budget()
                .build();
            let policy = match policy {
                Ok(p) => p,
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            };
            let mut rng = SmallRng::seed_from_u64(seed);
            let deadline = deadline_s.map(|s| Nanos::from_duration(Duration::from_secs(s)));
            let mut state = policy.start();
            let mut now = Nanos::ZERO;
            let mut stopped = None;
            for (classification, work_s) in steps {
                now += Duration::from_secs(work_s);
                let hint = match &classification {
                    Classification::Retry { hint, .. } => *hint,
                    _ => None,
                };
                let step = state.next_with_rng(classification, now, deadline, &mut rng);
                if let Some(stop) = stopped {
                    prop_assert_eq!(step, Step::Stop(stop), "a stop is final");
                    continue;
                }
                match step {
                    Step::Retry(event) => {
                        prop_assert!(state.attempts() <= max_retries);
                        prop_assert_eq!(event.attempt, state.attempts());
                        match hint {
                            Some(hint) => prop_assert_eq!(event.delay, hint),
                            None => prop_assert!(event.delay <= Duration::from_secs(30)),
                        }
                        prop_assert!(event.delay <= Duration::from_secs(60));
                        if let Some(deadline) = deadline {
                            prop_assert!(now + event.delay < deadline);
                        }
                        now += event.delay;
                    }
                    Step::Stop(stop) => {
                        prop_assert!(state.attempts() <= max_retries + 1);
                        if let StopReason::MaxRetries { attempts } = stop {
                            prop_assert_eq!(attempts, max_retries + 1);
                        }
                        stopped = Some(stop);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;
    use crate::clock::TokioClock;

    fn assert_send<F: Future + Send>(_: &F) {}

    #[test]
    fn runner_future_is_send() {
        let policy = RetryPolicy::default();
        let clock = TokioClock::new();
        let fut = policy.run(
            &clock,
            None,
            |_: &Result<(), String>| Classification::Success,
            |_| async { Ok(()) },
        );
        assert_send(&fut);
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<RetryPolicy>();
        assert_sync::<RetryState<'static>>();
    }
}
