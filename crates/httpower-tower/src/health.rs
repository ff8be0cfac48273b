//! Ready-to-mount `/health` and `/metrics` handlers.
//!
//! `/health` answers 200 when every registered store is reachable and 503 otherwise,
//! with a JSON body a dashboard or an on-call engineer can read: each store's
//! reachability and probe latency, and each client's circuit breakers with their state.
//! An open breaker does not make the service unhealthy (the dependency is down, not
//! this service, and restarting it would not help); an unreachable limiter store does,
//! since fail-closed limiters deny while it is down. `/metrics` renders the Prometheus
//! exposition of [`httpower::observe::prometheus`].
//!
//! ```
//! use std::sync::Arc;
//! use axum::Router;
//! use httpower_core::store::MemoryStore;
//! use httpower_tower::health::Health;
//!
//! let health = Health::new().store("memory", Arc::new(MemoryStore::new()));
//! let app: Router = Router::new().merge(health.router());
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use httpower::observe::prometheus::PrometheusHandle;
use httpower_core::store::Store;
use serde_json::{json, Value};

/// How long one store probe may take before the store counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What `/health` reports on. Cheap to clone.
#[derive(Clone, Default)]
pub struct Health {
    stores: Vec<(String, Arc<dyn Store>)>,
    clients: Vec<httpower::Client>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field(
                "stores",
                &self.stores.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl Health {
    /// Nothing registered yet: healthy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports on `store` under `name`; an unreachable store makes `/health` 503.
    pub fn store(mut self, name: impl Into<String>, store: Arc<dyn Store>) -> Self {
        self.stores.push((name.into(), store));
        self
    }

    /// Reports the state of every breaker of `client`.
    pub fn client(mut self, client: &httpower::Client) -> Self {
        self.clients.push(client.clone());
        self
    }

    /// Probes everything: the status and the JSON body of `/health`.
    pub async fn check(&self) -> (StatusCode, Value) {
        let mut healthy = true;
        let mut stores = serde_json::Map::new();
        for (name, store) in &self.stores {
            let probe = tokio::time::timeout(PROBE_TIMEOUT, store.health()).await;
            let entry = match probe {
                Ok(Ok(health)) => {
                    healthy &= health.reachable;
                    json!({
                        "reachable": health.reachable,
                        "latency_ms": health.latency.as_secs_f64() * 1000.0,
                        "detail": health.detail,
                    })
                }
                Ok(Err(err)) => {
                    healthy = false;
                    json!({
                        "reachable": false,
                        "latency_ms": Value::Null,
                        "detail": err.to_string(),
                    })
                }
                Err(_) => {
                    healthy = false;
                    json!({
                        "reachable": false,
                        "latency_ms": PROBE_TIMEOUT.as_secs_f64() * 1000.0,
                        "detail": "probe timed out",
                    })
                }
            };
            stores.insert(name.clone(), entry);
        }
        let mut breakers = serde_json::Map::new();
        for client in &self.clients {
            let Some(registry) = client.breakers() else {
                continue;
            };
            let mut states = serde_json::Map::new();
            for (key, snapshot) in registry.snapshots() {
                states.insert(
                    key,
                    json!({
                        "state": snapshot.state.to_string(),
                        "failures": snapshot.failures,
                        "calls": snapshot.calls,
                        "failure_rate": snapshot.failure_rate,
                        "retry_after_ms": snapshot.retry_after.map(|d| d.as_millis() as u64),
                    }),
                );
            }
            breakers.insert(client.name().to_owned(), Value::Object(states));
        }
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let body = json!({
            "status": if healthy { "ok" } else { "unavailable" },
            "stores": stores,
            "breakers": breakers,
        });
        (status, body)
    }

    /// A router serving `GET /health`.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        Router::new()
            .route("/health", get(health_handler))
            .with_state(self)
    }
}

async fn health_handler(State(health): State<Health>) -> Response {
    let (status, body) = health.check().await;
    (status, Json(body)).into_response()
}

/// A router serving `GET /metrics`: the Prometheus text exposition of `handle`.
pub fn metrics_router<S: Clone + Send + Sync + 'static>(handle: PrometheusHandle) -> Router<S> {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(handle)
}

async fn metrics_handler(State(handle): State<PrometheusHandle>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
