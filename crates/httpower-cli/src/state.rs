//! `httpower state` and `httpower reset`: look at and clear the limiter state that a
//! configuration's stores hold.
//!
//! Only a shared store (Redis) has state worth showing: a memory store lives inside
//! each process, so this process's copy is empty and says nothing about the others.
//! Circuit breakers are per process too; both are said plainly instead of showing
//! numbers that would mean nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use httpower::config::{Config, LimiterSettings, StoreSettings};
use httpower::core::rate::Decision;
use httpower::stores::Stores;

use crate::output;

/// Arguments of `httpower state`.
#[derive(Debug, Args)]
pub(crate) struct StateArgs {
    /// The configuration file (default: $HTTPOWER_CONFIG, then ./httpower.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Only this limiter (`[limiters.NAME]`); default: every named limiter.
    #[arg(long)]
    limiter: Option<String>,
    /// Show this identifier (an IP, an API key, ...) instead of listing identifiers.
    #[arg(long)]
    key: Option<String>,
    /// The most identifiers listed per limiter when no --key is given.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max: u32,
}

/// Arguments of `httpower reset`.
#[derive(Debug, Args)]
pub(crate) struct ResetArgs {
    /// The configuration file (default: $HTTPOWER_CONFIG, then ./httpower.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// The limiter whose state is dropped (`[limiters.NAME]`).
    #[arg(long)]
    limiter: String,
    /// Only this identifier; default: every identifier of the limiter.
    #[arg(long)]
    key: Option<String>,
}

/// Prints the health of the stores the selected limiters use and the state they
/// hold; exits 1 when a store is unreachable or the configuration is invalid.
pub(crate) async fn run_state(args: StateArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(err) => return output::fail(&err.to_string()),
    };
    let names: Vec<String> = match &args.limiter {
        Some(name) => vec![name.clone()],
        None => config
            .limiter_names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    };
    let mut limiters = Vec::new();
    for name in &names {
        match config.limiter(name) {
            Ok(settings) => limiters.push(settings),
            Err(err) => return output::fail(&err.to_string()),
        }
    }
    if limiters.is_empty() {
        output::out("no [limiters.*] in this configuration");
    }
    let stores = Stores::new(&config);

    // Stores first: whether each is reachable decides what can be shown below.
    let used: BTreeSet<&str> = limiters.iter().map(|l| l.store_id.as_str()).collect();
    let mut down = BTreeSet::new();
    for name in &used {
        if !store_health(&stores, name).await {
            down.insert((*name).to_owned());
        }
    }

    let mut failed = !down.is_empty();
    for settings in &limiters {
        output::out("");
        output::out(&format!(
            "[limiters.{}] {} on store `{}`",
            settings.name,
            settings.algorithm.name(),
            settings.store_id
        ));
        if down.contains(&settings.store_id) {
            output::out(&format!(
                "  not shown: store `{}` is unreachable",
                settings.store_id
            ));
            continue;
        }
        if !limiter_state(&stores, settings, args.key.as_deref(), args.max as usize).await {
            failed = true;
        }
    }

    if args.limiter.is_none() {
        let breakers: Vec<&str> = config
            .client_names()
            .into_iter()
            .filter(|name| {
                config
                    .client(name)
                    .is_ok_and(|c| c.circuit_breaker.is_some())
            })
            .collect();
        if !breakers.is_empty() {
            output::out("");
            for name in breakers {
                output::out(&format!(
                    "[clients.{name}] circuit breaker: in-process only; its state lives in \
                     each running process, which this command cannot see"
                ));
            }
        }
    }

    if failed {
        let list: Vec<&str> = down.iter().map(String::as_str).collect();
        return if list.is_empty() {
            output::fail("some state could not be read (see above)")
        } else {
            output::fail(&format!("unreachable store(s): {}", list.join(", ")))
        };
    }
    ExitCode::SUCCESS
}

/// Prints one store's health line; false when the store cannot be used.
async fn store_health(stores: &Stores, name: &str) -> bool {
    match stores.settings(name) {
        Ok(StoreSettings::Memory(_)) => {
            output::out(&format!(
                "store `{name}` (memory): in-process; each process keeps its own state, \
                 nothing shared to show"
            ));
            return true;
        }
        Ok(StoreSettings::Redis(_)) => {}
        Err(err) => {
            output::out(&format!("store `{name}`: {err}"));
            return false;
        }
    }
    let store = match stores.get(name) {
        Ok(store) => store,
        Err(err) => {
            output::out(&format!("store `{name}` (redis): {err}"));
            return false;
        }
    };
    let what = match stores.redis(name) {
        Ok(Some(redis)) => format!(
            "redis, {}, key prefix \"{}\"",
            redis.topology(),
            redis.key_prefix()
        ),
        _ => "redis".to_owned(),
    };
    let health = match store.health().await {
        Ok(health) => health,
        Err(err) => {
            output::out(&format!("store `{name}` ({what}): unreachable: {err}"));
            return false;
        }
    };
    if health.reachable {
        output::out(&format!(
            "store `{name}` ({what}): reachable, latency {}",
            format_duration(health.latency)
        ));
        true
    } else {
        output::out(&format!(
            "store `{name}` ({what}): unreachable after {}: {}",
            format_duration(health.latency),
            health.detail.as_deref().unwrap_or("no answer")
        ));
        false
    }
}

/// Prints the state of one limiter; false when reading it failed.
async fn limiter_state(
    stores: &Stores,
    settings: &LimiterSettings,
    key: Option<&str>,
    max: usize,
) -> bool {
    if matches!(
        stores.settings(&settings.store_id),
        Ok(StoreSettings::Memory(_))
    ) {
        output::out("  memory store: no shared state to show");
        return true;
    }
    if let Some(permits) = settings.max_concurrent() {
        output::out(&format!(
            "  concurrency limiter ({permits} at once): in-flight leases are not shown"
        ));
        return true;
    }
    let limiter = match stores.limiter(settings) {
        Ok(limiter) => limiter,
        Err(err) => {
            output::out(&format!("  {err}"));
            return false;
        }
    };
    let keys = match key {
        Some(key) => vec![key.to_owned()],
        None => {
            let redis = match stores.redis(&settings.store_id) {
                Ok(Some(redis)) => redis,
                Ok(None) => return true,
                Err(err) => {
                    output::out(&format!("  {err}"));
                    return false;
                }
            };
            match redis.identifiers(&settings.name, max).await {
                Ok(ids) if ids.is_empty() => {
                    output::out("  no identifiers hold state");
                    return true;
                }
                Ok(ids) => {
                    if ids.len() >= max {
                        output::out(&format!("  first {max} identifiers (--max to see more):"));
                    }
                    ids
                }
                Err(err) => {
                    output::out(&format!("  cannot list identifiers: {err}"));
                    return false;
                }
            }
        }
    };
    let mut ok = true;
    for key in keys {
        match limiter.key(&key).inspect().await {
            Ok(decision) => output::out(&format!("  {key}: {}", describe(&decision))),
            Err(err) => {
                output::out(&format!("  {key}: {err}"));
                ok = false;
            }
        }
    }
    ok
}

/// `7/10 remaining, full again in 12.0s` (plus the retry time when over the limit).
fn describe(decision: &Decision) -> String {
    let mut text = format!(
        "{}/{} remaining, full again in {}",
        decision.remaining,
        decision.limit,
        format_duration(decision.reset_after)
    );
    if !decision.allowed || decision.remaining == 0 {
        text.push_str(&format!(
            ", over the limit: retry after {}",
            format_duration(decision.retry_after)
        ));
    }
    text
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{:.1}ms", secs * 1000.0)
    } else {
        format!("{secs:.1}s")
    }
}

/// Drops one identifier's state, or all of a limiter's; prints how many keys went.
pub(crate) async fn run_reset(args: ResetArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(err) => return output::fail(&err.to_string()),
    };
    let settings = match config.limiter(&args.limiter) {
        Ok(settings) => settings,
        Err(err) => return output::fail(&err.to_string()),
    };
    let stores = Stores::new(&config);
    match stores.settings(&settings.store_id) {
        Ok(StoreSettings::Memory(_)) => {
            output::out(&format!(
                "limiter `{}` is on the memory store `{}`: its state lives inside each \
                 process, nothing shared to reset (0 keys dropped)",
                settings.name, settings.store_id
            ));
            return ExitCode::SUCCESS;
        }
        Ok(StoreSettings::Redis(_)) => {}
        Err(err) => return output::fail(&err.to_string()),
    }
    let store = match stores.get(&settings.store_id) {
        Ok(store) => store,
        Err(err) => return output::fail(&err.to_string()),
    };
    match store.reset(&settings.name, args.key.as_deref()).await {
        Ok(dropped) => {
            let what = match &args.key {
                Some(key) => format!("key `{key}` of limiter `{}`", settings.name),
                None => format!("every key of limiter `{}`", settings.name),
            };
            let plural = if dropped == 1 { "" } else { "s" };
            output::out(&format!("reset {what}: {dropped} key{plural} dropped"));
            ExitCode::SUCCESS
        }
        Err(err) => output::fail(&format!(
            "cannot reset limiter `{}` on store `{}`: {err}",
            settings.name, settings.store_id
        )),
    }
}
