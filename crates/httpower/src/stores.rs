//! The stores of a configuration, built once and shared.
//!
//! A [`Stores`] registry turns the `[stores.NAME]` sections of a [`Config`] into live
//! stores. Each named store is created once, on first use, and handed out as the same
//! `Arc<dyn Store>` afterwards: every limiter and every client naming the same
//! `store_id` shares one store — one memory map, or one Redis connection.
//!
//! ```
//! use httpower::config::Config;
//! use httpower::core::rate::Algorithm;
//! use httpower::stores::Stores;
//!
//! let config = Config::from_toml_str(
//!     "[limiters.search]\nalgorithm = \"sliding_window\"\nlimit = 10\nwindow_seconds = 60\n",
//! )?;
//! let stores = Stores::new(&config);
//! let search = config.limiter_on("search", &stores)?;
//! assert_eq!(search.algorithm().limit(), 10);
//! # Ok::<(), httpower::config::ConfigError>(())
//! ```
//!
//! Redis stores (`strategy = "redis"`) need the `redis` cargo feature (on by default).
//! Building one opens no connection: the first decision connects, so a Redis that is
//! down at start-up is handled by each limiter's fail mode.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use httpower_core::clock::{Clock, MonotonicClock};
use httpower_core::store::{Limiter, MemoryStore, Store};
use parking_lot::Mutex;

use crate::config::{Config, ConfigError, LimiterSettings, StoreSettings};

/// The live stores of a configuration, each built once on first use and shared.
///
/// Cloning a `Stores` is cheap and the clones share the same stores.
#[derive(Clone)]
pub struct Stores {
    inner: Arc<Inner>,
}

struct Inner {
    settings: BTreeMap<String, StoreSettings>,
    clock: Arc<dyn Clock>,
    built: Mutex<BTreeMap<String, Built>>,
}

#[derive(Clone)]
struct Built {
    store: Arc<dyn Store>,
    #[cfg(feature = "redis")]
    redis: Option<Arc<httpower_redis::RedisStore>>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let built: Vec<String> = self.inner.built.lock().keys().cloned().collect();
        f.debug_struct("Stores")
            .field("defined", &self.inner.settings.keys().collect::<Vec<_>>())
            .field("built", &built)
            .finish()
    }
}

impl Stores {
    /// The stores of `config`, memory stores on the process's monotonic clock.
    pub fn new(config: &Config) -> Stores {
        Stores::with_clock(config, MonotonicClock)
    }

    /// The stores of `config`, memory stores on `clock`.
    pub fn with_clock(config: &Config, clock: impl Clock) -> Stores {
        let settings = config
            .store_names()
            .into_iter()
            .filter_map(|name| Some((name.to_owned(), config.store(name).ok()?)))
            .collect();
        Stores {
            inner: Arc::new(Inner {
                settings,
                clock: Arc::new(clock),
                built: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The names of the stores the configuration defines (with the built-in `memory`).
    pub fn names(&self) -> Vec<&str> {
        self.inner.settings.keys().map(String::as_str).collect()
    }

    /// The settings of store `name`.
    pub fn settings(&self, name: &str) -> Result<&StoreSettings, ConfigError> {
        self.inner.settings.get(name).ok_or_else(|| {
            ConfigError::unknown_name(
                format!("stores.{name}"),
                "store",
                name,
                self.inner.settings.keys().map(String::as_str),
            )
        })
    }

    /// The store `name`, built on first use; later calls return the same store.
    ///
    /// Errors name the offending key (`stores.NAME.url`, ...) and never contain a
    /// password.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Store>, ConfigError> {
        Ok(self.built(name)?.store)
    }

    /// The Redis store `name`, for what only Redis offers (listing identifiers,
    /// statistics). `Ok(None)` when `name` is a memory store.
    #[cfg(feature = "redis")]
    pub fn redis(
        &self,
        name: &str,
    ) -> Result<Option<Arc<httpower_redis::RedisStore>>, ConfigError> {
        Ok(self.built(name)?.redis)
    }

    /// Builds every defined store (no connection is opened), so that a store whose
    /// settings cannot be honoured is reported before it is needed.
    pub fn build_all(&self) -> Result<(), ConfigError> {
        for name in self.inner.settings.keys() {
            self.built(name)?;
        }
        Ok(())
    }

    /// The limiter described by `settings` on its store (`store_id`): algorithm,
    /// decision timeout, fail mode and over-limit strategy from the settings.
    ///
    /// Errors for a `concurrency` limiter, which has no rate algorithm (see
    /// [`LimiterSettings::max_concurrent`]).
    pub fn limiter(&self, settings: &LimiterSettings) -> Result<Limiter, ConfigError> {
        let algorithm = settings.to_algorithm()?;
        let store = self.get(&settings.store_id)?;
        Ok(Limiter::builder(settings.name.clone(), algorithm)
            .timeout(settings.timeout)
            .fail_mode(settings.fail_mode)
            .strategy(settings.strategy)
            .clock(Arc::clone(&self.inner.clock))
            .build(store))
    }

    fn built(&self, name: &str) -> Result<Built, ConfigError> {
        if let Some(built) = self.inner.built.lock().get(name) {
            return Ok(built.clone());
        }
        let settings = self.settings(name)?;
        let built = match settings {
            StoreSettings::Memory(memory) => Built {
                store: Arc::new(MemoryStore::with_config(
                    memory.to_keyed_config(),
                    Arc::clone(&self.inner.clock),
                )),
                #[cfg(feature = "redis")]
                redis: None,
            },
            #[cfg(feature = "redis")]
            StoreSettings::Redis(redis) => {
                let store = Arc::new(redis::build(name, redis)?);
                Built {
                    store: Arc::clone(&store) as Arc<dyn Store>,
                    redis: Some(store),
                }
            }
            #[cfg(not(feature = "redis"))]
            StoreSettings::Redis(_) => {
                return Err(ConfigError::invalid(
                    format!("stores.{name}.strategy"),
                    "a store this build supports (memory)",
                    "strategy = \"redis\" (this build has no `redis` feature)",
                ))
            }
        };
        // Two threads may race to build the same store; the first one in wins and both
        // hand out its store.
        let mut map = self.inner.built.lock();
        Ok(map.entry(name.to_owned()).or_insert(built).clone())
    }
}

impl Config {
    /// The named limiter `name` (`[limiters.NAME]`) on its store from `stores`.
    ///
    /// Limiters built from the same `stores` share their stores, so two limiters on
    /// `redis_main` use one connection.
    pub fn limiter_on(&self, name: &str, stores: &Stores) -> Result<Limiter, ConfigError> {
        stores.limiter(&self.limiter(name)?)
    }
}

/// Why `max_connections` is accepted but not used by the Redis store.
pub const MAX_CONNECTIONS_UNUSED: &str =
    "accepted, unused: the Redis store multiplexes one connection per node, there is no pool to size";

#[cfg(feature = "redis")]
mod redis {
    use httpower_redis::{RedisConfigError, RedisStore};

    use crate::config::{ConfigError, RedisMode, RedisStoreSettings};

    /// Builds the Redis store `name` from its settings. No connection is opened.
    pub(super) fn build(name: &str, s: &RedisStoreSettings) -> Result<RedisStore, ConfigError> {
        let path = |key: &str| format!("stores.{name}.{key}");
        let tls_ca = check_tls(name, s)?;
        let urls: Vec<String> = match s.mode {
            RedisMode::Single => s.url.iter().cloned().collect(),
            RedisMode::Cluster | RedisMode::Sentinel if s.nodes.is_empty() => {
                s.url.iter().cloned().collect()
            }
            RedisMode::Cluster | RedisMode::Sentinel => s.nodes.clone(),
        };
        let url_key = if s.mode == RedisMode::Single || s.nodes.is_empty() {
            "url"
        } else {
            "nodes"
        };
        let mut builder = match s.mode {
            RedisMode::Single => match urls.first() {
                Some(url) => RedisStore::builder(url.clone()),
                None => {
                    return Err(ConfigError::missing(
                        path("url"),
                        "a redis://, rediss:// or unix:// URL",
                    ))
                }
            },
            RedisMode::Cluster => RedisStore::cluster(urls.iter().cloned()),
            RedisMode::Sentinel => RedisStore::sentinel(
                s.sentinel_master.clone().unwrap_or_default(),
                urls.iter().cloned(),
            ),
        };
        builder = builder
            .name(name)
            .key_prefix(s.key_prefix.clone())
            .command_timeout(s.socket_timeout)
            .connect_timeout(s.socket_connect_timeout)
            .retry_on_timeout(s.retry_on_timeout)
            .health_check_interval(s.health_check_interval);
        if let Some(user) = &s.username {
            builder = builder.username(user.clone());
        }
        if let Some(password) = &s.password {
            builder = builder.password(password.clone());
        }
        if let Some(db) = s.db {
            builder = builder.db(i64::from(db));
        }
        if let Some(pem) = tls_ca {
            builder = builder.tls_ca_certificate(pem);
        }
        builder.build().map_err(|err| {
            let secrets = secrets(s, &urls);
            let scrub = |text: String| {
                secrets.iter().fold(text, |text, secret| {
                    text.replace(secret.as_str(), "[redacted]")
                })
            };
            match err {
                RedisConfigError::InvalidUrl { url, reason } => ConfigError::invalid(
                    path(url_key),
                    "a redis://, rediss:// or unix:// URL",
                    scrub(format!("{url} ({reason})")),
                ),
                RedisConfigError::NoNodes { mode } => ConfigError::missing(
                    path("nodes"),
                    format!("at least one node address in {mode} mode"),
                ),
                RedisConfigError::Invalid { setting, reason } => {
                    let key = if setting == "url" { url_key } else { setting };
                    ConfigError::invalid(path(key), scrub(reason), "a value the store refused")
                }
            }
        })
    }

    /// The passwords that must not reach an error message.
    fn secrets(s: &RedisStoreSettings, urls: &[String]) -> Vec<String> {
        let mut secrets: Vec<String> = s.password.iter().cloned().collect();
        for url in urls.iter().chain(s.url.iter()) {
            if let Ok(parsed) = url::Url::parse(url) {
                if let Some(password) = parsed.password() {
                    secrets.push(password.to_owned());
                    secrets.push(percent_decode(password));
                }
            }
        }
        secrets.retain(|s| !s.is_empty());
        secrets
    }

    /// `%XX` escapes decoded (a URL's password as the server sees it).
    fn percent_decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `ssl_cert_reqs` and `ssl_ca_certs`: the store always verifies `rediss://`
    /// servers, against the CA bundle in `ssl_ca_certs` when given (read here, so a
    /// missing file is a configuration error), otherwise the built-in webpki roots.
    fn check_tls(name: &str, s: &RedisStoreSettings) -> Result<Option<Vec<u8>>, ConfigError> {
        let tls = s
            .url
            .iter()
            .chain(s.nodes.iter())
            .any(|u| u.starts_with("rediss://"));
        let ca = match &s.ssl_ca_certs {
            None => None,
            Some(path) if !tls => {
                return Err(ConfigError::invalid(
                    format!("stores.{name}.ssl_ca_certs"),
                    "no CA bundle for redis:// URLs (TLS is off); use a rediss:// URL",
                    format!("\"{path}\""),
                ))
            }
            Some(path) => Some(std::fs::read(path).map_err(|err| {
                ConfigError::invalid(
                    format!("stores.{name}.ssl_ca_certs"),
                    "a readable PEM file of CA certificates",
                    format!("\"{path}\" ({err})"),
                )
            })?),
        };
        match s.ssl_cert_reqs.as_deref() {
            None => Ok(ca),
            Some("required") if tls => Ok(ca),
            Some("none" | "optional") if !tls => Ok(ca),
            Some(value @ ("none" | "optional")) => Err(ConfigError::invalid(
                format!("stores.{name}.ssl_cert_reqs"),
                "\"required\" (the Redis store always verifies rediss:// certificates)",
                format!("\"{value}\""),
            )),
            Some(value) => Err(ConfigError::invalid(
                format!("stores.{name}.ssl_cert_reqs"),
                "no ssl_cert_reqs for redis:// URLs (TLS is off, so there is no \
                 certificate to require); use a rediss:// URL",
                format!("\"{value}\""),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use httpower_core::rate::Algorithm;

    const TOML: &str = r#"
[stores.redis_main]
strategy = "redis"
url = "redis://:hunter2@127.0.0.1:1/0"
key_prefix = "t"
max_connections = 20
socket_timeout = 2

[stores.local]
strategy = "memory"

[limiters.a]
store_id = "redis_main"
algorithm = "sliding_window"
limit = 10
window_seconds = 300

[limiters.b]
store_id = "redis_main"
algorithm = "gcra"
rate_per_second = 5.0

[limiters.c]
store_id = "local"
algorithm = "fixed_window"
limit = 3
window_seconds = 60

[limiters.conc]
store_id = "local"
algorithm = "concurrency"
max_concurrent = 4
"#;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text).unwrap()
    }

    #[test]
    fn a_named_store_is_built_once_and_shared() {
        let config = config(TOML);
        let stores = Stores::new(&config);
        let c1 = config.limiter_on("c", &stores).unwrap();
        let c2 = config.limiter_on("c", &stores).unwrap();
        assert!(Arc::ptr_eq(c1.store(), c2.store()));
        assert!(Arc::ptr_eq(c1.store(), &stores.get("local").unwrap()));
        assert!(!Arc::ptr_eq(c1.store(), &stores.get("memory").unwrap()));
        assert_eq!(c1.algorithm().limit(), 3);
    }

    #[test]
    fn limiter_settings_reach_the_limiter() {
        let config = config(
            "[limiters.x]\nalgorithm = \"sliding_window\"\nlimit = 5\nwindow_seconds = 10\n\
             timeout = 0.25\nfail_closed = true\nstrategy = \"wait\"\nmax_wait_time = 300\n",
        );
        let limiter = config.limiter_on("x", &Stores::new(&config)).unwrap();
        assert_eq!(limiter.name().as_ref(), "x");
        assert_eq!(limiter.timeout(), std::time::Duration::from_millis(250));
        assert_eq!(limiter.fail_mode(), httpower_core::store::FailMode::Closed);
        assert_eq!(
            limiter.strategy(),
            httpower_core::rate::Strategy::Wait {
                max_wait: std::time::Duration::from_millis(300)
            }
        );
    }

    #[test]
    fn unknown_names_and_concurrency_limiters_are_typed_errors() {
        let config = config(TOML);
        let stores = Stores::new(&config);
        assert_eq!(stores.get("nope").unwrap_err().path(), "stores.nope");
        assert_eq!(
            config.limiter_on("nope", &stores).unwrap_err().path(),
            "limiters.nope"
        );
        assert_eq!(
            config.limiter_on("conc", &stores).unwrap_err().path(),
            "limiters.conc.algorithm"
        );
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_stores_are_built_without_connecting_and_shared() {
        let config = config(TOML);
        let stores = Stores::new(&config);
        let a = config.limiter_on("a", &stores).unwrap();
        let b = config.limiter_on("b", &stores).unwrap();
        assert!(Arc::ptr_eq(a.store(), b.store()));
        assert_eq!(a.store().name(), "redis_main");
        let redis = stores.redis("redis_main").unwrap().unwrap();
        assert_eq!(redis.key_prefix(), "t");
        assert_eq!(redis.topology(), "single");
        assert!(stores.redis("local").unwrap().is_none());
        stores.build_all().unwrap();
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_modes_map_to_topologies() {
        let cluster = config(
            "[stores.c]\nstrategy = \"redis\"\nmode = \"cluster\"\n\
             nodes = [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7001\"]\n",
        );
        let stores = Stores::new(&cluster);
        assert_eq!(stores.redis("c").unwrap().unwrap().topology(), "cluster");
        let sentinel = config(
            "[stores.s]\nstrategy = \"redis\"\nmode = \"sentinel\"\nsentinel_master = \"m\"\n\
             nodes = [\"redis://127.0.0.1:26379\"]\ndb = 2\npassword = \"pw\"\n",
        );
        let stores = Stores::new(&sentinel);
        assert_eq!(stores.redis("s").unwrap().unwrap().topology(), "sentinel");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_errors_name_the_key_and_hide_the_password() {
        let cases = [
            ("url = \"redis://127.0.0.1\"\nkey_prefix = \"a{b}\"\n", "stores.r.key_prefix"),
            (
                "url = \"redis://:hunter2@127.0.0.1\"\nssl_cert_reqs = \"required\"\n",
                "stores.r.ssl_cert_reqs",
            ),
            (
                "url = \"rediss://:hunter2@127.0.0.1\"\nssl_cert_reqs = \"none\"\n",
                "stores.r.ssl_cert_reqs",
            ),
            (
                "url = \"rediss://127.0.0.1\"\nssl_ca_certs = \"/etc/ca.pem\"\n",
                "stores.r.ssl_ca_certs",
            ),
            (
                "mode = \"cluster\"\nnodes = [\"redis://127.0.0.1:7000\"]\ndb = 3\npassword = \"hunter2\"\n",
                "stores.r.db",
            ),
        ];
        for (body, path) in cases {
            let config = config(&format!("[stores.r]\nstrategy = \"redis\"\n{body}"));
            let err = Stores::new(&config).get("r").unwrap_err();
            assert_eq!(err.path(), path, "{err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
        let ok = config(
            "[stores.r]\nstrategy = \"redis\"\nurl = \"rediss://127.0.0.1\"\nssl_cert_reqs = \"required\"\n",
        );
        Stores::new(&ok).get("r").unwrap();
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn without_the_feature_redis_stores_are_refused() {
        let config = config(TOML);
        let err = Stores::new(&config).get("redis_main").unwrap_err();
        assert_eq!(err.path(), "stores.redis_main.strategy");
    }
}
