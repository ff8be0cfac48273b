//! Inbound limits from the `[server]` section of `httpower.toml`.
//!
//! Each `[[server.routes]]` rule becomes one [`RateLimitLayer`]: its limiters (named
//! `[limiters.X]`, on the stores they name, so two instances reading the same file
//! share their Redis budgets), its `mode`, its `include` / `exclude` paths and its
//! `key` — or `keys`, one per limiter, for a login limited by address *and* by
//! credential. Every rule whose paths match a request applies, in the order of the file;
//! the first denial answers.
//!
//! ```
//! use httpower::config::Config;
//! use httpower::stores::Stores;
//! use httpower_tower::config::InboundLimits;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_toml_str(r#"
//!     [limiters.login_ip]
//!     algorithm = "sliding_window"
//!     limit = 10
//!     window_seconds = 300
//!
//!     [server]
//!     trusted_proxies = ["127.0.0.1/32"]
//!
//!     [[server.routes]]
//!     include = ["/login"]
//!     limiters = ["login_ip"]
//! "#)?;
//! let limits = InboundLimits::from_config(&config, &Stores::new(&config))?;
//! let app: axum::Router = limits.apply(axum::Router::new());
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::str::FromStr;
use std::sync::Arc;

use http::header::HeaderName;
use httpower::config::{Config, ConfigError, RouteKey, ServerSettings};
use httpower::stores::Stores;

use crate::extract::{GlobalKey, KeyExtractor};
use crate::key::{ClientIp, HeaderKey, PeerIp};
use crate::layer::{BuildError, RateLimitLayer};

/// The `[server]` section could not be turned into layers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerConfigError {
    /// A limiter or store of a rule is misconfigured (the error names the key path).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A rule's `key = "header:NAME"` names no valid header.
    #[error("server.routes[{route}].key: `{name}` is not a valid header name")]
    InvalidHeader {
        /// The rule's index.
        route: usize,
        /// The header name given.
        name: String,
    },
    /// A rule's limiters cannot form one layer (different stores, a duplicate, a bad
    /// path pattern).
    #[error("server.routes[{route}]: {source}")]
    Layer {
        /// The rule's index.
        route: usize,
        /// Why.
        source: BuildError,
    },
}

/// The key extractor for one limiter of rule `route`.
fn key_extractor(
    key: &RouteKey,
    route: usize,
    client_ip: &ClientIp,
) -> Result<Arc<dyn KeyExtractor>, ServerConfigError> {
    Ok(match key {
        RouteKey::ClientIp => Arc::new(client_ip.clone()),
        RouteKey::PeerIp => Arc::new(PeerIp::new()),
        RouteKey::Global => Arc::new(GlobalKey::default()),
        RouteKey::Header(name) => {
            let header =
                HeaderName::from_str(name).map_err(|_| ServerConfigError::InvalidHeader {
                    route,
                    name: name.clone(),
                })?;
            // A request without the header is keyed by its address rather than sharing
            // one anonymous budget.
            Arc::new(HeaderKey::new(header).or_else(client_ip.clone()))
        }
    })
}

/// The layers of every `[[server.routes]]` rule, in file order. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct InboundLimits {
    layers: Vec<RateLimitLayer>,
}

impl InboundLimits {
    /// Builds one layer per rule of `config`'s `[server]` section, with limiters on the
    /// stores of `stores` (build `stores` once per process and share it, so every
    /// rule naming a store uses the same connection).
    pub fn from_config(
        config: &Config,
        stores: &Stores,
    ) -> Result<InboundLimits, ServerConfigError> {
        let server: &ServerSettings = config.server();
        let client_ip = ClientIp::new(server.trusted_proxies.iter().copied());
        let mut layers = Vec::with_capacity(server.routes.len());
        for (index, route) in server.routes.iter().enumerate() {
            let mut builder = RateLimitLayer::builder().mode(route.mode);
            for (name, key) in route.limiters.iter().zip(&route.keys) {
                let key = key_extractor(key, index, &client_ip)?;
                builder = builder.limit_arc(config.limiter_on(name, stores)?, key);
            }
            for pattern in &route.include {
                builder = builder.include(pattern.clone());
            }
            for pattern in &route.exclude {
                builder = builder.exclude(pattern.clone());
            }
            let layer = builder.build().map_err(|source| ServerConfigError::Layer {
                route: index,
                source,
            })?;
            layers.push(layer);
        }
        Ok(InboundLimits { layers })
    }

    /// The layers, one per rule, in file order.
    pub fn layers(&self) -> &[RateLimitLayer] {
        &self.layers
    }

    /// Whether the section has no rules.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// `router` with every rule's layer, the first rule outermost (checked first).
    pub fn apply<S>(&self, router: axum::Router<S>) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.layers
            .iter()
            .rev()
            .fold(router, |router, layer| router.layer(layer.clone()))
    }
}
