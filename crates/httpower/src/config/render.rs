//! The effective configuration as text, with units and without secrets.

use std::fmt::Write as _;
use std::time::Duration;

use httpower_core::breaker::Window;
use httpower_core::rate::Strategy;
use httpower_core::store::{CompositeMode, FailMode};

use super::duration::Human;
use super::path::join;
use super::settings::{
    AlgorithmKind, ClientSettings, JitterKind, LimiterSettings, Quantity, RouteKey, StoreSettings,
};
use super::Config;

/// What a secret is replaced with.
pub(crate) const REDACTED: &str = "[redacted]";

/// Header names whose values are always secret.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "api-key",
    "x-api-key",
    "apikey",
    "x-auth-token",
    "x-csrf-token",
    "token",
    "secret",
];

/// Fragments that make any header or query parameter name secret.
const SECRET_FRAGMENTS: &[&str] = &[
    "auth",
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "cookie",
    "session",
    "signature",
    "credential",
];

fn is_secret_name(name: &str, extra: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_HEADERS.contains(&lower.as_str())
        || extra.iter().any(|e| e.eq_ignore_ascii_case(&lower))
        || SECRET_FRAGMENTS.iter().any(|f| lower.contains(f))
}

/// `url` with its userinfo replaced and the values of secret-looking query parameters
/// redacted.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("{REDACTED}@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        None => tail.to_owned(),
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret_name(k, &[]) => format!("{k}={REDACTED}"),
                    _ => pair.to_owned(),
                })
                .collect();
            let mut out = format!("{path}?{}", pairs.join("&"));
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
            out
        }
    };
    format!("{scheme}{authority}{tail}")
}

fn q(s: &str) -> String {
    format!("{s:?}")
}

fn dur(d: Duration) -> String {
    format!("\"{}\"", Human(d))
}

fn opt_dur(d: Option<Duration>) -> String {
    d.map_or_else(|| "\"none\"".to_owned(), dur)
}

fn list<T: AsRef<str>>(items: &[T]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// Writes `key = value` lines.
struct Section<'a> {
    out: &'a mut String,
}

impl Section<'_> {
    fn open<'a>(out: &'a mut String, header: &str) -> Section<'a> {
        let _ = writeln!(out, "\n[{header}]");
        Section { out }
    }

    fn kv(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = writeln!(self.out, "{key} = {value}");
        self
    }
}

pub(crate) fn render(config: &Config) -> String {
    let mut out = String::new();
    out.push_str("# httpower effective configuration\n");
    match config.source() {
        Some(path) => {
            let _ = writeln!(out, "# source: {}", path.display());
        }
        None => out.push_str("# source: built-in defaults and the given text\n"),
    }
    out.push_str("# every client fully merged; durations carry units; secrets redacted\n");

    out.push_str("\n# Settings of clients without a [clients.NAME] table.");
    render_client(&mut out, "defaults", config.defaults());
    for (name, client) in config.clients_map() {
        render_client(&mut out, &join("clients", name), client);
    }

    let mut stores: Vec<(String, StoreSettings)> = config
        .stores_map()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !config
        .stores_map()
        .contains_key(super::model::DEFAULT_STORE)
    {
        if let Ok(memory) = config.store(super::model::DEFAULT_STORE) {
            stores.insert(0, (super::model::DEFAULT_STORE.to_owned(), memory));
        }
    }
    for (name, store) in &stores {
        render_store(&mut out, name, store);
    }

    for (name, limiter) in config.limiters_map() {
        let mut s = Section::open(&mut out, &join("limiters", name));
        render_limiter(&mut s, limiter);
    }

    let server = config.server();
    if !server.trusted_proxies.is_empty() || !server.routes.is_empty() {
        let proxies: Vec<String> = server
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        Section::open(&mut out, "server").kv("trusted_proxies", list(&proxies));
        for route in &server.routes {
            out.push_str("\n[[server.routes]]\n");
            let mode = match route.mode {
                CompositeMode::AllMustPass => "all_must_pass",
                CompositeMode::AnyMustPass => "any_must_pass",
                CompositeMode::MostRestrictive => "most_restrictive",
            };
            let keys: Vec<String> = route
                .keys
                .iter()
                .map(|key| match key {
                    RouteKey::ClientIp => "ip".to_owned(),
                    RouteKey::PeerIp => "peer_ip".to_owned(),
                    RouteKey::Global => "global".to_owned(),
                    RouteKey::Header(h) => format!("header:{h}"),
                })
                .collect();
            let mut s = Section { out: &mut out };
            s.kv("include", list(&route.include))
                .kv("exclude", list(&route.exclude))
                .kv("limiters", list(&route.limiters))
                .kv("mode", q(mode));
            match keys.split_first() {
                Some((first, rest)) if rest.iter().all(|k| k == first) => {
                    s.kv("key", q(first));
                }
                _ => {
                    s.kv("keys", list(&keys));
                }
            }
        }
    }
    out
}

fn render_client(out: &mut String, header: &str, c: &ClientSettings) {
    let mut s = Section::open(out, header);
    if let Some(p) = &c.profile {
        s.kv("profile", q(p));
    }
    if let Some(url) = &c.base_url {
        s.kv("base_url", q(&redact_url(url)));
    }
    s.kv("dedup", c.dedup);
    match &c.allowed_hosts {
        Some(hosts) => s.kv("allowed_hosts", list(hosts)),
        None => s.kv("allowed_hosts", "\"any\""),
    };
    s.kv("block_private_ips", c.block_private_ips);
    if !c.headers.is_empty() {
        let parts: Vec<String> = c
            .headers
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_name(k, &c.logging.sanitize_headers) {
                    REDACTED
                } else {
                    v.as_str()
                };
                format!("{} = {}", q(k), q(v))
            })
            .collect();
        s.kv("headers", format!("{{ {} }}", parts.join(", ")));
    }

    let t = &c.timeouts;
    Section::open(out, &join(header, "timeouts"))
        .kv("connect", opt_dur(t.connect))
        .kv("read", opt_dur(t.read))
        .kv("write", opt_dur(t.write))
        .kv("pool", opt_dur(t.pool))
        .kv("attempt", opt_dur(t.attempt))
        .kv("total", opt_dur(t.total));

    let r = &c.retry;
    let mut s = Section::open(out, &join(header, "retry"));
    s.kv("enabled", r.enabled)
        .kv("max_retries", r.max_retries)
        .kv("base_delay", dur(r.base_delay))
        .kv("max_delay", dur(r.max_delay))
        .kv("jitter", q(r.jitter.name()));
    if let JitterKind::Proportional { factor } = r.jitter {
        s.kv("jitter_factor", format!("{factor:?}"));
    }
    let statuses: Vec<String> = r.retry_on_status.iter().map(u16::to_string).collect();
    s.kv("max_retry_after", dur(r.max_retry_after))
        .kv("retry_on_status", format!("[{}]", statuses.join(", ")))
        .kv("retry_safe", r.retry_safe)
        .kv("retry_after_on_any_status", r.retry_after_on_any_status);
    match r.budget {
        None => s.kv("budget", false),
        Some(b) => s.kv(
            "budget",
            format!(
                "{{ ratio = {:?}, min_per_sec = {}, ttl = {} }}",
                b.ratio,
                b.min_per_sec,
                dur(b.ttl)
            ),
        ),
    };

    let mut s = Section::open(out, &join(header, "circuit_breaker"));
    match &c.circuit_breaker {
        None => {
            s.kv("enabled", false);
        }
        Some(b) => {
            s.kv("enabled", true)
                .kv("failure_threshold", b.failure_threshold);
            if let Some(p) = b.failure_threshold_percentage {
                s.kv("failure_threshold_percentage", format!("{p:?}"));
            }
            s.kv("minimum_calls", b.minimum_calls);
            match b.window {
                Window::Count(n) => s.kv("window_size", n),
                Window::Time { duration, buckets } => s
                    .kv("window_duration", dur(duration))
                    .kv("window_buckets", buckets),
            };
            if let Some(rule) = b.slow_call {
                s.kv("slow_call_duration", dur(rule.duration)).kv(
                    "slow_call_rate_threshold",
                    format!("{:?}", rule.rate_threshold),
                );
            }
            s.kv("timeout", dur(b.timeout))
                .kv("timeout_multiplier", format!("{:?}", b.timeout_multiplier));
            if let Some(max) = b.max_timeout {
                s.kv("max_timeout", dur(max));
            }
            s.kv("timeout_jitter", format!("{:?}", b.timeout_jitter))
                .kv("half_open_requests", b.half_open_requests)
                .kv(
                    "success_threshold",
                    b.success_threshold.unwrap_or(b.half_open_requests),
                );
            if let Some(k) = &b.key {
                s.kv("key", q(k));
            }
        }
    }

    let mut s = Section::open(out, &join(header, "rate_limit"));
    match &c.rate_limit {
        None => {
            s.kv("enabled", false);
        }
        Some(rl) => {
            s.kv("enabled", true);
            if rl.shared {
                s.kv("limiter", q(&rl.limiter.name));
            }
            render_limiter(&mut s, &rl.limiter);
            s.kv("adaptive", rl.adaptive)
                .kv("server_feedback", rl.server_feedback);
            if let Some(k) = &rl.key {
                s.kv("key", q(k));
            }
        }
    }

    let l = &c.logging;
    Section::open(out, &join(header, "logging"))
        .kv("enabled", l.enabled)
        .kv("level", q(l.level.name()))
        .kv("log_headers", l.log_headers)
        .kv("log_body", l.log_body)
        .kv("max_body_bytes", l.max_body_bytes)
        .kv("sanitize_headers", list(&l.sanitize_headers))
        .kv("sanitize_body_fields", list(&l.sanitize_body_fields))
        .kv("correlation_header", q(&l.correlation_header));
}

fn render_limiter(s: &mut Section<'_>, l: &LimiterSettings) {
    s.kv("algorithm", q(l.algorithm.name()));
    match l.quantity {
        Quantity::Concurrent(n) => {
            s.kv("max_concurrent", n);
        }
        Quantity::Rate { count, period } => match l.algorithm {
            AlgorithmKind::SlidingWindow | AlgorithmKind::FixedWindow => {
                s.kv("limit", count).kv("window", dur(period));
            }
            _ if period == Duration::from_secs(1) => {
                s.kv("rate_per_second", format!("{count:?}"));
            }
            _ => {
                s.kv("requests", count).kv("per", dur(period));
            }
        },
    }
    if let Some(b) = l.burst {
        s.kv("burst", b);
    }
    s.kv("store_id", q(&l.store_id))
        .kv("timeout", dur(l.timeout))
        .kv("fail_closed", l.fail_mode == FailMode::Closed);
    match l.strategy {
        Strategy::Error => s.kv("strategy", "\"error\""),
        Strategy::Wait { max_wait } => s
            .kv("strategy", "\"wait\"")
            .kv("max_wait_time", dur(max_wait)),
    };
    if !l.enabled {
        s.kv("enabled", false);
    }
}

fn render_store(out: &mut String, name: &str, store: &StoreSettings) {
    let mut s = Section::open(out, &join("stores", name));
    s.kv("strategy", q(store.strategy()));
    match store {
        StoreSettings::Memory(m) => {
            s.kv("max_keys", m.max_keys)
                .kv("idle_timeout", dur(m.idle_timeout));
        }
        StoreSettings::Redis(r) => {
            s.kv("mode", q(r.mode.name()));
            if let Some(url) = &r.url {
                s.kv("url", q(&redact_url(url)));
            }
            if !r.nodes.is_empty() {
                let nodes: Vec<String> = r.nodes.iter().map(|n| redact_url(n)).collect();
                s.kv("nodes", list(&nodes));
            }
            if let Some(m) = &r.sentinel_master {
                s.kv("sentinel_master", q(m));
            }
            if let Some(db) = r.db {
                s.kv("db", db);
            }
            if let Some(u) = &r.username {
                s.kv("username", q(u));
            }
            if r.password.is_some() {
                s.kv("password", q(REDACTED));
            }
            s.kv("key_prefix", q(&r.key_prefix))
                .kv(
                    "max_connections",
                    format_args!(
                        "{}  # {}",
                        r.max_connections,
                        crate::stores::MAX_CONNECTIONS_UNUSED
                    ),
                )
                .kv("socket_timeout", dur(r.socket_timeout))
                .kv("socket_connect_timeout", dur(r.socket_connect_timeout))
                .kv("retry_on_timeout", r.retry_on_timeout)
                .kv("health_check_interval", dur(r.health_check_interval));
            if let Some(v) = &r.ssl_cert_reqs {
                s.kv("ssl_cert_reqs", q(v));
            }
            if let Some(v) = &r.ssl_ca_certs {
                s.kv("ssl_ca_certs", q(v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets() {
        assert_eq!(
            redact_url("redis://user:pass@host:6379/0"),
            "redis://[redacted]@host:6379/0"
        );
        assert_eq!(redact_url("redis://:pass@host"), "redis://[redacted]@host");
        assert_eq!(
            redact_url("https://api.example.com/v1?api_key=abc&page=2#top"),
            "https://api.example.com/v1?api_key=[redacted]&page=2#top"
        );
        assert_eq!(redact_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("Authorization", &[]));
        assert!(is_secret_name("X-Stripe-Key", &[]));
        assert!(is_secret_name("X-Custom", &["x-custom".to_owned()]));
        assert!(!is_secret_name("Accept", &[]));
        assert!(!is_secret_name("User-Agent", &[]));
    }
}
