//! The rate-limit layer: [`RateLimitLayer`], the [`RateLimit`] service and its
//! [`ResponseFuture`].
//!
//! # Why one shared state
//!
//! A tower layer is cloned freely: axum clones it for every route it is applied to and
//! the service it makes for every connection. A limiter whose clones each kept their
//! own counters would multiply its limit by the number of connections (a 5 per second
//! limit admitting hundreds). Here every clone of a layer, and every service it makes,
//! holds the same [`Arc`]: the counters live in the limiters' [`Store`], which is shared
//! too, so a limit of 5 admits 5 in total however the layer is cloned.
//!
//! # One limiter or several
//!
//! [`RateLimitLayer::new`] limits with one [`Limiter`] and one [`KeyExtractor`]. A
//! composite layer ([`RateLimitLayer::builder`] with several
//! [`limit`](RateLimitLayerBuilder::limit)s, or [`RateLimitLayer::composite`]) checks
//! several limiters in one atomic store decision under a [`CompositeMode`]: with
//! [`AllMustPass`](CompositeMode::AllMustPass), a login limited by IP and by credential
//! charges neither when either denies, so an attacker cycling credentials does not burn
//! the IP quota of a legitimate user, nor the other way round. The limiters of one
//! layer must therefore share one store.
//!
//! # Paths
//!
//! [`include`](RateLimitLayerBuilder::include) and
//! [`exclude`](RateLimitLayerBuilder::exclude) take patterns matched against the path
//! the layer sees (inside an axum `nest`, the path without the nest's prefix): an exact
//! path (`/login`), or a prefix ending in `*` (`/api/*` matches `/api/` and everything
//! under it, not `/api`; `*` alone matches every path). Exclusions win over inclusions;
//! with no inclusion, every path not excluded is limited.
//!
//! # Different limiters per route
//!
//! Give each route its own layer (`.route("/login", post(login).layer(login_limit))`),
//! or put one layer on the router and pick the paths it covers with
//! [`include`](RateLimitLayerBuilder::include). Two layers on one store with different
//! limiter names keep separate counters; clones of one layer share them.
//!
//! # Store failures
//!
//! A single limiter applies its own timeout and [`FailMode`]. A composite check waits
//! at most the shortest timeout of its limiters, then: under
//! [`AnyMustPass`](CompositeMode::AnyMustPass) it denies only if every limiter is
//! fail-closed; otherwise it denies if any limiter is fail-closed. A denial by a store
//! failure is a 503 naming the (first) fail-closed limiter; an admission passes without
//! quota headers (see [`crate::response`]).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use axum::{routing::post, Router};
//! use httpower_core::rate::{SlidingWindow, WindowQuota};
//! use httpower_core::store::{Limiter, MemoryStore, Store};
//! use httpower_tower::extract::RequestParts;
//! use httpower_tower::layer::RateLimitLayer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let quota = WindowQuota::new(10, Duration::from_secs(300))?;
//! let login_ip = Limiter::builder("login_ip", SlidingWindow::new(quota)).build(store);
//! let by_peer = |request: &RequestParts<'_>| {
//!     request.peer.map_or_else(|| "unknown".to_owned(), |peer| peer.ip().to_string())
//! };
//!
//! let layer = RateLimitLayer::builder()
//!     .limit(login_ip, by_peer)
//!     .include("/login")
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/login", post(|| async { "welcome" }))
//!     .layer(layer);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::BoxError;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use httpower::observe::metrics as telemetry;
use httpower_core::clock::Clock;
use httpower_core::rate::Decision;
use httpower_core::store::{
    Check, CompositeDecision, CompositeMode, DecisionSource, FailMode, Limiter, Store, StoreError,
    Verdict,
};
use metrics::SharedString;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::extract::{KeyExtractor, RequestParts};
use crate::response::{self, Quota, QuotaHeaders};

/// Why a [`RateLimitLayer`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No limiter was given.
    #[error("a rate-limit layer needs at least one limiter")]
    NoLimiters,
    /// The limiters of one layer are on different stores: a composite decision must be
    /// one atomic operation on one store.
    #[error(
        "limiters `{first}` and `{other}` are on different stores; \
         the limiters of one layer must share one store"
    )]
    MixedStores {
        /// The first limiter.
        first: String,
        /// The limiter on another store.
        other: String,
    },
    /// The same limiter name appears twice.
    #[error("limiter `{0}` is given twice")]
    DuplicateLimiter(String),
    /// A path pattern is malformed.
    #[error("invalid path pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A path pattern: exact, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathPattern {
    Exact(String),
    Prefix(String),
}

impl PathPattern {
    fn parse(pattern: &str) -> Result<PathPattern, BuildError> {
        let invalid = |reason| BuildError::InvalidPattern {
            pattern: pattern.to_owned(),
            reason,
        };
        let (body, prefix) = match pattern.strip_suffix('*') {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        if body.contains('*') {
            return Err(invalid("`*` is only allowed at the end"));
        }
        if !(body.starts_with('/') || (prefix && body.is_empty())) {
            return Err(invalid("a path pattern starts with `/`"));
        }
        Ok(if prefix {
            PathPattern::Prefix(body.to_owned())
        } else {
            PathPattern::Exact(body.to_owned())
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => path == exact,
            PathPattern::Prefix(prefix) => path.starts_with(prefix.as_str()),
        }
    }
}

/// One limiter of a layer, with its key and its precomputed policy header member.
struct Limit {
    limiter: Limiter,
    key: Arc<dyn KeyExtractor>,
    policy: String,
    /// The limiter's name as a structured-field string, quoted once at build time.
    quoted: String,
    /// Metric labels: the limiter's and its store's names, made once.
    limiter_label: SharedString,
    store_label: SharedString,
}

impl Limit {
    fn new(limiter: Limiter, key: Arc<dyn KeyExtractor>) -> Limit {
        Limit {
            policy: response::policy_item(limiter.name(), limiter.algorithm()),
            quoted: response::sf_string(limiter.name()),
            limiter_label: SharedString::from(limiter.name().to_string()),
            store_label: SharedString::from(limiter.store().name().to_owned()),
            limiter,
            key,
        }
    }
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("limiter", &self.limiter)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The state every clone of a layer and every service it makes share.
#[derive(Debug)]
struct Shared {
    limits: Vec<Limit>,
    mode: CompositeMode,
    timeout: Duration,
    policy_header: Option<HeaderValue>,
    include: Vec<PathPattern>,
    exclude: Vec<PathPattern>,
    legacy_headers: bool,
}

impl Shared {
    fn applies_to(&self, path: &str) -> bool {
        if self.exclude.iter().any(|p| p.matches(path)) {
            return false;
        }
        self.include.is_empty() || self.include.iter().any(|p| p.matches(path))
    }

    /// The answer for decisions made by the store: headers to add, or the 429.
    fn answer(&self, allowed: bool, decisions: &[Decision], deciding: usize) -> Outcome {
        fn quota<'a>((limit, decision): (&'a Limit, &Decision)) -> Quota<'a> {
            Quota {
                quoted_name: limit.quoted.as_str(),
                decision: *decision,
            }
        }
        // One limiter (the common case) needs no vector.
        let single;
        let several: Vec<Quota<'_>>;
        let quotas: &[Quota<'_>] = if let ([limit], [decision]) = (&self.limits[..], decisions) {
            single = [quota((limit, decision))];
            &single
        } else {
            several = self.limits.iter().zip(decisions).map(quota).collect();
            &several
        };
        let headers = response::quota_headers(
            self.policy_header.as_ref(),
            quotas,
            deciding,
            self.legacy_headers,
        );
        if allowed {
            return Outcome::Pass(Some(headers));
        }
        let limiter = self
            .limits
            .get(deciding)
            .map_or("", |limit| limit.limiter.name());
        let retry_after = decisions
            .get(deciding)
            .map_or(Duration::ZERO, |d| d.retry_after);
        Outcome::Answer(response::too_many_requests(limiter, retry_after, headers))
    }

    /// The answer when a composite check's store failed.
    fn store_failed(&self) -> Outcome {
        let closed = |limit: &&Limit| limit.limiter.fail_mode() == FailMode::Closed;
        let deny = match self.mode {
            CompositeMode::AnyMustPass => self.limits.iter().all(|l| closed(&l)),
            CompositeMode::AllMustPass | CompositeMode::MostRestrictive => {
                self.limits.iter().any(|l| closed(&l))
            }
        };
        for limit in &self.limits {
            telemetry::store_fallback(&limit.limiter_label, &limit.store_label, !deny);
        }
        match self.limits.iter().find(closed) {
            Some(limit) if deny => Outcome::Answer(response::unavailable(
                limit.limiter.name(),
                limit.limiter.timeout(),
            )),
            _ => Outcome::Pass(None),
        }
    }

    /// The outcome when the store answers without I/O (the memory store), so the
    /// common case needs neither a boxed future nor a timer; `None` when it needs I/O.
    ///
    /// The unanswered store future is dropped unpolled, which does nothing (a
    /// [`StoreFuture`](httpower_core::store::StoreFuture) is inert until polled); the
    /// check is then made again, with its timeout, by [`decide`](Shared::decide).
    fn decide_now(&self, keys: &[String]) -> Option<Outcome> {
        match (self.limits.as_slice(), keys) {
            ([limit], [key]) => {
                let limiter = &limit.limiter;
                let mut pending =
                    limiter
                        .store()
                        .check(limiter.name(), limiter.algorithm(), key, 1);
                let verdict = match pending.take_ready()? {
                    Ok(decision) => Verdict {
                        decision,
                        source: DecisionSource::Store,
                    },
                    Err(err) => limiter.fallback(err),
                };
                Some(self.verdict_outcome(limit, &verdict))
            }
            _ => {
                let first = self.limits.first()?;
                let checks = self.checks(keys);
                let mut pending = first.limiter.store().check_composite(&checks, self.mode);
                let result = pending.take_ready()?;
                Some(self.composite_outcome(result))
            }
        }
    }

    fn checks<'a>(&'a self, keys: &'a [String]) -> Vec<Check<'a>> {
        self.limits
            .iter()
            .zip(keys)
            .map(|(limit, key)| Check {
                limiter: limit.limiter.name(),
                algorithm: limit.limiter.algorithm(),
                key,
                cost: 1,
            })
            .collect()
    }

    fn verdict_outcome(&self, limit: &Limit, verdict: &Verdict) -> Outcome {
        let limiter = &limit.limiter;
        match verdict.source {
            DecisionSource::Store => {
                let allowed = verdict.decision.allowed;
                telemetry::inbound_decision(&limit.limiter_label, result_label(allowed));
                self.answer(allowed, &[verdict.decision], 0)
            }
            DecisionSource::FailOpen(_) => {
                telemetry::store_fallback(&limit.limiter_label, &limit.store_label, true);
                Outcome::Pass(None)
            }
            DecisionSource::FailClosed(_) => {
                telemetry::store_fallback(&limit.limiter_label, &limit.store_label, false);
                Outcome::Answer(response::unavailable(limiter.name(), limiter.timeout()))
            }
        }
    }

    fn composite_outcome(&self, result: Result<CompositeDecision, StoreError>) -> Outcome {
        match result {
            Ok(composite) => {
                if composite.allowed {
                    for limit in &self.limits {
                        telemetry::inbound_decision(&limit.limiter_label, "allowed");
                    }
                } else if let Some(limit) = self.limits.get(composite.deciding) {
                    telemetry::inbound_decision(&limit.limiter_label, "denied");
                }
                self.answer(composite.allowed, &composite.decisions, composite.deciding)
            }
            Err(_) => self.store_failed(),
        }
    }

    async fn decide(self: Arc<Self>, keys: Keys) -> Outcome {
        match (self.limits.as_slice(), keys.as_slice()) {
            ([limit], [key]) => self.decide_one(limit, key).await,
            _ => self.decide_composite(keys.as_slice()).await,
        }
    }

    async fn decide_one(&self, limit: &Limit, key: &str) -> Outcome {
        let limiter = &limit.limiter;
        let verdict = match limiter.check_n(key, 1).await {
            Ok(verdict) => verdict,
            // Quotas are never zero, so a cost of one always fits; should a limiter
            // say otherwise, its fail mode decides.
            Err(err) => limiter.fallback(StoreError::InvalidRequest {
                detail: err.to_string(),
            }),
        };
        self.verdict_outcome(limit, &verdict)
    }

    async fn decide_composite(&self, keys: &[String]) -> Outcome {
        let Some(first) = self.limits.first() else {
            return Outcome::Pass(None);
        };
        let store: &Arc<dyn Store> = first.limiter.store();
        let checks = self.checks(keys);
        let mut pending = store.check_composite(&checks, self.mode);
        let result = match pending.take_ready() {
            Some(result) => result,
            None => {
                let clock: &Arc<dyn Clock> = first.limiter.clock();
                let sleep = clock.sleep(self.timeout);
                tokio::select! {
                    biased;
                    result = pending => result,
                    () = sleep => Err(StoreError::Timeout {
                        store: store.name().to_owned(),
                        after: self.timeout,
                    }),
                }
            }
        };
        self.composite_outcome(result)
    }
}

/// The keys of one request: one per limiter, without a vector for a single limiter.
enum Keys {
    One(String),
    Many(Vec<String>),
}

impl Keys {
    fn as_slice(&self) -> &[String] {
        match self {
            Keys::One(key) => std::slice::from_ref(key),
            Keys::Many(keys) => keys,
        }
    }
}

fn result_label(allowed: bool) -> &'static str {
    if allowed {
        "allowed"
    } else {
        "denied"
    }
}

/// What the check decided.
enum Outcome {
    /// Call the inner service, adding these quota headers (none on fail-open).
    Pass(Option<QuotaHeaders>),
    /// Answer without calling it (429, 503).
    Answer(Response<Body>),
}

type CheckFuture = Pin<Box<dyn Future<Output = Outcome> + Send + 'static>>;

/// A tower [`Layer`] that rate-limits requests before they reach the inner service.
///
/// Cheap to clone; clones share one state (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

impl RateLimitLayer {
    /// Limits every request with `limiter`, keyed by `key`.
    pub fn new(limiter: Limiter, key: impl KeyExtractor) -> Self {
        let timeout = limiter.timeout();
        let limit = Limit::new(limiter, Arc::new(key));
        RateLimitLayer {
            shared: Arc::new(Shared {
                policy_header: response::policy_header([limit.policy.as_str()]),
                limits: vec![limit],
                mode: CompositeMode::AllMustPass,
                timeout,
                include: Vec::new(),
                exclude: Vec::new(),
                legacy_headers: false,
            }),
        }
    }

    /// Limits every request with several limiters decided together under `mode`.
    pub fn composite(
        mode: CompositeMode,
        limits: impl IntoIterator<Item = (Limiter, Arc<dyn KeyExtractor>)>,
    ) -> Result<Self, BuildError> {
        limits
            .into_iter()
            .fold(RateLimitLayer::builder().mode(mode), |builder, (l, k)| {
                builder.limit_arc(l, k)
            })
            .build()
    }

    /// Starts a layer with several limiters, path patterns or legacy headers.
    pub fn builder() -> RateLimitLayerBuilder {
        RateLimitLayerBuilder::default()
    }

    /// Whether requests to `path` are limited (the include and exclude patterns).
    pub fn applies_to(&self, path: &str) -> bool {
        self.shared.applies_to(path)
    }

    /// The limiters, in order.
    pub fn limiters(&self) -> impl Iterator<Item = &Limiter> {
        self.shared.limits.iter().map(|limit| &limit.limiter)
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Builds a [`RateLimitLayer`].
#[derive(Default)]
pub struct RateLimitLayerBuilder {
    limits: Vec<(Limiter, Arc<dyn KeyExtractor>)>,
    mode: CompositeMode,
    include: Vec<String>,
    exclude: Vec<String>,
    legacy_headers: bool,
}

impl fmt::Debug for RateLimitLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limiters: Vec<&Limiter> = self.limits.iter().map(|(limiter, _)| limiter).collect();
        f.debug_struct("RateLimitLayerBuilder")
            .field("limiters", &limiters)
            .field("mode", &self.mode)
            .field("include", &self.include)
            .field("exclude", &self.exclude)
            .field("legacy_headers", &self.legacy_headers)
            .finish()
    }
}

impl RateLimitLayerBuilder {
    /// Adds a limiter, keyed by `key`.
    pub fn limit(self, limiter: Limiter, key: impl KeyExtractor) -> Self {
        self.limit_arc(limiter, Arc::new(key))
    }

    /// Adds a limiter with a shared key extractor.
    pub fn limit_arc(mut self, limiter: Limiter, key: Arc<dyn KeyExtractor>) -> Self {
        self.limits.push((limiter, key));
        self
    }

    /// How several limiters combine (default [`CompositeMode::AllMustPass`]).
    pub fn mode(mut self, mode: CompositeMode) -> Self {
        self.mode = mode;
        self
    }

    /// Limits only paths matching `pattern` (and those of other `include`s).
    pub fn include(mut self, pattern: impl Into<String>) -> Self {
        self.include.push(pattern.into());
        self
    }

    /// Never limits paths matching `pattern`; exclusions win over inclusions.
    pub fn exclude(mut self, pattern: impl Into<String>) -> Self {
        self.exclude.push(pattern.into());
        self
    }

    /// Also sends `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
    /// (default off).
    pub fn legacy_headers(mut self, enabled: bool) -> Self {
        self.legacy_headers = enabled;
        self
    }

    /// The layer.
    pub fn build(self) -> Result<RateLimitLayer, BuildError> {
        let Some((first, _)) = self.limits.first() else {
            return Err(BuildError::NoLimiters);
        };
        let store = store_ptr(first.store());
        for (i, (limiter, _)) in self.limits.iter().enumerate() {
            if store_ptr(limiter.store()) != store {
                return Err(BuildError::MixedStores {
                    first: first.name().to_string(),
                    other: limiter.name().to_string(),
                });
            }
            if self.limits[..i]
                .iter()
                .any(|(other, _)| other.name() == limiter.name())
            {
                return Err(BuildError::DuplicateLimiter(limiter.name().to_string()));
            }
        }
        let parse = |patterns: Vec<String>| {
            patterns
                .iter()
                .map(|p| PathPattern::parse(p))
                .collect::<Result<Vec<_>, _>>()
        };
        let include = parse(self.include)?;
        let exclude = parse(self.exclude)?;
        let timeout = self
            .limits
            .iter()
            .map(|(limiter, _)| limiter.timeout())
            .min()
            .unwrap_or(Duration::ZERO);
        let limits = self
            .limits
            .into_iter()
            .map(|(limiter, key)| Limit::new(limiter, key))
            .collect::<Vec<Limit>>();
        let policy_header =
            response::policy_header(limits.iter().map(|limit| limit.policy.as_str()));
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                policy_header,
                limits,
                mode: self.mode,
                timeout,
                include,
                exclude,
                legacy_headers: self.legacy_headers,
            }),
        })
    }
}

/// The address of a store, to tell whether two limiters share it.
fn store_ptr(store: &Arc<dyn Store>) -> *const () {
    Arc::as_ptr(store).cast::<()>()
}

/// A service that rate-limits requests before calling `S`; made by [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> RateLimit<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the limiter.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if !self.shared.applies_to(request.uri().path()) {
            return ResponseFuture {
                state: State::Calling {
                    future: self.inner.call(request),
                    headers: None,
                },
            };
        }
        let keys = {
            let parts = RequestParts::of(&request);
            match self.shared.limits.as_slice() {
                [limit] => Keys::One(limit.key.extract(&parts)),
                limits => Keys::Many(limits.iter().map(|l| l.key.extract(&parts)).collect()),
            }
        };
        let state = match self.shared.decide_now(keys.as_slice()) {
            // Decided at once (the memory store): the service polled ready is called
            // right away, so no clone of it is needed.
            Some(Outcome::Pass(headers)) => State::Calling {
                future: self.inner.call(request),
                headers,
            },
            Some(Outcome::Answer(response)) => State::Answered {
                response: Some(response),
            },
            None => {
                // The call waits for the store: the service that was polled ready goes
                // with this request, and `self` keeps a fresh clone, to be polled ready
                // before the next call.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                State::Checking {
                    check: Box::pin(Arc::clone(&self.shared).decide(keys)),
                    pending: Some((inner, request)),
                }
            }
        };
        ResponseFuture { state }
    }
}

pin_project! {
    /// The response future of [`RateLimit`]: the limit check, then the inner call.
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S::Future, S, Request<ReqBody>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, R> {
        Checking {
            check: CheckFuture,
            pending: Option<(S, R)>,
        },
        Calling {
            #[pin]
            future: F,
            headers: Option<QuotaHeaders>,
        },
        Answered {
            response: Option<Response<Body>>,
        },
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            State::Checking { .. } => "ResponseFuture::Checking",
            State::Calling { .. } => "ResponseFuture::Calling",
            State::Answered { .. } => "ResponseFuture::Answered",
        })
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Checking { check, pending } => {
                    let headers = match ready!(check.as_mut().poll(cx)) {
                        Outcome::Pass(headers) => headers,
                        Outcome::Answer(response) => return Poll::Ready(Ok(response)),
                    };
                    let Some((mut inner, request)) = pending.take() else {
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    let future = inner.call(request);
                    state.set(State::Calling { future, headers });
                }
                StateProj::Calling { future, headers } => {
                    let response = ready!(future.poll(cx))?;
                    let mut response = response.map(Body::new);
                    if let Some(extra) = headers.take() {
                        extra.apply(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Answered { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .unwrap_or_else(polled_after_completion)));
                }
            }
        }
    }
}

/// What a future polled again after answering returns, rather than panicking.
fn polled_after_completion() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() -> Result<(), BuildError> {
        let api = PathPattern::parse("/api/*")?;
        assert!(api.matches("/api/"));
        assert!(api.matches("/api/users/7"));
        assert!(!api.matches("/api"));
        assert!(!api.matches("/apix"));
        let login = PathPattern::parse("/login")?;
        assert!(login.matches("/login"));
        assert!(!login.matches("/login/x"));
        assert!(PathPattern::parse("*")?.matches("/anything"));
        assert!(PathPattern::parse("/a*b").is_err());
        assert!(PathPattern::parse("login").is_err());
        assert!(PathPattern::parse("/a/**").is_err());
        Ok(())
    }
}
