//! Configuration files (`httpower.toml`).
//!
//! One TOML file describes the named clients of a service (`[clients.NAME]`), the
//! global defaults they inherit (`[retry]`, `[circuit_breaker]`, `[rate_limit]`,
//! `[logging]`, `[timeouts]`, `[security]`), the stores that hold limiter state
//! (`[stores.NAME]`), the named limiters (`[limiters.NAME]`) and the inbound rules
//! (`[server]`). The full reference is `docs/CONFIG.md`.
//!
//! Loading is strict, because a setting that is silently ignored is worse than an
//! error: unknown keys are errors (with the closest valid key suggested), every value
//! is checked where it is read, references between sections (a limiter's `store_id`, a
//! client's `limiter`) must resolve, and every error names its key path. A limit with
//! settings is on unless it says `enabled = false`.
//!
//! Secrets come from the environment: `${VAR}` and `${VAR:-default}` are expanded in
//! every string value. Durations take a unit (`"250ms"`, `"5s"`, `"1m"`); a bare
//! number is read in the unit the key has always had (seconds for `timeout` of clients
//! and limiters, milliseconds for the retry delays and the breaker `timeout`).
//!
//! ```
//! use std::time::Duration;
//! use httpower::config::Config;
//!
//! let text = r#"
//!     [retry]
//!     max_retries = 5
//!
//!     [clients.stripe]
//!     base_url = "https://api.stripe.com"
//!     profile = "payment_processing"
//!     headers = { Authorization = "Bearer ${STRIPE_API_KEY}" }
//!     circuit_breaker = { failure_threshold = 4 }
//! "#;
//! let vars = |name: &str| (name == "STRIPE_API_KEY").then(|| "sk_test_123".to_owned());
//! let config = Config::parse_with_vars(text, &vars)?;
//!
//! let stripe = config.client("stripe")?;
//! assert_eq!(stripe.headers[0].1, "Bearer sk_test_123");
//! // The client's own key beats the preset, the preset beats the global section.
//! assert_eq!(stripe.circuit_breaker.as_ref().map(|b| b.failure_threshold), Some(4));
//! assert_eq!(stripe.retry.max_retries, 2);
//! assert_eq!(config.defaults().retry.max_retries, 5);
//! assert_eq!(stripe.timeouts.total, Some(Duration::from_secs(90)));
//! // Secrets never reach the rendered configuration.
//! assert!(!config.render_effective().contains("sk_test_123"));
//! # Ok::<(), httpower::config::ConfigError>(())
//! ```

mod duration;
mod error;
mod interpolate;
mod model;
mod path;
mod presets;
mod reader;
mod render;
mod settings;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use httpower_core::clock::MonotonicClock;
use httpower_core::store::CompositeMode;
use ipnet::IpNet;

pub use self::duration::{format_duration, parse_duration};
pub use self::error::{ConfigError, ConfigErrorKind};
pub use self::presets::PRESET_NAMES;
pub use self::settings::{
    AlgorithmKind, BreakerSettings, BudgetSettings, ClientSettings, JitterKind, LimiterSettings,
    LogLevel, LoggingSettings, MemoryStoreSettings, Quantity, RateLimitSettings, RedisMode,
    RedisStoreSettings, RetrySettings, RouteKey, RouteSettings, ServerSettings, StoreSettings,
    TimeoutSettings, DEFAULT_RETRY_STATUSES,
};

use self::duration::BareUnit;
use self::model::{
    BreakerLayer, ClientLayer, Known, LimitLayer, LoggingLayer, RetryLayer, SecurityLayer,
    TimeoutsLayer, BREAKER_KEYS, DEFAULT_STORE, LIMITER_KEYS, LOGGING_KEYS, RATE_LIMIT_KEYS,
    RETRY_KEYS, SECURITY_KEYS,
};
use self::path::join;
use self::reader::{describe, Ctx, Reader};

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "HTTPOWER_CONFIG";
/// The file looked for in the working directory.
pub const DEFAULT_FILE: &str = "httpower.toml";

const ROOT_KEYS: &[&str] = &[
    "retry",
    "circuit_breaker",
    "rate_limit",
    "logging",
    "timeouts",
    "timeout",
    "security",
    "clients",
    "stores",
    "limiters",
    "server",
    "proxy",
];

const CLIENT_KEYS: &[&str] = &[
    "base_url",
    "profile",
    "headers",
    "dedup",
    "circuit_breaker_key",
    "rate_limit_key",
    "retry_safe",
    "timeout",
    "timeouts",
    "retry",
    "circuit_breaker",
    "rate_limit",
    "logging",
    "allowed_hosts",
    "block_private_ips",
];

const MEMORY_STORE_KEYS: &[&str] = &["strategy", "max_keys", "idle_timeout"];
const REDIS_STORE_KEYS: &[&str] = &[
    "strategy",
    "url",
    "mode",
    "nodes",
    "sentinel_master",
    "db",
    "username",
    "password",
    "key_prefix",
    "max_connections",
    "socket_timeout",
    "socket_connect_timeout",
    "retry_on_timeout",
    "health_check_interval",
    "ssl_cert_reqs",
    "ssl_ca_certs",
];
const SERVER_KEYS: &[&str] = &["trusted_proxies", "routes"];
const ROUTE_KEYS: &[&str] = &["include", "exclude", "limiters", "mode", "key", "keys"];

/// A loaded, validated configuration.
///
/// Everything is checked when the configuration is loaded, so the accessors only fail
/// for names the file does not define.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    defaults: ClientSettings,
    clients: BTreeMap<String, ClientSettings>,
    stores: BTreeMap<String, StoreSettings>,
    limiters: BTreeMap<String, LimiterSettings>,
    server: ServerSettings,
    source: Option<PathBuf>,
}

impl Default for Config {
    /// The built-in defaults: no clients, no limiters, the implicit memory store.
    fn default() -> Self {
        Config {
            defaults: ClientSettings::builtin("default"),
            clients: BTreeMap::new(),
            stores: BTreeMap::new(),
            limiters: BTreeMap::new(),
            server: ServerSettings::default(),
            source: None,
        }
    }
}

impl ClientSettings {
    /// The built-in defaults, for a client named `name`.
    fn builtin(name: &str) -> Self {
        ClientSettings {
            name: name.to_owned(),
            profile: None,
            base_url: None,
            headers: Vec::new(),
            timeouts: TimeoutSettings::default(),
            retry: RetrySettings::default(),
            circuit_breaker: Some(BreakerSettings::default()),
            rate_limit: None,
            dedup: false,
            allowed_hosts: None,
            block_private_ips: false,
            logging: LoggingSettings::default(),
        }
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Parses TOML text, expanding `${VAR}` from the process environment.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::parse_with_vars(text, &env_var)
    }

    /// Parses TOML text, expanding `${VAR}` with `vars` (which returns `None` for an
    /// unset variable). Tests and embedders use it to avoid the process environment.
    pub fn parse_with_vars(
        text: &str,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut root: toml::Value = match text.parse::<toml::Table>() {
            Ok(t) => toml::Value::Table(t),
            Err(e) => return Err(syntax_error(text, &e)),
        };
        let mut ctx = Ctx::default();
        interpolate::interpolate_tree(&mut root, "", vars, &mut ctx.expanded)?;
        let reader = Reader::of_value(&root, "", &ctx, ROOT_KEYS)?;
        build(&reader)
    }

    /// Reads and parses the file at `path`, expanding `${VAR}` from the environment.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Self::from_path_with_vars(path, &env_var)
    }

    /// Reads and parses the file at `path`, expanding `${VAR}` with `vars`.
    pub fn from_path_with_vars(
        path: impl AsRef<Path>,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::Io,
                path.display().to_string(),
                "a readable TOML file",
                e.to_string(),
            )
            .in_file(path)
        })?;
        let mut config = Self::parse_with_vars(&text, vars).map_err(|e| e.in_file(path))?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Finds and loads the configuration: `explicit` (a `--config` argument) if given,
    /// else the file named by `HTTPOWER_CONFIG`, else `./httpower.toml` if it exists,
    /// else the built-in defaults. A file that is named but missing is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_vars(explicit, &env_var)
    }

    /// [`load`](Self::load), reading `HTTPOWER_CONFIG` and `${VAR}` through `vars`.
    pub fn load_with_vars(
        explicit: Option<&Path>,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        if let Some(path) = explicit {
            return Self::from_path_with_vars(path, vars);
        }
        if let Some(path) = vars(CONFIG_ENV).filter(|p| !p.trim().is_empty()) {
            return Self::from_path_with_vars(PathBuf::from(path), vars);
        }
        let local = Path::new(DEFAULT_FILE);
        if local.is_file() {
            return Self::from_path_with_vars(local, vars);
        }
        Ok(Config::default())
    }

    /// The file this configuration was read from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The fully merged settings of client `name`.
    pub fn client(&self, name: &str) -> Result<ClientSettings, ConfigError> {
        self.clients.get(name).cloned().ok_or_else(|| {
            ConfigError::unknown_name(join("clients", name), "client", name, self.client_names())
        })
    }

    /// The settings a client gets without a `[clients.NAME]` table: the global sections
    /// over the built-in defaults.
    pub fn defaults(&self) -> &ClientSettings {
        &self.defaults
    }

    /// The store `name`; `memory` always exists (the built-in in-process store) unless
    /// the file redefines it.
    pub fn store(&self, name: &str) -> Result<StoreSettings, ConfigError> {
        if let Some(s) = self.stores.get(name) {
            return Ok(s.clone());
        }
        if name == DEFAULT_STORE {
            return Ok(StoreSettings::Memory(MemoryStoreSettings::default()));
        }
        Err(ConfigError::unknown_name(
            join("stores", name),
            "store",
            name,
            self.store_names(),
        ))
    }

    /// The named limiter `name` (`[limiters.NAME]`).
    pub fn limiter(&self, name: &str) -> Result<LimiterSettings, ConfigError> {
        self.limiters.get(name).cloned().ok_or_else(|| {
            ConfigError::unknown_name(
                join("limiters", name),
                "limiter",
                name,
                self.limiter_names(),
            )
        })
    }

    /// The inbound settings (`[server]`).
    pub fn server(&self) -> &ServerSettings {
        &self.server
    }

    /// The names of the clients, sorted.
    pub fn client_names(&self) -> Vec<&str> {
        self.clients.keys().map(String::as_str).collect()
    }

    /// The names of the named limiters, sorted.
    pub fn limiter_names(&self) -> Vec<&str> {
        self.limiters.keys().map(String::as_str).collect()
    }

    /// The names of the stores, sorted, including the built-in `memory` store.
    pub fn store_names(&self) -> Vec<&str> {
        Known {
            limiters: &self.limiters,
            stores: &self.stores,
        }
        .store_names()
    }

    /// The effective configuration as TOML-like text: every client fully merged, every
    /// store and limiter, durations with their units, secrets redacted. This is what
    /// `httpower check` prints.
    pub fn render_effective(&self) -> String {
        render::render(self)
    }

    pub(crate) fn clients_map(&self) -> &BTreeMap<String, ClientSettings> {
        &self.clients
    }

    pub(crate) fn stores_map(&self) -> &BTreeMap<String, StoreSettings> {
        &self.stores
    }

    pub(crate) fn limiters_map(&self) -> &BTreeMap<String, LimiterSettings> {
        &self.limiters
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let location = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.len(), |i| before.len() - i - 1)
            + 1;
        format!("line {line}, column {col}")
    });
    ConfigError::new(
        ConfigErrorKind::Syntax,
        location.unwrap_or_default(),
        "valid TOML",
        e.message().to_owned(),
    )
}

/// The root of the file, read into a validated [`Config`].
fn build(root: &Reader<'_>) -> Result<Config, ConfigError> {
    if root.has("proxy") {
        return Err(ConfigError::invalid(
            "proxy",
            "no [proxy] section: proxy routes are not supported yet",
            "a [proxy] section",
        ));
    }
    let ctx = root.ctx();

    let mut stores = BTreeMap::new();
    if let Some(table) = root.get("stores") {
        let t = as_table(table, "stores")?;
        for (name, value) in t {
            let path = join("stores", name);
            stores.insert(name.clone(), read_store(value, &path, ctx)?);
        }
    }

    let no_limiters = BTreeMap::new();
    let mut limiters = BTreeMap::new();
    if let Some(table) = root.get("limiters") {
        let t = as_table(table, "limiters")?;
        for (name, value) in t {
            let path = join("limiters", name);
            let r = Reader::of_value(value, &path, ctx, LIMITER_KEYS)?;
            let layer = LimitLayer::read(&r)?;
            let known = Known {
                limiters: &no_limiters,
                stores: &stores,
            };
            limiters.insert(name.clone(), layer.to_limiter(name, &path, &known)?);
        }
    }
    let known = Known {
        limiters: &limiters,
        stores: &stores,
    };

    let global = read_global(root)?;
    let defaults = resolve_client(
        "default",
        "",
        &global,
        &ClientExtra::default(),
        false,
        &known,
    )?;

    let mut clients = BTreeMap::new();
    if let Some(table) = root.get("clients") {
        let t = as_table(table, "clients")?;
        for (name, value) in t {
            let path = join("clients", name);
            let r = Reader::of_value(value, &path, ctx, CLIENT_KEYS)?;
            let (own, extra) = read_client(&r)?;
            let preset = match &extra.profile {
                None => ClientLayer::default(),
                Some(p) => presets::preset(p).ok_or_else(|| {
                    ConfigError::unknown_name(r.at("profile"), "preset", p, PRESET_NAMES)
                })?,
            };
            let own_rate_settings = own.rate_limit.has_settings;
            let merged = own.over(&preset.over(&global));
            let settings = resolve_client(name, &path, &merged, &extra, own_rate_settings, &known)?;
            clients.insert(name.clone(), settings);
        }
    }

    let server = match root.table("server", SERVER_KEYS)? {
        None => ServerSettings::default(),
        Some(r) => read_server(&r, &limiters)?,
    };

    Ok(Config {
        defaults,
        clients,
        stores,
        limiters,
        server,
        source: None,
    })
}

fn as_table<'a>(value: &'a toml::Value, path: &str) -> Result<&'a toml::Table, ConfigError> {
    match value {
        toml::Value::Table(t) => Ok(t),
        other => Err(ConfigError::invalid(path, "a table", describe(other))),
    }
}

/// The global sections as one layer.
fn read_global(root: &Reader<'_>) -> Result<ClientLayer, ConfigError> {
    let mut layer = ClientLayer {
        timeouts: TimeoutsLayer::read_in(root)?,
        ..ClientLayer::default()
    };
    if let Some(r) = root.table("retry", RETRY_KEYS)? {
        layer.retry = RetryLayer::read(&r)?;
    }
    if let Some(r) = root.table("circuit_breaker", BREAKER_KEYS)? {
        layer.breaker = BreakerLayer::read(&r)?;
    }
    if let Some(r) = root.table("rate_limit", RATE_LIMIT_KEYS)? {
        layer.rate_limit = LimitLayer::read(&r)?;
    }
    if let Some(r) = root.table("logging", LOGGING_KEYS)? {
        layer.logging = LoggingLayer::read(&r)?;
    }
    if let Some(r) = root.table("security", SECURITY_KEYS)? {
        layer.security = SecurityLayer::read(&r)?;
    }
    Ok(layer)
}

/// What only a `[clients.NAME]` table says.
#[derive(Debug, Default)]
struct ClientExtra {
    base_url: Option<String>,
    profile: Option<String>,
    headers: Vec<(String, String)>,
    breaker_key: Option<String>,
    rate_limit_key: Option<String>,
}

fn read_client(r: &Reader<'_>) -> Result<(ClientLayer, ClientExtra), ConfigError> {
    let mut layer = ClientLayer {
        timeouts: TimeoutsLayer::read_in(r)?,
        dedup: r.bool("dedup")?,
        security: SecurityLayer::read(r)?,
        ..ClientLayer::default()
    };
    if let Some(t) = r.table("retry", RETRY_KEYS)? {
        layer.retry = RetryLayer::read(&t)?;
    }
    if let Some(safe) = r.bool("retry_safe")? {
        if layer.retry.retry_safe.is_some() {
            return Err(ConfigError::invalid(
                r.at("retry_safe"),
                "either retry_safe or retry.retry_safe (the same setting), not both",
                "both",
            ));
        }
        layer.retry.retry_safe = Some(safe);
    }
    if let Some(t) = r.table("circuit_breaker", BREAKER_KEYS)? {
        layer.breaker = BreakerLayer::read(&t)?;
    }
    if let Some(t) = r.table("rate_limit", RATE_LIMIT_KEYS)? {
        layer.rate_limit = LimitLayer::read(&t)?;
    }
    if let Some(t) = r.table("logging", LOGGING_KEYS)? {
        layer.logging = LoggingLayer::read(&t)?;
    }

    let base_url = r.name("base_url")?;
    if let Some(url) = &base_url {
        check_base_url(url).map_err(|found| {
            ConfigError::invalid(
                r.at("base_url"),
                "an absolute http:// or https:// URL",
                found,
            )
        })?;
    }
    let headers = r.string_map("headers")?.unwrap_or_default();
    for (name, value) in &headers {
        let path = join(&r.at("headers"), name);
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::invalid(
                path,
                "a valid HTTP header name",
                format!("{name:?}"),
            ));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(ConfigError::invalid(
                path,
                "a header value without control characters (CR, LF, NUL)",
                "a value with control characters",
            ));
        }
    }
    let extra = ClientExtra {
        base_url,
        profile: r.name("profile")?,
        headers,
        breaker_key: r.name("circuit_breaker_key")?,
        rate_limit_key: r.name("rate_limit_key")?,
    };
    Ok((layer, extra))
}

fn check_base_url(text: &str) -> Result<(), String> {
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        Ok(u) => Err(format!("{text:?} (scheme {:?})", u.scheme())),
        Err(e) => Err(format!("{text:?} ({e})")),
    }
}

fn resolve_client(
    name: &str,
    path: &str,
    merged: &ClientLayer,
    extra: &ClientExtra,
    own_rate_settings: bool,
    known: &Known<'_>,
) -> Result<ClientSettings, ConfigError> {
    let retry_path = join(path, "retry");
    let retry = merged.retry.resolve(&retry_path)?;
    retry.policy_builder_at(&retry_path, MonotonicClock)?;
    let circuit_breaker = merged
        .breaker
        .resolve(&join(path, "circuit_breaker"), extra.breaker_key.clone())?;
    let rate_limit = merged.rate_limit.to_rate_limit(
        name,
        &join(path, "rate_limit"),
        own_rate_settings,
        extra.rate_limit_key.clone(),
        known,
    )?;
    Ok(ClientSettings {
        name: name.to_owned(),
        profile: extra.profile.clone(),
        base_url: extra.base_url.clone(),
        headers: extra.headers.clone(),
        timeouts: merged.timeouts.resolve(),
        retry,
        circuit_breaker,
        rate_limit,
        dedup: merged.dedup.unwrap_or(false),
        allowed_hosts: merged.security.allowed_hosts.clone(),
        block_private_ips: merged.security.block_private_ips.unwrap_or(false),
        logging: merged.logging.resolve(),
    })
}

fn read_store(value: &toml::Value, path: &str, ctx: &Ctx) -> Result<StoreSettings, ConfigError> {
    let table = as_table(value, path)?;
    let strategy = match table.get("strategy") {
        None if table.contains_key("url") || table.contains_key("nodes") => "redis",
        None => "memory",
        Some(toml::Value::String(s)) if s == "memory" || s == "redis" => s.as_str(),
        Some(other) => {
            let err = ConfigError::invalid(
                join(path, "strategy"),
                "one of \"memory\", \"redis\"",
                describe(other),
            );
            return Err(match other {
                toml::Value::String(s) => err.suggest_from(s, ["memory", "redis"]),
                _ => err,
            });
        }
    };
    if strategy == "memory" {
        let r = Reader::new(table, path, ctx, MEMORY_STORE_KEYS)?;
        let d = MemoryStoreSettings::default();
        return Ok(StoreSettings::Memory(MemoryStoreSettings {
            max_keys: r.usize("max_keys", 1)?.unwrap_or(d.max_keys),
            idle_timeout: r
                .nonzero_duration("idle_timeout", BareUnit::Seconds)?
                .unwrap_or(d.idle_timeout),
        }));
    }
    let r = Reader::new(table, path, ctx, REDIS_STORE_KEYS)?;
    let mode = match r.choice("mode", &["single", "sentinel", "cluster"])? {
        Some("sentinel") => RedisMode::Sentinel,
        Some("cluster") => RedisMode::Cluster,
        _ => RedisMode::Single,
    };
    let url = r.name("url")?;
    let nodes = r.strings("nodes")?.unwrap_or_default();
    let check_url = |at: String, u: &str| -> Result<(), ConfigError> {
        let ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|s| u.starts_with(s));
        if ok {
            Ok(())
        } else {
            Err(ConfigError::invalid(
                at,
                "a redis://, rediss:// or unix:// URL",
                format!("{:?}", render::redact_url(u)),
            ))
        }
    };
    if let Some(u) = &url {
        check_url(r.at("url"), u)?;
    }
    for (i, n) in nodes.iter().enumerate() {
        check_url(path::index(&r.at("nodes"), i), n)?;
    }
    let sentinel_master = r.name("sentinel_master")?;
    match mode {
        RedisMode::Single if url.is_none() => {
            return Err(ConfigError::missing(
                r.at("url"),
                "the Redis URL, e.g. url = \"${REDIS_URL}\"",
            ))
        }
        RedisMode::Cluster if url.is_none() && nodes.is_empty() => {
            return Err(ConfigError::missing(
                r.at("nodes"),
                "the cluster's seed nodes (or url)",
            ))
        }
        RedisMode::Sentinel if nodes.is_empty() => {
            return Err(ConfigError::missing(
                r.at("nodes"),
                "the Sentinel addresses, e.g. nodes = [\"redis://sentinel-1:26379\"]",
            ))
        }
        RedisMode::Sentinel if sentinel_master.is_none() => {
            return Err(ConfigError::missing(
                r.at("sentinel_master"),
                "the name of the primary Sentinel monitors",
            ))
        }
        _ => {}
    }
    let s = BareUnit::Seconds;
    Ok(StoreSettings::Redis(Box::new(RedisStoreSettings {
        url,
        mode,
        nodes,
        sentinel_master,
        db: r.u32("db", 0)?,
        username: r.name("username")?,
        password: r.string("password")?,
        key_prefix: r
            .name("key_prefix")?
            .unwrap_or_else(|| "httpower".to_owned()),
        max_connections: r.u32("max_connections", 1)?.unwrap_or(10),
        socket_timeout: r
            .nonzero_duration("socket_timeout", s)?
            .unwrap_or(Duration::from_secs(5)),
        socket_connect_timeout: r
            .nonzero_duration("socket_connect_timeout", s)?
            .unwrap_or(Duration::from_secs(5)),
        retry_on_timeout: r.bool("retry_on_timeout")?.unwrap_or(false),
        health_check_interval: r
            .nonzero_duration("health_check_interval", s)?
            .unwrap_or(Duration::from_secs(30)),
        ssl_cert_reqs: r
            .choice("ssl_cert_reqs", &["none", "optional", "required"])?
            .map(str::to_owned),
        ssl_ca_certs: r.name("ssl_ca_certs")?,
    })))
}

fn read_server(
    r: &Reader<'_>,
    limiters: &BTreeMap<String, LimiterSettings>,
) -> Result<ServerSettings, ConfigError> {
    let mut trusted_proxies = Vec::new();
    for (path, v) in r.array("trusted_proxies")?.unwrap_or_default() {
        let text = match v {
            toml::Value::String(s) => s.trim(),
            other => return Err(ConfigError::invalid(path, "a CIDR string", describe(other))),
        };
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                ConfigError::invalid(
                    path,
                    "an IP network such as \"10.0.0.0/8\" or an address",
                    format!("{text:?}"),
                )
            })?;
        trusted_proxies.push(net);
    }
    let mut routes = Vec::new();
    for (path, v) in r.array("routes")?.unwrap_or_default() {
        let route = Reader::of_value(v, path, r.ctx(), ROUTE_KEYS)?;
        let include = route.strings("include")?.unwrap_or_default();
        if include.is_empty() {
            return Err(ConfigError::missing(
                route.at("include"),
                "a non-empty list of path patterns, e.g. [\"/api/*\"]",
            ));
        }
        let exclude = route.strings("exclude")?.unwrap_or_default();
        for (key, list) in [("include", &include), ("exclude", &exclude)] {
            if let Some((i, p)) = list.iter().enumerate().find(|(_, p)| !p.starts_with('/')) {
                return Err(ConfigError::invalid(
                    path::index(&route.at(key), i),
                    "a path pattern starting with '/'",
                    format!("{p:?}"),
                ));
            }
        }
        let names = route.strings("limiters")?.unwrap_or_default();
        if names.is_empty() {
            return Err(ConfigError::missing(
                route.at("limiters"),
                "a non-empty list of limiter names",
            ));
        }
        for (i, name) in names.iter().enumerate() {
            if !limiters.contains_key(name) {
                return Err(ConfigError::unknown_name(
                    path::index(&route.at("limiters"), i),
                    "limiter",
                    name,
                    limiters.keys().map(String::as_str),
                ));
            }
        }
        let mode = match route.choice(
            "mode",
            &["all_must_pass", "any_must_pass", "most_restrictive"],
        )? {
            Some("any_must_pass") => CompositeMode::AnyMustPass,
            Some("most_restrictive") => CompositeMode::MostRestrictive,
            _ => CompositeMode::AllMustPass,
        };
        let keys = route_keys(&route, names.len())?;
        routes.push(RouteSettings {
            include,
            exclude,
            limiters: names,
            mode,
            keys,
        });
    }
    Ok(ServerSettings {
        trusted_proxies,
        routes,
    })
}

/// `key` (one for every limiter, default `"ip"`) or `keys` (one per limiter, in order).
fn route_keys(route: &Reader<'_>, limiters: usize) -> Result<Vec<RouteKey>, ConfigError> {
    let expected = "\"ip\", \"peer_ip\", \"global\" or \"header:NAME\"";
    let parse = |at: String, text: &str| {
        parse_route_key(text).ok_or_else(|| {
            ConfigError::invalid(at, expected, format!("{text:?}"))
                .suggest_from(text, ["ip", "peer_ip", "global"])
        })
    };
    match (route.string("key")?, route.strings("keys")?) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            route.at("keys"),
            "either `key` (one for every limiter) or `keys` (one per limiter), not both",
            "both",
        )),
        (Some(key), None) => Ok(vec![parse(route.at("key"), &key)?; limiters]),
        (None, None) => Ok(vec![RouteKey::ClientIp; limiters]),
        (None, Some(keys)) => {
            if keys.len() != limiters {
                return Err(ConfigError::invalid(
                    route.at("keys"),
                    format!("one key per limiter ({limiters})"),
                    format!("{} keys", keys.len()),
                ));
            }
            keys.iter()
                .enumerate()
                .map(|(i, k)| parse(path::index(&route.at("keys"), i), k))
                .collect()
        }
    }
}

fn parse_route_key(text: &str) -> Option<RouteKey> {
    match text.trim() {
        "ip" | "client_ip" => Some(RouteKey::ClientIp),
        "peer_ip" => Some(RouteKey::PeerIp),
        "global" => Some(RouteKey::Global),
        other => {
            let name = other.strip_prefix("header:")?.trim();
            http::HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(|h| RouteKey::Header(h.as_str().to_owned()))
        }
    }
}
