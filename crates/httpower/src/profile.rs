//! Clients built from the configuration file: `[clients.NAME]` merged with its preset
//! and the global sections.

use std::sync::Arc;

use httpower_core::clock::{Clock, MonotonicClock};
use httpower_core::store::{Limiter, MemoryStore, Store};

use crate::client::{Client, ClientBuilder};
use crate::config::{ClientSettings, Config, ConfigError, LogLevel};
use crate::error::{Error, Reason};
use crate::observe::LogOptions;
use crate::sanitize::Sanitizer;
use crate::stores::Stores;

impl From<ConfigError> for Error {
    fn from(err: ConfigError) -> Self {
        let reason = Reason::Config {
            path: err.path().to_owned(),
            expected: err.expected().to_owned(),
            found: err.found().to_owned(),
        };
        Error::with_source(reason, err)
    }
}

impl ClientBuilder {
    /// A builder for the client `name` of `config` (`[clients.NAME]`), on the process's
    /// monotonic clock. Further builder calls override the file.
    pub fn from_config(config: &Config, name: &str) -> Result<Self, Error> {
        Self::from_config_with_clock(config, name, MonotonicClock)
    }

    /// [`from_config`](Self::from_config) with every policy on `clock`.
    pub fn from_config_with_clock(
        config: &Config,
        name: &str,
        clock: impl Clock + Clone,
    ) -> Result<Self, Error> {
        let stores = Stores::with_clock(config, clock.clone());
        Self::from_config_with_stores(config, name, &stores, clock)
    }

    /// [`from_config_with_clock`](Self::from_config_with_clock) with the limiter's
    /// store taken from `stores`: clients built from the same registry share one store
    /// (and one Redis connection) per `store_id`.
    pub fn from_config_with_stores(
        config: &Config,
        name: &str,
        stores: &Stores,
        clock: impl Clock + Clone,
    ) -> Result<Self, Error> {
        let settings = config.client(name)?;
        let store = match &settings.rate_limit {
            Some(rate_limit) if rate_limit.limiter.enabled => {
                Some(stores.get(&rate_limit.limiter.store_id)?)
            }
            _ => None,
        };
        Self::from_settings_with_store(&settings, clock, store)
    }

    /// A builder from resolved settings (see [`Config::client`]). Limiter state goes to
    /// `store`, or to a memory store of the client's own when `None`.
    pub fn from_settings_with_store(
        settings: &ClientSettings,
        clock: impl Clock + Clone,
        store: Option<Arc<dyn Store>>,
    ) -> Result<Self, Error> {
        let mut builder = ClientBuilder::new().clock(clock.clone());
        if let Some(url) = &settings.base_url {
            builder = builder.base_url(url.clone());
        }
        for (name, value) in &settings.headers {
            builder = builder.default_header(name.clone(), value.clone());
        }

        let timeouts = &settings.timeouts;
        if let Some(write) = timeouts.write {
            // reqwest has no separate write timeout; accepting the key and ignoring it
            // would be a silent no-op.
            return Err(Error::new(Reason::Config {
                path: format!("clients.{}.timeouts.write", settings.name),
                expected: "no write timeout (writes are bounded by the attempt timeout)".to_owned(),
                found: crate::config::format_duration(write),
            }));
        }
        builder = builder.set_timeouts(
            timeouts.connect,
            timeouts.read,
            timeouts.pool,
            timeouts.attempt,
            timeouts.total,
        );

        let retry = &settings.retry;
        builder = if retry.enabled {
            let policy = retry
                .to_policy_builder(clock.clone())?
                .build()
                .map_err(|err| Error::with_source(Reason::Transport, err))?;
            builder
                .retry(policy)
                .retry_on_status(retry.retry_on_status.iter().copied())
                .retry_safe(retry.retry_safe)
                .retry_after_on_any_status(retry.retry_after_on_any_status)
        } else {
            builder.no_retry()
        };

        builder = match &settings.circuit_breaker {
            Some(breaker) => {
                let mut builder = builder.circuit_breaker(breaker.to_config()?);
                if let Some(key) = &breaker.key {
                    builder = builder.circuit_breaker_key(key.clone());
                }
                builder
            }
            None => builder.no_circuit_breaker(),
        };

        if let Some(rate_limit) = &settings.rate_limit {
            let limiter = &rate_limit.limiter;
            if limiter.enabled {
                let store =
                    store.unwrap_or_else(|| Arc::new(MemoryStore::with_clock(clock.clone())));
                let built = Limiter::builder(limiter.name.clone(), limiter.to_algorithm()?)
                    .timeout(limiter.timeout)
                    .fail_mode(limiter.fail_mode)
                    .strategy(limiter.strategy)
                    .clock(clock.clone())
                    .build(store);
                builder = builder.rate_limiter(built);
            }
            if let Some(key) = &rate_limit.key {
                builder = builder.rate_limit_key(key.clone());
            }
            builder = builder
                .adaptive_rate_limit(rate_limit.adaptive)
                .server_feedback(rate_limit.server_feedback);
        }

        let logging = &settings.logging;
        builder = builder
            .name(settings.name.clone())
            .logging(LogOptions {
                enabled: logging.enabled,
                level: match logging.level {
                    LogLevel::Trace => tracing::Level::TRACE,
                    LogLevel::Debug => tracing::Level::DEBUG,
                    LogLevel::Info => tracing::Level::INFO,
                    LogLevel::Warn => tracing::Level::WARN,
                    LogLevel::Error => tracing::Level::ERROR,
                },
                headers: logging.log_headers,
                body: logging.log_body,
            })
            .sanitizer(
                Sanitizer::builder()
                    .extra_headers(logging.sanitize_headers.iter().cloned())
                    .extra_fields(logging.sanitize_body_fields.iter().cloned())
                    .max_body_bytes(logging.max_body_bytes)
                    .build(),
            );
        builder = builder
            .dedup(settings.dedup)
            .block_private_ips(settings.block_private_ips)
            .correlation_header(settings.logging.correlation_header.clone());
        if let Some(hosts) = &settings.allowed_hosts {
            builder = builder.allowed_hosts(hosts.iter().cloned());
        }
        Ok(builder)
    }
}

impl Client {
    /// The client `name` of `config`, as configured (`Client::from_config(&config,
    /// "stripe")`).
    pub fn from_config(config: &Config, name: &str) -> Result<Self, Error> {
        ClientBuilder::from_config(config, name)?.build()
    }
}
