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
    /// Keep limiter state in Redis at this URL instead of in memory.
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
    if args.redis.is_some() {
        return output::fail(
            "--redis needs the Redis store, which this build does not include yet; \
             run `httpower demo` without it to use the in-memory store",
        );
    }
    let upstream = match Upstream::start(UpstreamConfig::default()).await {
        Ok(upstream) => upstream,
        Err(err) => return output::fail(&format!("cannot start the demo upstream: {err}")),
    };
    let config = match load_config(&args, &upstream.base_url()) {
        Ok(config) => config,
        Err(message) => return output::fail(&message),
    };
    output::note(&format!(
        "httpower demo: upstream on {}, {} clients x {} requests ({} in flight each), memory store",
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
    for name in DEMO_CLIENTS {
        let report = Arc::new(Mutex::new(ClientReport::new(name)));
        let builder = match ClientBuilder::from_config(&config, name) {
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
        _ => {}
    }
}
