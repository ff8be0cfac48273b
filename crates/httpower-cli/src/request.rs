//! `httpower request`: one request through the client's policies.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use http::Method;
use httpower::config::Config;
use httpower::{ClientBuilder, ClientEvent};

use crate::output;

/// Arguments of `httpower request`.
#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The method (GET, POST, ...).
    method: String,
    /// The URL, absolute or relative to the client's base_url.
    url: String,
    /// A header, `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// A JSON body (sets content-type: application/json).
    #[arg(long, conflicts_with = "data")]
    json: Option<String>,
    /// A raw body.
    #[arg(long, short = 'd')]
    data: Option<String>,
    /// The configuration file (default: $HTTPOWER_CONFIG, then ./httpower.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// The client profile from the configuration (`[clients.NAME]`).
    #[arg(long)]
    client: Option<String>,
    /// Total timeout for the request, e.g. `10s` or `500ms`.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Allow retrying a POST/PATCH.
    #[arg(long)]
    retry_safe: bool,
    /// Exit with status 22 when the response status is 4xx or 5xx.
    #[arg(long)]
    fail: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    httpower::config::parse_duration(text)
}

fn builder(args: &RequestArgs) -> Result<ClientBuilder, String> {
    match &args.client {
        Some(name) => {
            let config = Config::load(args.config.as_deref()).map_err(|err| err.to_string())?;
            ClientBuilder::from_config(&config, name).map_err(|err| err.to_string())
        }
        None => {
            if args.config.is_some() {
                return Err("--config needs --client NAME to pick a client profile".to_owned());
            }
            Ok(ClientBuilder::new())
        }
    }
}

/// Runs the command.
pub(crate) async fn run(args: RequestArgs) -> ExitCode {
    let builder = match builder(&args) {
        Ok(builder) => builder,
        Err(message) => return output::fail(&message),
    };
    let client = builder.on_event(report_event).build();
    let client = match client {
        Ok(client) => client,
        Err(err) => return output::fail(&format!("{}: {err}", err.name())),
    };
    let Ok(method) = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes()) else {
        return output::fail(&format!("invalid method `{}`", args.method));
    };
    let mut request = client.request(method, &args.url);
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            return output::fail(&format!("header `{header}` is not `name: value`"));
        };
        request = request.append_header(name.trim(), value.trim());
    }
    if let Some(json) = &args.json {
        let value: serde_json::Value = match serde_json::from_str(json) {
            Ok(value) => value,
            Err(err) => return output::fail(&format!("--json is not valid JSON: {err}")),
        };
        request = request.json(&value);
    }
    if let Some(data) = &args.data {
        request = request.body(data.clone());
    }
    if let Some(timeout) = args.timeout {
        request = request.timeout(timeout);
    }
    if args.retry_safe {
        request = request.retry_safe(true);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => {
            let mut message = format!("{}: {err}", err.name());
            if err.attempts() > 0 {
                let attempts = err.attempts();
                let noun = if attempts == 1 { "attempt" } else { "attempts" };
                message.push_str(&format!(" [{attempts} {noun}]"));
            }
            if let Some(retry_after) = err.retry_after() {
                message.push_str(&format!(" [retry after {retry_after:?}]"));
            }
            return output::fail(&message);
        }
    };
    let status = response.status();
    output::out(&format!("{:?} {}", response.version(), status));
    for (name, value) in response.headers() {
        output::out(&format!(
            "{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    output::out("");
    if response.attempts() > 1 {
        output::note(&format!("# {} attempts", response.attempts()));
    }
    match response.bytes().await {
        Ok(body) => {
            if let Err(err) = output::out_bytes(&body) {
                return output::fail(&format!("cannot write the body: {err}"));
            }
        }
        Err(err) => return output::fail(&format!("{}: {err}", err.name())),
    }
    if args.fail && (status.is_client_error() || status.is_server_error()) {
        return ExitCode::from(22);
    }
    ExitCode::SUCCESS
}

/// Retries and waits, on stderr, as they happen.
fn report_event(event: &ClientEvent) {
    match event {
        ClientEvent::Retry {
            attempt,
            reason,
            delay,
            from_retry_after,
            ..
        } => output::note(&format!(
            "# attempt {attempt} failed ({reason}); retrying in {delay:?}{}",
            if *from_retry_after {
                " (Retry-After)"
            } else {
                ""
            }
        )),
        ClientEvent::RateLimitWait { waited, server, .. } => output::note(&format!(
            "# waited {waited:?} for the {} rate limit",
            if *server { "server's" } else { "client" }
        )),
        ClientEvent::RateLimited { retry_after, .. } => {
            output::note(&format!("# rate limited; retry after {retry_after:?}"));
        }
        ClientEvent::CircuitOpen {
            key, retry_after, ..
        } => output::note(&format!(
            "# circuit for {key} is open; retry after {retry_after:?}"
        )),
        other => output::note(&format!("# {}", other.name())),
    }
}
