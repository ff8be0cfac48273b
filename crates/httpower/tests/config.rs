//! Loading `httpower.toml`: strictness, interpolation, units, precedence, rendering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use httpower::config::{
    AlgorithmKind, Config, ConfigError, ConfigErrorKind, JitterKind, Quantity, RedisMode, RouteKey,
    StoreSettings,
};
use httpower_core::breaker::Window;
use httpower_core::clock::ManualClock;
use httpower_core::rate::{AnyAlgorithm, Strategy};
use httpower_core::store::{CompositeMode, FailMode};

fn no_vars(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse_with_vars(text, &no_vars)
}

fn parse_ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("config should load, got: {e}"),
    }
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(e) => e,
    }
}

fn vars_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

// ---------------------------------------------------------------------------------
// Strictness

#[test]
fn misspelled_key_names_path_and_closest_key() {
    let err = parse_err(
        r#"
        [clients.stripe]
        base_url = "https://api.stripe.com"
        [clients.stripe.retry]
        max_retrys = 2
        "#,
    );
    assert_eq!(err.kind(), ConfigErrorKind::UnknownKey);
    assert_eq!(err.path(), "clients.stripe.retry.max_retrys");
    assert_eq!(err.found(), "max_retrys");
    assert_eq!(err.suggestion(), Some("max_retries"));
    assert!(err.expected().contains("max_retries"), "{}", err.expected());
    assert_eq!(
        err.to_string(),
        r#"clients.stripe.retry.max_retrys: unknown key (did you mean "max_retries"?)"#
    );
}

#[test]
fn misspellings_are_caught_in_every_section() {
    let cases = [
        (
            "[circut_breaker]\ntimeout = 5",
            "circut_breaker",
            "circuit_breaker",
        ),
        (
            "[stores.r]\nstrategy = \"redis\"\nurl = \"redis://h\"\nsocket_timout = 5",
            "stores.r.socket_timout",
            "socket_timeout",
        ),
        (
            "[limiters.a]\nrate_per_second = 5\nfail_close = true",
            "limiters.a.fail_close",
            "fail_closed",
        ),
        (
            "[clients.a]\nbase_ulr = \"http://x\"",
            "clients.a.base_ulr",
            "base_url",
        ),
        (
            "[clients.a.timeouts]\nconect = 5",
            "clients.a.timeouts.conect",
            "connect",
        ),
        (
            "[logging]\nlog_header = true",
            "logging.log_header",
            "log_headers",
        ),
    ];
    for (text, path, suggestion) in cases {
        let err = parse_err(text);
        assert_eq!(err.kind(), ConfigErrorKind::UnknownKey, "{text}");
        assert_eq!(err.path(), path, "{text}");
        assert_eq!(err.suggestion(), Some(suggestion), "{text}");
    }
    // Far from every valid key: no suggestion, but still an error.
    let err = parse_err("[retry]\ncolour = \"blue\"");
    assert_eq!(err.path(), "retry.colour");
    assert_eq!(err.suggestion(), None);
    assert_eq!(err.to_string(), "retry.colour: unknown key");
}

#[test]
fn wrong_types_and_ranges_say_what_was_expected_and_found() {
    let err = parse_err("[clients.a.retry]\nmax_retries = \"three\"");
    assert_eq!(err.kind(), ConfigErrorKind::InvalidValue);
    assert_eq!(err.path(), "clients.a.retry.max_retries");
    assert!(err.expected().contains("integer"), "{}", err.expected());
    assert_eq!(err.found(), "\"three\"");

    let err = parse_err("[circuit_breaker]\nfailure_threshold_percentage = 150");
    assert_eq!(err.path(), "circuit_breaker.failure_threshold_percentage");
    assert_eq!(err.found(), "150");

    let err = parse_err("[limiters.a]\nrate_per_second = 0");
    assert_eq!(err.path(), "limiters.a.rate_per_second");

    let err = parse_err("[retry]\nretry_on_status = [503, 99]");
    assert_eq!(err.path(), "retry.retry_on_status[1]");

    let err = parse_err("[limiters.a]\nalgorithm = \"token-bucket\"\nrate_per_second = 1");
    assert_eq!(err.path(), "limiters.a.algorithm");
    assert_eq!(err.suggestion(), Some("token_bucket"));
}

#[test]
fn syntax_errors_carry_a_line() {
    let err = parse_err("[retry]\nmax_retries = = 3\n");
    assert_eq!(err.kind(), ConfigErrorKind::Syntax);
    assert!(err.path().starts_with("line 2"), "{}", err.path());
}

#[test]
fn proxy_section_is_refused_not_ignored() {
    let err = parse_err("[proxy]\nroutes = []");
    assert_eq!(err.path(), "proxy");
    assert!(
        err.expected().contains("not supported"),
        "{}",
        err.expected()
    );
}

#[test]
fn header_values_with_line_breaks_are_refused() {
    let err = parse_err("[clients.a.headers]\nX-Test = \"a\\r\\nInjected: 1\"");
    assert_eq!(err.path(), "clients.a.headers.X-Test");
    let err = parse_err("[clients.a]\nbase_url = \"ftp://example.com\"");
    assert_eq!(err.path(), "clients.a.base_url");
}

// ---------------------------------------------------------------------------------
// Interpolation

#[test]
fn unset_variable_names_the_variable_and_the_key() {
    let err = parse_err("[stores.main]\nstrategy = \"redis\"\nurl = \"${REDIS_URL}\"");
    assert_eq!(err.kind(), ConfigErrorKind::UnsetVariable);
    assert_eq!(err.path(), "stores.main.url");
    assert_eq!(err.found(), "REDIS_URL");
    let message = err.to_string();
    assert!(message.starts_with("stores.main.url: "), "{message}");
    assert!(message.contains("REDIS_URL"), "{message}");
}

#[test]
fn defaults_apply_when_unset_and_values_win_when_set() {
    let text = r#"
        [stores.main]
        strategy = "redis"
        url = "${REDIS_URL:-redis://localhost:6379/0}"

        [clients.api]
        base_url = "https://${API_HOST:-api.example.com}/v1"
        retry = { max_retries = "${API_RETRIES:-4}" }
        dedup = "${API_DEDUP:-true}"
    "#;
    let config = parse_ok(text);
    let StoreSettings::Redis(redis) = config.store("main").unwrap() else {
        panic!("redis store expected");
    };
    assert_eq!(redis.url.as_deref(), Some("redis://localhost:6379/0"));
    let api = config.client("api").unwrap();
    assert_eq!(api.base_url.as_deref(), Some("https://api.example.com/v1"));
    assert_eq!(api.retry.max_retries, 4);
    assert!(api.dedup);

    let vars = vars_from(&[
        ("REDIS_URL", "redis://cache:6380/2"),
        ("API_HOST", "internal.example"),
        ("API_RETRIES", "1"),
    ]);
    let config = Config::parse_with_vars(text, &vars).unwrap();
    let StoreSettings::Redis(redis) = config.store("main").unwrap() else {
        panic!("redis store expected");
    };
    assert_eq!(redis.url.as_deref(), Some("redis://cache:6380/2"));
    let api = config.client("api").unwrap();
    assert_eq!(api.base_url.as_deref(), Some("https://internal.example/v1"));
    assert_eq!(api.retry.max_retries, 1);

    // An interpolated value that is not a number is still a typed error at its key.
    let vars = vars_from(&[("API_RETRIES", "many")]);
    let err = Config::parse_with_vars(text, &vars).unwrap_err();
    assert_eq!(err.path(), "clients.api.retry.max_retries");
    assert_eq!(err.found(), "\"many\"");

    // A literal string never stands in for a number.
    let err = parse_err("[retry]\nmax_retries = \"3\"");
    assert_eq!(err.path(), "retry.max_retries");
}

// ---------------------------------------------------------------------------------
// Durations

#[test]
fn bare_numbers_take_the_unit_of_their_key() {
    let config = parse_ok(
        r#"
        timeout = 30

        [timeouts]
        connect = 3
        total = 10

        [retry]
        base_delay = 250
        max_delay = 2000
        max_retry_after = 5000

        [circuit_breaker]
        timeout = 30000
        window_duration = 60000
        slow_call_duration = 1500

        [stores.r]
        strategy = "redis"
        url = "redis://localhost"
        socket_timeout = 5
        socket_connect_timeout = 2
        health_check_interval = 30

        [stores.m]
        strategy = "memory"
        idle_timeout = 120

        [limiters.l]
        store_id = "r"
        algorithm = "sliding_window"
        limit = 10
        window_seconds = 300
        timeout = 0.1
        strategy = "wait"
        max_wait_time = 2000
        "#,
    );
    let d = config.defaults();
    assert_eq!(
        d.timeouts.attempt,
        Some(SECS(30)),
        "top-level timeout: seconds"
    );
    assert_eq!(d.timeouts.connect, Some(SECS(3)));
    assert_eq!(d.timeouts.total, Some(SECS(10)));
    assert_eq!(d.retry.base_delay, MS(250), "base_delay: milliseconds");
    assert_eq!(d.retry.max_delay, MS(2000));
    assert_eq!(
        d.retry.max_retry_after,
        SECS(5),
        "max_retry_after: milliseconds"
    );
    let b = d.circuit_breaker.as_ref().unwrap();
    assert_eq!(b.timeout, SECS(30), "breaker timeout: milliseconds");
    assert_eq!(
        b.window,
        Window::Time {
            duration: SECS(60),
            buckets: 10
        }
    );
    assert_eq!(b.slow_call.unwrap().duration, MS(1500));

    let StoreSettings::Redis(r) = config.store("r").unwrap() else {
        panic!("redis");
    };
    assert_eq!(r.socket_timeout, SECS(5), "socket_timeout: seconds");
    assert_eq!(r.socket_connect_timeout, SECS(2));
    assert_eq!(r.health_check_interval, SECS(30));
    let StoreSettings::Memory(m) = config.store("m").unwrap() else {
        panic!("memory");
    };
    assert_eq!(m.idle_timeout, SECS(120));

    let l = config.limiter("l").unwrap();
    assert_eq!(l.timeout, MS(100), "limiter timeout: seconds");
    assert_eq!(
        l.quantity,
        Quantity::Rate {
            count: 10.0,
            period: SECS(300)
        },
        "window_seconds: seconds"
    );
    assert_eq!(
        l.strategy,
        Strategy::Wait { max_wait: SECS(2) },
        "max_wait_time: ms"
    );
}

#[test]
fn unit_strings_mean_the_same_under_every_key() {
    let config = parse_ok(
        r#"
        [timeouts]
        connect = "250ms"
        read = "1.5s"
        total = "1m"
        pool = "none"

        [retry]
        base_delay = "1s"
        max_delay = "1m30s"
        max_retry_after = "1h"

        [circuit_breaker]
        timeout = "2s"

        [limiters.l]
        rate_per_second = 5
        timeout = "50ms"
        "#,
    );
    let d = config.defaults();
    assert_eq!(d.timeouts.connect, Some(MS(250)));
    assert_eq!(d.timeouts.read, Some(MS(1500)));
    assert_eq!(d.timeouts.total, Some(SECS(60)));
    assert_eq!(d.timeouts.pool, None);
    assert_eq!(d.retry.base_delay, SECS(1));
    assert_eq!(d.retry.max_delay, SECS(90));
    assert_eq!(d.retry.max_retry_after, SECS(3600));
    assert_eq!(d.circuit_breaker.as_ref().unwrap().timeout, SECS(2));
    assert_eq!(config.limiter("l").unwrap().timeout, MS(50));

    let err = parse_err("[timeouts]\nconnect = \"5 parsecs\"");
    assert_eq!(err.path(), "timeouts.connect");
    assert!(err.expected().contains("seconds"), "{}", err.expected());
    let err = parse_err("[retry]\nbase_delay = \"fast\"");
    assert!(
        err.expected().contains("milliseconds"),
        "{}",
        err.expected()
    );
    let err = parse_err("[retry]\nbase_delay = -5");
    assert_eq!(err.path(), "retry.base_delay");
}

// ---------------------------------------------------------------------------------
// Precedence and presets

#[test]
fn client_keys_beat_preset_beats_global_beats_defaults() {
    let config = parse_ok(
        r#"
        [retry]
        max_retries = 5
        base_delay = "300ms"

        [timeouts]
        connect = "7s"
        write = "9s"

        [circuit_breaker]
        failure_threshold = 8

        [clients.pay]
        profile = "payment_processing"
        retry = { max_retries = 1 }

        [clients.plain]
        base_url = "http://127.0.0.1:9"
        "#,
    );
    let pay = config.client("pay").unwrap();
    assert_eq!(pay.profile.as_deref(), Some("payment_processing"));
    assert_eq!(pay.retry.max_retries, 1, "client key wins");
    assert_eq!(pay.retry.base_delay, SECS(1), "preset beats global");
    assert_eq!(pay.timeouts.connect, Some(SECS(5)), "preset beats global");
    assert_eq!(
        pay.timeouts.write,
        Some(SECS(9)),
        "global fills what the preset leaves"
    );
    assert_eq!(
        pay.retry.max_retry_after,
        SECS(60),
        "built-in default fills the rest"
    );
    assert!(
        !pay.retry.retry_safe,
        "payments never retry POST by default"
    );
    assert_eq!(pay.circuit_breaker.as_ref().unwrap().failure_threshold, 3);
    assert!(pay.dedup);

    let plain = config.client("plain").unwrap();
    assert_eq!(plain.retry.max_retries, 5);
    assert_eq!(plain.retry.base_delay, MS(300));
    assert_eq!(plain.timeouts.connect, Some(SECS(7)));
    assert_eq!(plain.circuit_breaker.as_ref().unwrap().failure_threshold, 8);
    assert!(!plain.dedup);
    // Built-in defaults from the specification.
    assert_eq!(plain.retry.max_delay, SECS(30));
    assert_eq!(plain.retry.jitter, JitterKind::Proportional { factor: 0.2 });
    assert_eq!(
        plain.retry.retry_on_status,
        vec![408, 429, 500, 502, 503, 504]
    );
    let budget = plain.retry.budget.unwrap();
    assert!((budget.ratio - 0.2).abs() < f64::EPSILON);
    let breaker = plain.circuit_breaker.as_ref().unwrap();
    assert_eq!(breaker.window, Window::Count(10));
    assert_eq!(breaker.timeout, SECS(60));
    assert_eq!(breaker.half_open_requests, 1);
}

#[test]
fn every_preset_loads_and_differs() {
    let config = parse_ok(
        r#"
        [clients.a]
        profile = "payment_processing"
        [clients.b]
        profile = "high_volume_api"
        [clients.c]
        profile = "microservices_mesh"
        "#,
    );
    let a = config.client("a").unwrap();
    let b = config.client("b").unwrap();
    let c = config.client("c").unwrap();
    assert!(a.rate_limit.is_none());
    let rl = b
        .rate_limit
        .as_ref()
        .expect("high_volume_api limits on the client");
    assert!(matches!(rl.limiter.strategy, Strategy::Wait { .. }));
    assert!(b.dedup);
    assert!(c.timeouts.connect.unwrap() < b.timeouts.connect.unwrap());
    assert!(b.timeouts.total.unwrap() < a.timeouts.total.unwrap());
    assert!(c.retry.base_delay < a.retry.base_delay);

    let err = parse_err("[clients.x]\nprofile = \"payment_procesing\"");
    assert_eq!(err.kind(), ConfigErrorKind::UnknownName);
    assert_eq!(err.path(), "clients.x.profile");
    assert_eq!(err.suggestion(), Some("payment_processing"));
}

#[test]
fn preset_limit_can_be_switched_off_by_the_client() {
    let config = parse_ok(
        r#"
        [clients.b]
        profile = "high_volume_api"
        rate_limit = { enabled = false }
        "#,
    );
    assert!(config.client("b").unwrap().rate_limit.is_none());
}

// ---------------------------------------------------------------------------------
// Limits: on unless enabled = false

#[test]
fn limits_with_settings_are_enabled_unless_they_say_otherwise() {
    let config = parse_ok(
        r#"
        [limiters.on]
        rate_per_second = 10
        [limiters.off]
        rate_per_second = 10
        enabled = false

        [clients.inline]
        rate_limit = { requests = 100, per = "minute" }
        [clients.disabled]
        rate_limit = { requests = 100, per = "minute", enabled = false }
        [clients.named]
        rate_limit = { limiter = "on", max_wait_time = "300ms" }
        [clients.named_off]
        rate_limit = { limiter = "off" }
        [clients.none]
        "#,
    );
    assert!(config.limiter("on").unwrap().enabled);
    assert!(!config.limiter("off").unwrap().enabled);

    let inline = config.client("inline").unwrap().rate_limit.unwrap();
    assert!(!inline.shared);
    assert_eq!(inline.limiter.algorithm, AlgorithmKind::TokenBucket);
    assert_eq!(
        inline.limiter.quantity,
        Quantity::Rate {
            count: 100.0,
            period: SECS(60)
        }
    );
    assert!(inline.adaptive && inline.server_feedback);
    assert!(config.client("disabled").unwrap().rate_limit.is_none());

    let named = config.client("named").unwrap().rate_limit.unwrap();
    assert!(named.shared);
    assert_eq!(named.limiter.name, "on");
    assert_eq!(named.limiter.strategy, Strategy::Wait { max_wait: MS(300) });
    assert!(config.client("named_off").unwrap().rate_limit.is_none());
    assert!(config.client("none").unwrap().rate_limit.is_none());
}

#[test]
fn a_global_rate_limit_applies_to_every_client() {
    let config = parse_ok(
        r#"
        [rate_limit]
        requests = 50
        per = "second"
        [clients.a]
        [clients.b]
        rate_limit_key = "b-key"
        "#,
    );
    assert!(config.defaults().rate_limit.is_some());
    let a = config.client("a").unwrap().rate_limit.unwrap();
    assert_eq!(a.limiter.name, "client:a");
    let b = config.client("b").unwrap().rate_limit.unwrap();
    assert_eq!(b.key.as_deref(), Some("b-key"));
}

#[test]
fn a_limit_without_a_rate_is_an_error_not_silently_off() {
    let err = parse_err("[clients.a.rate_limit]\nstrategy = \"wait\"");
    assert_eq!(err.kind(), ConfigErrorKind::MissingKey);
    assert_eq!(err.path(), "clients.a.rate_limit");

    let err = parse_err("[rate_limit]\nenabled = true");
    assert_eq!(err.path(), "rate_limit");

    let err = parse_err("[limiters.empty]\nstore_id = \"memory\"");
    assert_eq!(err.path(), "limiters.empty");

    let err = parse_err("[limiters.a]\nlimit = 5");
    assert_eq!(err.path(), "limiters.a.window_seconds");

    let err = parse_err("[limiters.a]\nrate_per_second = 5\nlimit = 3\nwindow_seconds = 1");
    assert_eq!(err.path(), "limiters.a.limit");
}

#[test]
fn limiter_references_must_resolve() {
    let err = parse_err(
        r#"
        [stores.redis_prod]
        strategy = "redis"
        url = "redis://localhost"
        [limiters.a]
        store_id = "redis_prd"
        rate_per_second = 5
        "#,
    );
    assert_eq!(err.kind(), ConfigErrorKind::UnknownName);
    assert_eq!(err.path(), "limiters.a.store_id");
    assert_eq!(err.suggestion(), Some("redis_prod"));
    assert!(err.expected().contains("redis_prod"), "{}", err.expected());

    // The built-in memory store needs no definition.
    let config = parse_ok("[limiters.a]\nstore_id = \"memory\"\nrate_per_second = 5");
    assert_eq!(config.limiter("a").unwrap().store_id, "memory");
    assert!(matches!(
        config.store("memory").unwrap(),
        StoreSettings::Memory(_)
    ));
    assert!(config.store_names().contains(&"memory"));

    let err = parse_err(
        "[limiters.public]\nrate_per_second = 5\n[clients.a]\nrate_limit = { limiter = \"publc\" }",
    );
    assert_eq!(err.path(), "clients.a.rate_limit.limiter");
    assert_eq!(err.suggestion(), Some("public"));

    let err = parse_err(
        "[limiters.public]\nrate_per_second = 5\n[clients.a]\nrate_limit = { limiter = \"public\", requests = 3 }",
    );
    assert_eq!(err.path(), "clients.a.rate_limit.requests");
}

#[test]
fn algorithms_build_core_limiters() {
    let config = parse_ok(
        r#"
        [limiters.tb]
        algorithm = "token_bucket"
        rate_per_second = 100.0
        burst = 20
        [limiters.half]
        rate_per_second = 0.5
        [limiters.sw]
        limit = 10
        window_seconds = 300
        [limiters.fw]
        algorithm = "fixed_window"
        requests = 60
        per = "minute"
        [limiters.cc]
        max_concurrent = 4
        "#,
    );
    match config.limiter("tb").unwrap().to_algorithm().unwrap() {
        AnyAlgorithm::Gcra(g) => {
            assert_eq!(g.quota().rate().get(), 100);
            assert_eq!(g.quota().burst().get(), 20);
            assert_eq!(g.quota().emission_interval(), MS(10));
        }
        other => panic!("expected GCRA, got {other:?}"),
    }
    match config.limiter("half").unwrap().to_algorithm().unwrap() {
        AnyAlgorithm::Gcra(g) => assert_eq!(g.quota().emission_interval(), SECS(2)),
        other => panic!("expected GCRA, got {other:?}"),
    }
    match config.limiter("sw").unwrap().to_algorithm().unwrap() {
        AnyAlgorithm::SlidingWindow(s) => {
            assert_eq!(s.quota().limit().get(), 10);
            assert_eq!(s.quota().window(), SECS(300));
        }
        other => panic!("expected sliding window, got {other:?}"),
    }
    assert!(matches!(
        config.limiter("fw").unwrap().to_algorithm().unwrap(),
        AnyAlgorithm::FixedWindow(_)
    ));
    let cc = config.limiter("cc").unwrap();
    assert_eq!(cc.algorithm, AlgorithmKind::Concurrency);
    assert_eq!(cc.max_concurrent().map(|n| n.get()), Some(4));
    let err = cc.to_algorithm().unwrap_err();
    assert_eq!(err.path(), "limiters.cc.algorithm");

    let err = parse_err("[limiters.w]\nalgorithm = \"sliding_window\"\nrate_per_second = 2.5");
    assert_eq!(err.path(), "limiters.w.rate_per_second");
    let err = parse_err("[limiters.w]\nlimit = 5\nwindow_seconds = 10\nburst = 3");
    assert_eq!(err.path(), "limiters.w.burst");
}

// ---------------------------------------------------------------------------------
// Conversions into core types

#[test]
fn settings_build_core_policies() {
    let config = parse_ok(
        r#"
        [clients.a]
        retry = { max_retries = 2, base_delay = "100ms", max_delay = "1s", jitter = "full", budget = { ratio = 0.5, min_per_sec = 3 } }
        circuit_breaker = { failure_threshold = 4, window_size = 8, timeout = "2s", half_open_requests = 2 }
        [clients.b]
        retry = { enabled = false, budget = false }
        circuit_breaker = { enabled = false }
        "#,
    );
    let a = config.client("a").unwrap();
    let policy = a
        .retry
        .to_policy_builder(ManualClock::new())
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(policy.max_retries(), 2);
    assert_eq!(policy.backoff().base_delay(), MS(100));
    assert_eq!(policy.backoff().max_delay(), SECS(1));
    assert_eq!(policy.budget().map(|b| b.min_per_sec()), Some(3));
    let breaker = a.circuit_breaker.as_ref().unwrap().to_config().unwrap();
    assert_eq!(breaker.failure_threshold(), 4);
    assert_eq!(breaker.window(), Window::Count(8));
    assert_eq!(breaker.timeout(), SECS(2));
    assert_eq!(breaker.half_open_requests(), 2);

    let b = config.client("b").unwrap();
    assert!(b.circuit_breaker.is_none());
    let policy = b
        .retry
        .to_policy_builder(ManualClock::new())
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(policy.max_retries(), 0);
    assert!(policy.budget().is_none());
}

#[test]
fn core_validation_errors_point_at_the_key() {
    let err = parse_err("[clients.a.circuit_breaker]\nfailure_threshold = 20\nwindow_size = 10");
    assert_eq!(err.path(), "clients.a.circuit_breaker.failure_threshold");
    assert!(err.expected().contains("window"), "{}", err.expected());

    let err = parse_err("[circuit_breaker]\nhalf_open_requests = 1\nsuccess_threshold = 3");
    assert_eq!(err.path(), "circuit_breaker.success_threshold");

    let err = parse_err("[clients.a.retry]\nbase_delay = \"2s\"\nmax_delay = \"1s\"");
    assert_eq!(err.path(), "clients.a.retry.max_delay");
}

// ---------------------------------------------------------------------------------
// Stores, server

#[test]
fn redis_modes_are_checked() {
    let config = parse_ok(
        r#"
        [stores.c]
        strategy = "redis"
        mode = "cluster"
        nodes = ["redis://n1:6379", "redis://n2:6379"]
        [stores.s]
        strategy = "redis"
        mode = "sentinel"
        nodes = ["redis://s1:26379"]
        sentinel_master = "mymaster"
        password = "hunter2"
        "#,
    );
    let StoreSettings::Redis(c) = config.store("c").unwrap() else {
        panic!("redis");
    };
    assert_eq!(c.mode, RedisMode::Cluster);
    assert_eq!(c.nodes.len(), 2);

    let err = parse_err(
        "[stores.s]\nstrategy = \"redis\"\nmode = \"sentinel\"\nnodes = [\"redis://s1\"]",
    );
    assert_eq!(err.path(), "stores.s.sentinel_master");
    let err = parse_err("[stores.s]\nstrategy = \"redis\"");
    assert_eq!(err.path(), "stores.s.url");
    let err = parse_err("[stores.s]\nstrategy = \"redis\"\nurl = \"http://x\"");
    assert_eq!(err.path(), "stores.s.url");
    let err = parse_err("[stores.s]\nstrategy = \"redsi\"");
    assert_eq!(err.path(), "stores.s.strategy");
    assert_eq!(err.suggestion(), Some("redis"));
    // Memory stores do not take Redis keys.
    let err = parse_err("[stores.m]\nstrategy = \"memory\"\nurl = \"redis://x\"");
    assert_eq!(err.path(), "stores.m.url");
}

#[test]
fn server_rules_parse_and_reference_limiters() {
    let config = parse_ok(
        r#"
        [limiters.login_ip]
        limit = 5
        window_seconds = 60
        [limiters.login_user]
        limit = 3
        window_seconds = 60
        [server]
        trusted_proxies = ["10.0.0.0/8", "127.0.0.1", "::1"]
        [[server.routes]]
        include = ["/login"]
        limiters = ["login_ip", "login_user"]
        mode = "most_restrictive"
        key = "header:X-Api-Key"
        "#,
    );
    let server = config.server();
    assert_eq!(server.trusted_proxies.len(), 3);
    assert!(server.trusted_proxies[0].contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
    assert_eq!(server.routes[0].mode, CompositeMode::MostRestrictive);
    // One `key` applies to every limiter of the rule.
    assert_eq!(
        server.routes[0].keys,
        vec![RouteKey::Header("x-api-key".to_owned()); 2]
    );

    let err = parse_err("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/99\"]");
    assert_eq!(err.path(), "server.trusted_proxies[1]");
    let err = parse_err(
        "[limiters.a]\nrate_per_second = 1\n[[server.routes]]\ninclude = [\"/x\"]\nlimiters = [\"b\"]",
    );
    assert_eq!(err.path(), "server.routes[0].limiters[0]");
    let err = parse_err(
        "[limiters.a]\nrate_per_second = 1\n[[server.routes]]\ninclude = [\"/x\"]\nlimiters = [\"a\"]\nmod = \"all\"",
    );
    assert_eq!(err.path(), "server.routes[0].mod");
    assert_eq!(err.suggestion(), Some("mode"));
}

// ---------------------------------------------------------------------------------
// Lookup

#[test]
fn unknown_names_are_errors_with_suggestions() {
    let config = parse_ok("[clients.stripe]\n[clients.github]");
    assert_eq!(config.client_names(), vec!["github", "stripe"]);
    let err = config.client("strpe").unwrap_err();
    assert_eq!(err.path(), "clients.strpe");
    assert_eq!(err.suggestion(), Some("stripe"));
    assert!(config.limiter("x").is_err());
    assert!(config.store("x").is_err());
}

#[test]
fn load_order_is_explicit_then_environment() {
    let dir = std::env::temp_dir().join(format!("httpower-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let explicit = dir.join("explicit.toml");
    let from_env = dir.join("from-env.toml");
    std::fs::write(&explicit, "[clients.explicit]\n").unwrap();
    std::fs::write(&from_env, "[clients.env]\n").unwrap();
    let env_path = from_env.to_string_lossy().into_owned();
    let vars = vars_from(&[("HTTPOWER_CONFIG", env_path.as_str())]);

    let c = Config::load_with_vars(Some(&explicit), &vars).unwrap();
    assert_eq!(c.client_names(), vec!["explicit"]);
    assert_eq!(c.source(), Some(explicit.as_path()));
    let c = Config::load_with_vars(None, &vars).unwrap();
    assert_eq!(c.client_names(), vec!["env"]);

    let missing = dir.join("missing.toml");
    let err = Config::load_with_vars(Some(&missing), &vars).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Io);
    assert_eq!(err.file(), Some(missing.as_path()));

    std::fs::write(&explicit, "[retry]\nmax_retrys = 1\n").unwrap();
    let err = Config::load_with_vars(Some(&explicit), &vars).unwrap_err();
    assert_eq!(err.path(), "retry.max_retrys");
    assert_eq!(err.file(), Some(explicit.as_path()));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------
// The seed configuration and the shipped examples

#[test]
fn rate_sync_seed_config_loads_unchanged() {
    let text = include_str!("fixtures/rate_sync_seed.toml");
    let vars = vars_from(&[("REDIS_URL", "redis://redis-cluster:6379/0")]);
    let config = Config::parse_with_vars(text, &vars).unwrap();

    let StoreSettings::Redis(store) = config.store("redis_prod").unwrap() else {
        panic!("redis_prod is a Redis store");
    };
    assert_eq!(store.url.as_deref(), Some("redis://redis-cluster:6379/0"));
    assert_eq!(store.max_connections, 50);
    assert_eq!(store.socket_timeout, SECS(5));
    assert_eq!(store.socket_connect_timeout, SECS(5));
    assert!(store.retry_on_timeout);
    assert_eq!(store.health_check_interval, SECS(30));

    assert_eq!(
        config.limiter_names(),
        vec!["authenticated", "login_credential", "login_ip", "public"]
    );
    let public = config.limiter("public").unwrap();
    assert_eq!(public.store_id, "redis_prod");
    assert_eq!(public.timeout, MS(100));
    assert_eq!(public.fail_mode, FailMode::Open);
    match public.to_algorithm().unwrap() {
        AnyAlgorithm::Gcra(g) => assert_eq!(g.quota().rate().get(), 100),
        other => panic!("expected GCRA, got {other:?}"),
    }
    let login = config.limiter("login_credential").unwrap();
    assert_eq!(login.fail_mode, FailMode::Closed);
    match login.to_algorithm().unwrap() {
        AnyAlgorithm::SlidingWindow(s) => {
            assert_eq!(s.quota().limit().get(), 5);
            assert_eq!(s.quota().window(), SECS(900));
        }
        other => panic!("expected sliding window, got {other:?}"),
    }

    // Without REDIS_URL, the error names the variable and where it was used.
    let err = Config::parse_with_vars(text, &no_vars).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::UnsetVariable);
    assert_eq!(err.path(), "stores.redis_prod.url");
    assert_eq!(err.found(), "REDIS_URL");
}

#[test]
fn example_httpower_toml_loads_with_demo_clients() {
    let path = repo_root().join("examples/httpower.toml");
    let vars = vars_from(&[("HTTPOWER_DEMO_UPSTREAM", "http://127.0.0.1:41234")]);
    let config = Config::from_path_with_vars(&path, &vars).unwrap();
    for name in ["flaky", "slow", "limited", "dead", "stripe"] {
        assert!(
            config.client_names().contains(&name),
            "missing client {name}"
        );
    }
    for name in ["flaky", "slow", "limited", "dead"] {
        let c = config.client(name).unwrap();
        assert_eq!(
            c.base_url.as_deref(),
            Some("http://127.0.0.1:41234"),
            "{name}"
        );
    }
    let slow = config.client("slow").unwrap();
    assert_eq!(slow.timeouts.attempt, Some(MS(400)));
    assert_eq!(slow.timeouts.total, Some(MS(1500)));
    let limited = config.client("limited").unwrap().rate_limit.unwrap();
    assert_eq!(
        limited.limiter.strategy,
        Strategy::Wait { max_wait: SECS(2) }
    );
    assert!(limited.server_feedback);
    let dead = config.client("dead").unwrap().circuit_breaker.unwrap();
    assert_eq!(dead.failure_threshold, 3);
    assert_eq!(dead.timeout, SECS(2));
    let flaky = config.client("flaky").unwrap();
    assert!(flaky.retry.max_retries >= 2);

    let stripe = config.client("stripe").unwrap();
    assert_eq!(stripe.profile.as_deref(), Some("payment_processing"));
    let auth = stripe
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str());
    assert_eq!(auth, Some("Bearer sk_test_placeholder"));

    // Without the demo variable the defaults apply.
    let config = Config::from_path_with_vars(&path, &no_vars).unwrap();
    assert_eq!(
        config.client("dead").unwrap().base_url.as_deref(),
        Some("http://127.0.0.1:8080")
    );
}

#[test]
fn example_rate_sync_toml_loads() {
    let path = repo_root().join("examples/rate-sync.toml");
    let config = Config::from_path_with_vars(&path, &no_vars).unwrap();
    assert!(config.store_names().contains(&"redis_main"));
    for name in config.limiter_names() {
        let limiter = config.limiter(name).unwrap();
        if limiter.algorithm == AlgorithmKind::Concurrency {
            assert!(limiter.max_concurrent().is_some());
        } else {
            limiter.to_algorithm().unwrap();
        }
    }
    let vars = vars_from(&[("REDIS_URL", "rediss://u:secret@redis.internal:6380/1")]);
    let config = Config::from_path_with_vars(&path, &vars).unwrap();
    let StoreSettings::Redis(r) = config.store("redis_main").unwrap() else {
        panic!("redis");
    };
    assert_eq!(
        r.url.as_deref(),
        Some("rediss://u:secret@redis.internal:6380/1")
    );
}

// ---------------------------------------------------------------------------------
// Rendering

#[test]
fn render_effective_shows_units_and_hides_secrets() {
    let vars = vars_from(&[
        ("REDIS_URL", "redis://admin:s3cr3t-url-pass@cache:6379/0"),
        ("STRIPE_API_KEY", "sk_live_abcdef123456"),
    ]);
    let config = Config::parse_with_vars(
        r#"
        [stores.main]
        strategy = "redis"
        url = "${REDIS_URL}"
        password = "s3cr3t-field-pass"

        [limiters.public]
        store_id = "main"
        rate_per_second = 100.0
        timeout = 0.25

        [clients.stripe]
        base_url = "https://api.stripe.com"
        profile = "payment_processing"
        headers = { Authorization = "Bearer ${STRIPE_API_KEY}", Accept = "application/json", X-Session-Token = "tok_visible?" }
        timeouts = { attempt = "400ms" }
        "#,
        &vars,
    )
    .unwrap();
    let text = config.render_effective();
    for secret in [
        "s3cr3t-url-pass",
        "s3cr3t-field-pass",
        "sk_live_abcdef123456",
        "admin",
        "tok_visible",
    ] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert!(text.contains("[redacted]"), "{text}");
    assert!(text.contains("redis://[redacted]@cache:6379/0"), "{text}");
    assert!(text.contains("\"Accept\" = \"application/json\""), "{text}");
    assert!(text.contains("[clients.stripe]"), "{text}");
    assert!(text.contains("[limiters.public]"), "{text}");
    assert!(text.contains("[stores.main]"), "{text}");
    assert!(text.contains("attempt = \"400ms\""), "{text}");
    assert!(text.contains("timeout = \"250ms\""), "{text}");
    assert!(text.contains("max_delay = \"10s\""), "{text}");
    assert!(text.contains("socket_timeout = \"5s\""), "{text}");
    assert!(text.contains("max_retry_after = \"1m\""), "{text}");
    // Every duration line carries a unit: no bare number follows a duration key.
    for line in text.lines() {
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        let is_duration_key =
            key.ends_with("timeout") || key.ends_with("delay") || key.ends_with("interval");
        if is_duration_key && value != "true" && value != "false" {
            assert!(value.starts_with('"'), "duration without unit: {line}");
        }
    }
}

#[test]
fn rendered_text_is_valid_toml() {
    let path = repo_root().join("examples/httpower.toml");
    let config = Config::from_path_with_vars(&path, &no_vars).unwrap();
    let text = config.render_effective();
    if let Err(e) = text.parse::<toml::Table>() {
        panic!("rendered text is not TOML: {e}\n{text}");
    }
}

#[test]
fn an_empty_file_means_the_built_in_defaults() {
    assert_eq!(parse_ok(""), Config::default());
    let d = Config::default();
    assert!(d.client_names().is_empty());
    assert_eq!(d.store_names(), vec!["memory"]);
    assert!(d.defaults().circuit_breaker.is_some());
    assert!(d.defaults().rate_limit.is_none());
}

#[test]
fn max_wait_time_alone_means_the_wait_strategy() {
    let config = parse_ok(
        r#"
        [clients.w]
        rate_limit = { requests = 5, max_wait_time = 1500 }
        [clients.e]
        rate_limit = { requests = 5, max_wait_time = 1500, strategy = "error" }
        [clients.d]
        rate_limit = { requests = 5, strategy = "wait" }
        "#,
    );
    let strategy = |name: &str| {
        config
            .client(name)
            .unwrap()
            .rate_limit
            .unwrap()
            .limiter
            .strategy
    };
    assert_eq!(strategy("w"), Strategy::Wait { max_wait: MS(1500) });
    assert_eq!(strategy("e"), Strategy::Error);
    assert_eq!(strategy("d"), Strategy::Wait { max_wait: SECS(5) });
}
