//! `httpower demo`: an embedded flaky upstream, a bounded workload driven
//! through httpower clients, live progress and a summary table.
//!
//! - [`upstream`] is the local server the clients talk to: endpoints that fail,
//!   stall, rate-limit or are down, deterministically.
//! - [`report`] collects what each client did and renders the summary.

pub(crate) mod report;
pub(crate) mod upstream;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use httpower::config::Config;
use httpower::core::clock::MonotonicClock;
use httpower::core::store::Store;
use httpower::redis::RedisStore;
use httpower::stores::Stores;
use httpower::{ClientBuilder, ClientEvent};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use tokio::task::JoinSet;

use crate::output;
use report::{render_summary, ClientReport};
use upstream::{Upstream, UpstreamConfig};

/// The configuration the demo runs with unless `--config` names another.
const EXAMPLE_CONFIG: &str = include_str!("../../../../examples/httpower.toml");

/// The clients the demo drives, each against the endpoint of the same name.
const DEMO_CLIENTS: [&str; 4] = ["flaky", "slow", "limited", "dead"];

/// The whole run is cut off after this long, whatever the configuration says.
const RUN_LIMIT: Duration = Duration::from_secs(25);

/// Arguments of `httpower demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// A configuration with `[clients.flaky]`, `[clients.slow]`, `[clients.limited]`
    /// and `[clients.dead]` (default: the bundled examples/httpower.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Requests per client.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=1000))]
    requests: u32,
    /// Requests in flight at once, per client.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    concurrency: u32,
    /// Keep the clients' limiter state in Redis at this URL instead of in memory
    /// (keys under `httpower-demo:<pid>`, so runs never share state).
    #[arg(long)]
    redis: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Log lines on stderr from this level up (`off`, `error`, `warn`, `info`, `debug`,
    /// `trace`). At `warn`, every retry, refusal and breaker change, with its
    /// request's correlation id; at `info`, every request and response too.
    #[arg(long, default_value = "warn")]
    log: String,
    /// Print the Prometheus exposition of the run's metrics after the summary.
    #[arg(long)]
    metrics: bool,
}

fn load_config(args: &DemoArgs, upstream: &str) -> Result<Config, String> {
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?,
        None => EXAMPLE_CONFIG.to_owned(),
    };
    let vars = |name: &str| {
        if name == "HTTPOWER_DEMO_UPSTREAM" {
            Some(upstream.to_owned())
        } else {
            std::env::var(name).ok()
        }
    };
    Config::parse_with_vars(&text, &vars).map_err(|err| err.to_string())
}

/// Runs the demo.
pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    let redis = match &args.redis {
        Some(url) => match redis_store(url).await {
            Ok(store) => Some(store),
            Err(message) => return output::fail(&message),
        },
        None => None,
    };
    let upstream = match Upstream::start(UpstreamConfig::default()).await {
        Ok(upstream) => upstream,
        Err(err) => return output::fail(&format!("cannot start the demo upstream: {err}")),
    };
    let config = match load_config(&args, &upstream.base_url()) {
        Ok(config) => config,
        Err(message) => return output::fail(&message),
    };
    let store_line = match (&redis, &args.redis) {
        (Some(_), Some(url)) => format!("redis store at {}", redact_url(url)),
        _ => "memory store".to_owned(),
    };
    output::note(&format!(
        "httpower demo: upstream on {}, {} clients x {} requests ({} in flight each), {store_line}",
        upstream.base_url(),
        DEMO_CLIENTS.len(),
        args.requests,
        args.concurrency
    ));

    let metrics = if args.metrics {
        match httpower::observe::prometheus::install() {
            Ok(handle) => Some(handle),
            Err(err) => return output::fail(&err.to_string()),
        }
    } else {
        None
    };

    let total = u64::from(args.requests) * DEMO_CLIENTS.len() as u64;
    let progress = if args.quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} requests  {msg}",
        ) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    };

    if let Err(message) = crate::logging::install(&args.log, Some(progress.clone())) {
        return output::fail(&message);
    }

    let started = Instant::now();
    let mut reports = Vec::new();
    let mut tasks = JoinSet::new();
    let stores = Stores::new(&config);
    for name in DEMO_CLIENTS {
        let report = Arc::new(Mutex::new(ClientReport::new(name)));
        let builder = match &redis {
            // Every client's limiter on the one Redis store, whatever its store_id.
            Some(store) => {
                config
                    .client(name)
                    .map_err(httpower::Error::from)
                    .and_then(|settings| {
                        ClientBuilder::from_settings_with_store(
                            &settings,
                            MonotonicClock,
                            Some(Arc::clone(store) as Arc<dyn Store>),
                        )
                    })
            }
            None => ClientBuilder::from_config_with_stores(&config, name, &stores, MonotonicClock),
        };
        let builder = match builder {
            Ok(builder) => builder,
            Err(err) => return output::fail(&err.to_string()),
        };
        let hook_report = Arc::clone(&report);
        let client = builder
            .on_event(move |event| record_event(&hook_report, event))
            .build();
        let client = match client {
            Ok(client) => client,
            Err(err) => return output::fail(&format!("client `{name}`: {err}")),
        };
        if let Some(breakers) = client.breakers() {
            let mut changes = breakers.subscribe();
            let transitions = Arc::clone(&report);
            tokio::spawn(async move {
                while let Ok(change) = changes.recv().await {
                    transitions
                        .lock()
                        .record_transition(&change.from.to_string(), &change.to.to_string());
                }
            });
        }
        reports.push(Arc::clone(&report));
        tasks.spawn(drive(
            client,
            format!("/{name}"),
            args.requests,
            args.concurrency,
            report,
            progress.clone(),
        ));
    }

    let finished = tokio::time::timeout(RUN_LIMIT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let hits = upstream.hits();
    upstream.shutdown().await;
    let reports: Vec<ClientReport> = reports.iter().map(|report| report.lock().clone()).collect();
    output::out(&render_summary(&reports, Some(&hits), elapsed));
    if let Some(store) = &redis {
        let stats = store.stats();
        output::out(&format!(
            "redis store: {} round trips, {} answered by the local deny cache, keys under \"{}:\"",
            stats.round_trips,
            stats.deny_cache_hits,
            store.key_prefix()
        ));
    }
    if let Some(metrics) = metrics {
        output::out("");
        output::out(&metrics.render());
    }
    if finished.is_err() {
        return output::fail(&format!(
            "the workload did not finish within {RUN_LIMIT:?}; the summary is partial"
        ));
    }
    ExitCode::SUCCESS
}

/// The Redis store of `--redis URL`, with the run's own key prefix. An unreachable
/// Redis is reported but does not stop the demo: the limiters fail open.
async fn redis_store(url: &str) -> Result<Arc<RedisStore>, String> {
    let store = RedisStore::builder(url)
        .name("redis")
        .key_prefix(format!("httpower-demo:{}", std::process::id()))
        .connect_timeout(Duration::from_secs(1))
        .command_timeout(Duration::from_secs(1))
        .build()
        .map_err(|err| format!("--redis: {err}"))?;
    match store.health().await {
        Ok(health) if health.reachable => {}
        Ok(health) => output::note(&format!(
            "warning: redis store at {} is unreachable ({}); the limiters fail open, so the \
             demo runs without its rate limits",
            redact_url(url),
            health.detail.as_deref().unwrap_or("no answer")
        )),
        Err(err) => output::note(&format!(
            "warning: redis store at {} is unreachable ({err}); the limiters fail open, so \
             the demo runs without its rate limits",
            redact_url(url)
        )),
    }
    Ok(Arc::new(store))
}

/// `url` without its password (`redis://user:[redacted]@host`).
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let user = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:[redacted]"),
        None => userinfo.to_owned(),
    };
    format!("{}{user}{}", &url[..scheme_end], &url[scheme_end + at..])
}

/// Sends `requests` GETs to `path`, `concurrency` at a time.
async fn drive(
    client: httpower::Client,
    path: String,
    requests: u32,
    concurrency: u32,
    report: Arc<Mutex<ClientReport>>,
    progress: ProgressBar,
) {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency as usize));
    let mut in_flight = JoinSet::new();
    for _ in 0..requests {
        let Ok(slot) = Arc::clone(&semaphore).acquire_owned().await else {
            break;
        };
        let client = client.clone();
        let path = path.clone();
        let report = Arc::clone(&report);
        let progress = progress.clone();
        in_flight.spawn(async move {
            let sent = Instant::now();
            let result = client.get(&path).send().await;
            let latency = sent.elapsed();
            {
                let mut report = report.lock();
                match result {
                    Ok(response) => {
                        report.record_attempts(u64::from(response.attempts()));
                        if response.status().is_success() {
                            report.record_success(latency);
                        } else {
                            report.record_failure(response.status().as_u16().to_string(), latency);
                        }
                    }
                    Err(err) => {
                        report.record_attempts(u64::from(err.attempts()));
                        report.record_failure(err.reason().root().name(), latency);
                    }
                }
            }
            progress.inc(1);
            drop(slot);
        });
    }
    while in_flight.join_next().await.is_some() {}
}

fn record_event(report: &Mutex<ClientReport>, event: &ClientEvent) {
    let mut report = report.lock();
    match event {
        ClientEvent::Retry { reason, .. } => report.record_retry(reason.as_ref()),
        ClientEvent::RateLimitWait { waited, .. } => report.record_limiter_wait(*waited),
        ClientEvent::RateLimited { .. } => report.record_limiter_denial(),
        ClientEvent::StoreFallback { admitted, .. } => report.record_store_fallback(*admitted),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(
            redact_url("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://:[redacted]@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("rediss://app:hunter2@cache:6380"),
            "rediss://app:[redacted]@cache:6380"
        );
        assert_eq!(redact_url("redis://app@cache"), "redis://app@cache");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
