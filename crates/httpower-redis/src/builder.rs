//! Building a [`RedisStore`]: topology, credentials, timeouts, key prefix.

use std::sync::Arc;
use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use crate::store::RedisStore;

/// A Redis store could not be built from its settings. Each variant names the setting
/// that was wrong; URLs are shown without their password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisConfigError {
    /// A URL could not be parsed or uses an unsupported scheme.
    #[error("invalid Redis URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, its password removed.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// Cluster or Sentinel mode without any node address.
    #[error("{mode} mode needs at least one node address")]
    NoNodes {
        /// `cluster` or `sentinel`.
        mode: &'static str,
    },
    /// A setting had a value the store cannot use.
    #[error("invalid `{setting}`: {reason}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

/// Where the store's Redis is.
#[derive(Debug, Clone)]
pub(crate) enum Topology {
    Single {
        url: ConnectionInfo,
    },
    Cluster {
        nodes: Vec<ConnectionInfo>,
    },
    Sentinel {
        master: String,
        sentinels: Vec<ConnectionInfo>,
    },
}

impl Topology {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Topology::Single { .. } => "single",
            Topology::Cluster { .. } => "cluster",
            Topology::Sentinel { .. } => "sentinel",
        }
    }
}

/// The validated settings a store runs with.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) name: String,
    pub(crate) topology: Topology,
    /// Credentials and database for the data nodes (Sentinel and Cluster modes).
    pub(crate) redis_info: RedisConnectionInfo,
    pub(crate) key_prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) retry_on_timeout: bool,
    pub(crate) health_check_interval: Duration,
    pub(crate) deny_cache_capacity: usize,
    /// A CA (PEM) trusted for `rediss://` instead of the bundled web roots.
    pub(crate) tls_ca: Option<Vec<u8>>,
}

impl Settings {
    /// The certificates for a TLS connection, when a CA of its own is configured.
    pub(crate) fn tls_certificates(&self) -> Option<redis::TlsCertificates> {
        self.tls_ca.as_ref().map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        })
    }
}

#[derive(Debug, Clone)]
enum Mode {
    Single(String),
    Cluster(Vec<String>),
    Sentinel {
        master: String,
        sentinels: Vec<String>,
    },
}

/// Builds a [`RedisStore`]. Start with [`RedisStore::builder`] (one server),
/// [`RedisStore::cluster`] or [`RedisStore::sentinel`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    mode: Mode,
    name: String,
    key_prefix: String,
    username: Option<String>,
    password: Option<String>,
    db: Option<i64>,
    connect_timeout: Duration,
    command_timeout: Duration,
    retry_on_timeout: bool,
    health_check_interval: Duration,
    deny_cache_capacity: usize,
    tls_ca: Option<Vec<u8>>,
    #[cfg(feature = "conformance")]
    manual_time: Option<crate::store::ManualServerTime>,
}

/// Removes the password from a URL for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme + 3 => {
            format!("{}[redacted]{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn parse(url: &str) -> Result<ConnectionInfo, RedisConfigError> {
    let supported = ["redis://", "rediss://", "redis+unix://", "unix://"];
    if !supported.iter().any(|s| url.starts_with(s)) {
        return Err(RedisConfigError::InvalidUrl {
            url: redact(url),
            reason: "expected a redis://, rediss:// or unix:// URL".into(),
        });
    }
    url.into_connection_info()
        .map_err(|err| RedisConfigError::InvalidUrl {
            url: redact(url),
            reason: err.to_string(),
        })
}

impl RedisStoreBuilder {
    fn new(mode: Mode) -> RedisStoreBuilder {
        RedisStoreBuilder {
            mode,
            name: "redis".into(),
            key_prefix: "httpower".into(),
            username: None,
            password: None,
            db: None,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            retry_on_timeout: false,
            health_check_interval: Duration::ZERO,
            deny_cache_capacity: 10_000,
            tls_ca: None,
            #[cfg(feature = "conformance")]
            manual_time: None,
        }
    }

    pub(crate) fn single(url: impl Into<String>) -> Self {
        Self::new(Mode::Single(url.into()))
    }

    pub(crate) fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(Mode::Cluster(nodes.into_iter().map(Into::into).collect()))
    }

    pub(crate) fn sentinel<I, S>(master: impl Into<String>, sentinels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(Mode::Sentinel {
            master: master.into(),
            sentinels: sentinels.into_iter().map(Into::into).collect(),
        })
    }

    /// The store's name in logs, metrics and health reports (default `redis`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The prefix of every key (default `httpower`). Stores sharing a Redis with
    /// different prefixes never see each other's state.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The user name, overriding the URL's.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password, overriding the URL's.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The database number, overriding the URL's (not available on Cluster).
    pub fn db(mut self, db: i64) -> Self {
        self.db = Some(db);
        self
    }

    /// How long opening a connection may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one command may take (default 5 s). Limiter decisions are bounded
    /// further by each limiter's own `timeout` (default 100 ms).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Retries a command once when it timed out (default false). Within a limiter's
    /// decision timeout, the retry only happens when time is left.
    pub fn retry_on_timeout(mut self, retry: bool) -> Self {
        self.retry_on_timeout = retry;
        self
    }

    /// Pings Redis in the background at this interval so an outage is known before a
    /// request needs a decision, and keeps the last result for
    /// [`RedisStore::last_health`] (default: off).
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval = interval;
        self
    }

    /// How many over-limit keys the local deny cache remembers (default 10,000; `0`
    /// turns it off). A key that Redis denied is denied locally until its retry time,
    /// without a round trip.
    pub fn deny_cache_capacity(mut self, capacity: usize) -> Self {
        self.deny_cache_capacity = capacity;
        self
    }

    /// Trusts the CA certificate(s) in `pem` for `rediss://` connections instead of the
    /// bundled web roots (a private CA, as most Redis deployments use). Single server and
    /// Cluster; a Sentinel deployment with a private CA is refused at build time.
    pub fn tls_ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca = Some(pem.into());
        self
    }

    /// Tests only: the scripts read their time from `time` instead of the server's
    /// `TIME`, so decisions are deterministic. Turns the deny cache off.
    #[cfg(feature = "conformance")]
    pub fn manual_time(mut self, time: crate::store::ManualServerTime) -> Self {
        self.manual_time = Some(time);
        self.deny_cache_capacity = 0;
        self
    }

    /// Validates the settings and builds the store. No connection is opened yet: the
    /// first decision connects, so a Redis that is down at start-up is handled by the
    /// limiters' fail modes instead of failing the service's start.
    pub fn build(self) -> Result<RedisStore, RedisConfigError> {
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}']) {
            return Err(RedisConfigError::Invalid {
                setting: "key_prefix",
                reason: format!(
                    "`{}` must be non-empty and free of braces (they form the Cluster hash tag)",
                    self.key_prefix
                ),
            });
        }
        for (setting, value) in [
            ("socket_connect_timeout", self.connect_timeout),
            ("socket_timeout", self.command_timeout),
        ] {
            if value.is_zero() {
                return Err(RedisConfigError::Invalid {
                    setting,
                    reason: "must be above zero".into(),
                });
            }
        }
        let apply = |info: RedisConnectionInfo| {
            let mut info = info;
            if let Some(user) = &self.username {
                info = info.set_username(user);
            }
            if let Some(password) = &self.password {
                info = info.set_password(password);
            }
            if let Some(db) = self.db {
                info = info.set_db(db);
            }
            info
        };
        let nodes = |urls: &[String], mode: &'static str| {
            if urls.is_empty() {
                return Err(RedisConfigError::NoNodes { mode });
            }
            urls.iter().map(|u| parse(u)).collect::<Result<Vec<_>, _>>()
        };
        let (topology, redis_info) = match &self.mode {
            Mode::Single(url) => {
                let info = parse(url)?;
                let redis = apply(info.redis_settings().clone());
                let info = info.set_redis_settings(redis.clone());
                (Topology::Single { url: info }, redis)
            }
            Mode::Cluster(urls) => {
                if self.db.is_some_and(|db| db != 0) {
                    return Err(RedisConfigError::Invalid {
                        setting: "db",
                        reason: "Redis Cluster has only database 0".into(),
                    });
                }
                let infos = nodes(urls, "cluster")?;
                let redis = apply(infos[0].redis_settings().clone());
                let infos = infos
                    .into_iter()
                    .map(|i| i.set_redis_settings(redis.clone()))
                    .collect();
                (Topology::Cluster { nodes: infos }, redis)
            }
            Mode::Sentinel { master, sentinels } => {
                if master.is_empty() {
                    return Err(RedisConfigError::Invalid {
                        setting: "sentinel_master",
                        reason: "the name of the monitored primary is missing".into(),
                    });
                }
                let infos = nodes(sentinels, "sentinel")?;
                // The Sentinels' URLs carry the Sentinels' own credentials; the data
                // nodes use the overrides (or none).
                let redis = apply(RedisConnectionInfo::default());
                (
                    Topology::Sentinel {
                        master: master.clone(),
                        sentinels: infos,
                    },
                    redis,
                )
            }
        };
        if self.tls_ca.is_some() && matches!(self.mode, Mode::Sentinel { .. }) {
            return Err(RedisConfigError::Invalid {
                setting: "ssl_ca_certs",
                reason: "a private CA is supported for single-server and Cluster stores, \
                         not (yet) behind Sentinel"
                    .into(),
            });
        }
        let settings = Settings {
            name: self.name,
            topology,
            redis_info,
            key_prefix: self.key_prefix,
            connect_timeout: self.connect_timeout,
            command_timeout: self.command_timeout,
            retry_on_timeout: self.retry_on_timeout,
            health_check_interval: self.health_check_interval,
            deny_cache_capacity: self.deny_cache_capacity,
            tls_ca: self.tls_ca,
        };
        #[cfg(feature = "conformance")]
        let manual = self.manual_time.map(|m| m.0);
        #[cfg(not(feature = "conformance"))]
        let manual = None;
        RedisStore::from_settings(Arc::new(settings), manual).map_err(|err| {
            RedisConfigError::Invalid {
                setting: "url",
                reason: err.to_string(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_the_setting() {
        let err = RedisStore::builder("http://localhost:6379")
            .build()
            .unwrap_err();
        assert!(matches!(err, RedisConfigError::InvalidUrl { .. }), "{err}");
        let err = RedisStore::builder("redis://u:secret@127.0.0.1:1/0")
            .key_prefix("a{b")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("key_prefix"), "{err}");
        let err = RedisStore::cluster(Vec::<String>::new())
            .build()
            .unwrap_err();
        assert_eq!(err, RedisConfigError::NoNodes { mode: "cluster" });
        let err = RedisStore::builder("redis://127.0.0.1:1")
            .command_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("socket_timeout"), "{err}");
    }

    #[test]
    fn passwords_never_reach_messages() {
        let err = RedisStore::builder("redis://user:hunter2@[::1:6379")
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(
            redact("rediss://:pw@host:6380/1"),
            "rediss://[redacted]@host:6380/1"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }
}
