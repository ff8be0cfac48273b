//! End-to-end tests of the `httpower` binary: each test runs the real executable as a
//! child process (with a deadline, killed on overrun) and checks its exit code, stdout
//! and stderr. `request` tests talk to a small HTTP/1.1 server on 127.0.0.1 that the
//! test runs in a thread and that records what it received.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_httpower");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/httpower.toml");
const RATE_SYNC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rate-sync.toml");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// How long a command may run before the test kills it and fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// Variables the tests control: removed from the child's environment unless a test
/// sets them, so that the developer's shell cannot change the outcome.
const SCRUBBED_VARS: [&str; 11] = [
    "HTTPOWER_CONFIG",
    "HTTPOWER_TEST_UPSTREAM",
    "HTTPOWER_TEST_UNSET_VAR",
    "STRIPE_API_KEY",
    "REDIS_URL",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

// ---------------------------------------------------------------------------
// Running the binary.

/// One `httpower` invocation.
struct Httpower {
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    deadline: Duration,
}

/// What a finished invocation left behind.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Both streams, for assertion messages.
    fn dump(&self) -> String {
        format!(
            "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(self.code(), Some(code), "{}", self.dump());
    }

    fn assert_absent(&self, needle: &str) {
        assert!(
            !self.stdout.contains(needle) && !self.stderr.contains(needle),
            "`{needle}` leaked:\n{}",
            self.dump()
        );
    }
}

fn httpower<I, S>(args: I) -> Httpower
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Httpower {
        args: args.into_iter().map(Into::into).collect(),
        env: Vec::new(),
        // No httpower.toml here, so the default lookup finds nothing by accident.
        dir: PathBuf::from(FIXTURES),
        deadline: DEADLINE,
    }
}

impl Httpower {
    fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Runs the command to completion; kills it and fails the test if it overruns
    /// its deadline.
    fn run(self) -> Run {
        let mut command = Command::new(BIN);
        command
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in SCRUBBED_VARS {
            command.env_remove(name);
        }
        command.env("NO_PROXY", "*");
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn httpower");
        let stdout = drain(child.stdout.take().expect("piped stdout"));
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("poll httpower") {
                break Some(status);
            }
            if started.elapsed() > self.deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = stdout.join().expect("stdout reader");
        let stderr = stderr.join().expect("stderr reader");
        match status {
            Some(status) => Run {
                status,
                stdout,
                stderr,
            },
            None => panic!(
                "httpower {:?} did not finish within {:?}; killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                self.args, self.deadline
            ),
        }
    }
}

/// Reads a child's pipe to the end on its own thread, so a full pipe never blocks it.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

// ---------------------------------------------------------------------------
// A local HTTP/1.1 server.

/// A request as the server received it; header names lowercased.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    /// The first value of header `name` (lowercase).
    fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of header `name` (lowercase), in the order received.
    fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// What the server answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// Serves connections one at a time (`connection: close` on every answer) until
/// dropped, or for at most a minute.
struct Server {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// `handler` gets the 1-based number of the request and the request.
    fn start(handler: impl Fn(usize, &Seen) -> Reply + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let seen = Arc::clone(&seen);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &seen, &handler),
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(_) => break,
                    }
                }
            })
        };
        Self {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Seen>>, handler: &dyn Fn(usize, &Seen) -> Reply) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Some(request) = read_request(&stream) else {
        return;
    };
    let number = {
        let mut seen = seen.lock().unwrap();
        seen.push(request.clone());
        seen.len()
    };
    let reply = handler(number, &request);
    let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        reply.body.len()
    ));
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(reply.body.as_bytes());
    let _ = stream.flush();
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, len)| len.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

/// A port on 127.0.0.1 with nothing listening: bound, then released.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}

// ---------------------------------------------------------------------------
// Help.

#[test]
fn help_lists_the_commands() {
    let run = httpower(["--help"]).run();
    run.assert_code(0);
    for command in ["demo", "request", "check"] {
        assert!(
            run.stdout
                .lines()
                .any(|line| line.trim_start().starts_with(command)),
            "`{command}` missing from the help:\n{}",
            run.dump()
        );
    }
}

// ---------------------------------------------------------------------------
// check

#[test]
fn check_example_prints_every_client_with_units() {
    let run = httpower(["check", "--config", EXAMPLE]).run();
    run.assert_code(0);
    for client in ["flaky", "slow", "limited", "dead", "stripe"] {
        assert!(
            run.stdout.contains(&format!("[clients.{client}]\n")),
            "client `{client}` missing:\n{}",
            run.dump()
        );
    }
    // Durations carry their unit, as written and as merged from the defaults.
    for line in [
        "base_delay = \"100ms\"",
        "max_delay = \"800ms\"",
        "attempt = \"400ms\"",
        "total = \"1500ms\"",
        "connect = \"2s\"",
        "max_wait_time = \"2s\"",
        "idle_timeout = \"5m\"",
    ] {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "`{line}` missing:\n{}",
            run.dump()
        );
    }
    assert!(run.stdout.contains(EXAMPLE), "{}", run.dump());
    assert!(
        run.stderr.contains("configuration is valid"),
        "{}",
        run.dump()
    );
}

#[test]
fn check_redacts_the_authorization_header_default() {
    let run = httpower(["check", "--config", EXAMPLE]).run();
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("\"Authorization\" = \"[redacted]\", \"Stripe-Version\" = \"2024-06-20\""),
        "{}",
        run.dump()
    );
    run.assert_absent("sk_test_placeholder");
}

#[test]
fn check_redacts_the_authorization_header_from_the_environment() {
    let run = httpower(["check", "--config", EXAMPLE])
        .env("STRIPE_API_KEY", "sk_live_secret123")
        .run();
    run.assert_code(0);
    assert!(
        run.stdout.contains("\"Authorization\" = \"[redacted]\""),
        "{}",
        run.dump()
    );
    run.assert_absent("sk_live_secret123");
    run.assert_absent("sk_test_placeholder");
}

#[test]
fn check_rejects_a_misspelled_key_naming_its_path_and_the_right_key() {
    let run = httpower(["check", "--config", &fixture("misspelled-key.toml")]).run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("clients.api.retry.max_retires"),
        "{}",
        run.dump()
    );
    assert!(
        run.stderr.contains("did you mean \"max_retries\""),
        "{}",
        run.dump()
    );
    assert!(run.stdout.is_empty(), "{}", run.dump());
}

#[test]
fn check_rejects_an_unset_variable_without_default() {
    let run = httpower(["check", "--config", &fixture("unset-var.toml")]).run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("clients.api.base_url"),
        "{}",
        run.dump()
    );
    assert!(
        run.stderr.contains("`HTTPOWER_TEST_UNSET_VAR` is not set"),
        "{}",
        run.dump()
    );
    assert!(run.stdout.is_empty(), "{}", run.dump());
}

#[test]
fn check_reports_a_missing_file() {
    let missing = fixture("does-not-exist.toml");
    let run = httpower(["check", "--config", &missing]).run();
    run.assert_code(1);
    assert!(
        run.stderr.starts_with("error: ")
            && run.stderr.contains(&missing)
            && run.stderr.contains("cannot read the configuration"),
        "{}",
        run.dump()
    );
    assert!(run.stdout.is_empty(), "{}", run.dump());
}

#[test]
fn check_reads_httpower_config_when_no_config_is_given() {
    let path = fixture("env-selected.toml");
    let run = httpower(["check"]).env("HTTPOWER_CONFIG", &path).run();
    run.assert_code(0);
    assert!(
        run.stdout.contains("[clients.from_env]\n"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout.contains(&format!("# source: {path}")),
        "{}",
        run.dump()
    );
}

#[test]
fn check_prefers_config_over_httpower_config() {
    let run = httpower(["check", "--config", &fixture("env-selected.toml")])
        .env("HTTPOWER_CONFIG", &fixture("misspelled-key.toml"))
        .run();
    run.assert_code(0);
    assert!(
        run.stdout.contains("[clients.from_env]\n"),
        "{}",
        run.dump()
    );
}

#[test]
fn check_reports_a_missing_file_named_by_httpower_config() {
    let missing = fixture("does-not-exist.toml");
    let run = httpower(["check"]).env("HTTPOWER_CONFIG", &missing).run();
    run.assert_code(1);
    assert!(
        run.stderr.contains(&missing) && run.stderr.contains("cannot read the configuration"),
        "{}",
        run.dump()
    );
}

#[test]
fn check_reads_httpower_toml_in_the_working_directory() {
    let run = httpower(["check"]).dir(fixture("cwd")).run();
    run.assert_code(0);
    assert!(
        run.stdout.contains("[clients.from_cwd]\n"),
        "{}",
        run.dump()
    );
}

#[test]
fn check_rate_sync_redacts_the_redis_password() {
    let run = httpower(["check", "--config", RATE_SYNC])
        .env("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")
        .run();
    run.assert_code(0);
    assert!(
        run.stdout.contains("[stores.redis_main]\n"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout
            .lines()
            .any(|line| line.starts_with("url = ") && line.contains("127.0.0.1:6379/0")),
        "{}",
        run.dump()
    );
    run.assert_absent("hunter2");
}

// ---------------------------------------------------------------------------
// request

#[test]
fn request_get_prints_status_headers_and_body() {
    let server = Server::start(|_, _| {
        Reply::new(200, "hello from the test server").header("x-served-by", "cli-test")
    });
    let run = httpower(["request", "GET", &server.url("/hello"), "-H", "x-test: 1"]).run();
    run.assert_code(0);
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"), "{}", run.dump());
    assert!(
        run.stdout.lines().any(|l| l == "x-served-by: cli-test"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout.lines().any(|l| l == "content-length: 26"),
        "{}",
        run.dump()
    );
    // Headers, a blank line, then the body.
    assert!(
        run.stdout.ends_with("\n\nhello from the test server\n"),
        "{}",
        run.dump()
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let seen = &requests[0];
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/hello");
    assert_eq!(seen.header("x-test"), Some("1"), "{seen:?}");
    let id = seen.header("x-request-id").unwrap_or_default();
    assert!(
        id.starts_with("req_") && id.len() > 4,
        "x-request-id: {id:?}"
    );
}

#[test]
fn request_retries_503_with_retry_after() {
    let server = Server::start(|n, _| {
        if n <= 2 {
            Reply::new(503, "busy").header("retry-after", "0")
        } else {
            Reply::new(200, "finally")
        }
    });
    let run = httpower(["request", "GET", &server.url("/flaky")]).run();
    run.assert_code(0);
    assert_eq!(server.hits(), 3);
    assert!(
        run.stdout.starts_with("HTTP/1.1 200 OK\n"),
        "{}",
        run.dump()
    );
    assert!(run.stdout.ends_with("\nfinally\n"), "{}", run.dump());
    let retries: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("retrying"))
        .collect();
    assert_eq!(retries.len(), 2, "{}", run.dump());
    for (attempt, line) in (1..).zip(&retries) {
        assert!(
            line.contains(&format!("attempt {attempt} ")) && line.contains("503"),
            "{line:?}\n{}",
            run.dump()
        );
    }
    assert!(run.stderr.contains("# 3 attempts"), "{}", run.dump());
    // The correlation id is the same on every attempt.
    let ids: Vec<String> = server
        .requests()
        .iter()
        .map(|seen| seen.header("x-request-id").unwrap_or_default().to_owned())
        .collect();
    assert!(ids[0].starts_with("req_"), "{ids:?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

#[test]
fn request_post_json_sends_the_body_and_content_type() {
    let server = Server::start(|_, seen| Reply::new(201, &String::from_utf8_lossy(&seen.body)));
    let run = httpower([
        "request",
        "POST",
        &server.url("/items"),
        "--json",
        r#"{"a":1}"#,
    ])
    .run();
    run.assert_code(0);
    assert!(
        run.stdout.starts_with("HTTP/1.1 201 Created\n"),
        "{}",
        run.dump()
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let seen = &requests[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/items");
    assert_eq!(
        seen.header("content-type"),
        Some("application/json"),
        "{seen:?}"
    );
    assert_eq!(seen.body, br#"{"a":1}"#);
    assert!(run.stdout.ends_with("\n{\"a\":1}\n"), "{}", run.dump());
}

#[test]
fn request_post_data_sends_the_raw_body() {
    let server = Server::start(|_, _| Reply::new(200, "ok"));
    let run = httpower(["request", "post", &server.url("/raw"), "-d", "plain text"]).run();
    run.assert_code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].body, b"plain text");
}

fn always_503() -> Server {
    Server::start(|_, _| Reply::new(503, "busy").header("retry-after", "0"))
}

#[test]
fn request_post_is_not_retried_on_503() {
    let server = always_503();
    let run = httpower(["request", "POST", &server.url("/pay"), "--json", "{}"]).run();
    assert_eq!(server.hits(), 1, "{}", run.dump());
    // The 503 is the answer: printed, exit 0 without --fail.
    run.assert_code(0);
    assert!(
        run.stdout.starts_with("HTTP/1.1 503 Service Unavailable\n"),
        "{}",
        run.dump()
    );
    assert!(!run.stderr.contains("retrying"), "{}", run.dump());
}

#[test]
fn request_post_is_retried_on_503_with_retry_safe() {
    let server = always_503();
    let run = httpower([
        "request",
        "POST",
        &server.url("/pay"),
        "--json",
        "{}",
        "--retry-safe",
    ])
    .run();
    // The default client: 3 retries after the first attempt.
    assert_eq!(server.hits(), 4, "{}", run.dump());
    assert_eq!(
        run.stderr
            .lines()
            .filter(|line| line.contains("retrying"))
            .count(),
        3,
        "{}",
        run.dump()
    );
    // Every attempt carried the body.
    assert!(server.requests().iter().all(|seen| seen.body == b"{}"));
}

#[test]
fn request_to_a_closed_port_fails_with_the_reason() {
    let port = closed_port();
    let run = httpower([
        "request",
        "--config",
        &fixture("local.toml"),
        "--client",
        "once",
        "GET",
        &format!("http://127.0.0.1:{port}/nothing"),
    ])
    .run();
    assert_ne!(run.code(), Some(0), "{}", run.dump());
    assert!(run.stdout.is_empty(), "{}", run.dump());
    assert!(
        run.stderr.starts_with("error: ")
            && (run.stderr.contains("connect") || run.stderr.contains("retries_exhausted")),
        "{}",
        run.dump()
    );
}

#[test]
fn request_to_a_closed_port_reports_the_attempts_after_retries() {
    let port = closed_port();
    let run = httpower([
        "request",
        "--config",
        &fixture("local.toml"),
        "--client",
        "quick",
        "GET",
        &format!("http://127.0.0.1:{port}/nothing"),
    ])
    .run();
    assert_ne!(run.code(), Some(0), "{}", run.dump());
    assert!(
        run.stderr.contains("# attempt 1 failed") && run.stderr.contains("# attempt 2 failed"),
        "{}",
        run.dump()
    );
    assert!(run.stderr.contains("[3 attempts]"), "{}", run.dump());
}

#[test]
fn request_with_a_client_uses_its_base_url() {
    let server = Server::start(|_, seen| Reply::new(200, &format!("you asked for {}", seen.path)));
    let run = httpower([
        "request",
        "--config",
        &fixture("local.toml"),
        "--client",
        "quick",
        "GET",
        "/v1/users/7?full=true",
    ])
    .env("HTTPOWER_TEST_UPSTREAM", &server.base_url())
    .run();
    run.assert_code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{}", run.dump());
    assert_eq!(requests[0].path, "/v1/users/7?full=true");
    assert!(
        run.stdout
            .ends_with("\nyou asked for /v1/users/7?full=true\n"),
        "{}",
        run.dump()
    );
}

#[test]
fn request_with_a_client_sends_its_headers_and_header_overrides_them() {
    let server = Server::start(|_, _| Reply::new(200, "ok"));
    let local = fixture("local.toml");
    let upstream = server.base_url();
    let args = [
        "request", "--config", &local, "--client", "quick", "GET", "/h",
    ];
    httpower(args)
        .env("HTTPOWER_TEST_UPSTREAM", &upstream)
        .run()
        .assert_code(0);
    let mut overriding = args.to_vec();
    overriding.extend(["-H", "x-from-config: cli"]);
    httpower(overriding)
        .env("HTTPOWER_TEST_UPSTREAM", &upstream)
        .run()
        .assert_code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].header_all("x-from-config"), ["config"]);
    assert_eq!(requests[1].header_all("x-from-config"), ["cli"]);
}

#[test]
fn request_client_is_found_through_httpower_config() {
    let server = Server::start(|_, _| Reply::new(200, "ok"));
    let run = httpower(["request", "--client", "quick", "GET", "/via-env"])
        .env("HTTPOWER_CONFIG", &fixture("local.toml"))
        .env("HTTPOWER_TEST_UPSTREAM", &server.base_url())
        .run();
    run.assert_code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{}", run.dump());
    assert_eq!(requests[0].path, "/via-env");
}

#[test]
fn request_repeated_header_sends_every_value() {
    let server = Server::start(|_, _| Reply::new(200, "ok"));
    let run = httpower([
        "request",
        "GET",
        &server.url("/accept"),
        "-H",
        "accept: text/plain",
        "-H",
        "accept: application/json",
    ])
    .run();
    run.assert_code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{}", run.dump());
    // Either two header lines or one comma-joined line carries both values.
    let values = requests[0].header_all("accept").join(", ");
    assert_eq!(values, "text/plain, application/json", "{:?}", requests[0]);
}

#[test]
fn request_timeout_cuts_a_slow_answer() {
    let server = Server::start(|_, _| {
        std::thread::sleep(Duration::from_millis(1500));
        Reply::new(200, "too late")
    });
    let run = httpower(["request", "GET", &server.url("/slow"), "--timeout", "200ms"]).run();
    run.assert_code(1);
    assert!(run.stderr.starts_with("error: timeout"), "{}", run.dump());
    assert!(!run.stdout.contains("too late"), "{}", run.dump());
}

#[test]
fn request_rejects_a_malformed_timeout() {
    let run = httpower(["request", "GET", "http://127.0.0.1:9/", "--timeout", "soon"]).run();
    run.assert_code(2);
    assert!(run.stderr.contains("--timeout"), "{}", run.dump());
}

#[test]
fn request_with_an_unknown_client_names_it() {
    let run = httpower([
        "request",
        "--config",
        &fixture("local.toml"),
        "--client",
        "nope",
        "GET",
        "/x",
    ])
    .run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("nope") && run.stderr.contains("clients"),
        "{}",
        run.dump()
    );
}

#[test]
fn request_config_without_client_is_an_error() {
    let run = httpower([
        "request",
        "--config",
        &fixture("local.toml"),
        "GET",
        "http://127.0.0.1:9/",
    ])
    .run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("--config needs --client"),
        "{}",
        run.dump()
    );
}

#[test]
fn request_fail_exits_22_on_404() {
    let server = Server::start(|_, _| Reply::new(404, "no such thing"));
    let run = httpower(["request", "GET", &server.url("/missing"), "--fail"]).run();
    run.assert_code(22);
    assert!(
        run.stdout.starts_with("HTTP/1.1 404 Not Found\n"),
        "{}",
        run.dump()
    );
    assert_eq!(server.hits(), 1);
}

#[test]
fn request_without_fail_exits_0_on_404() {
    let server = Server::start(|_, _| Reply::new(404, "no such thing"));
    let run = httpower(["request", "GET", &server.url("/missing")]).run();
    run.assert_code(0);
    assert!(run.stdout.ends_with("\nno such thing\n"), "{}", run.dump());
}

#[test]
fn request_rejects_a_malformed_header() {
    let run = httpower(["request", "GET", "http://127.0.0.1:9/", "-H", "no-colon"]).run();
    run.assert_code(1);
    assert!(run.stderr.contains("`no-colon`"), "{}", run.dump());
}

#[test]
fn request_rejects_invalid_json() {
    let run = httpower([
        "request",
        "POST",
        "http://127.0.0.1:9/",
        "--json",
        "{not json",
    ])
    .run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("--json is not valid JSON"),
        "{}",
        run.dump()
    );
}

// ---------------------------------------------------------------------------
// demo

#[test]
fn demo_runs_a_short_workload_and_prints_the_summary() {
    let run = httpower(["demo", "--requests", "8", "--concurrency", "4", "--quiet"])
        .deadline(Duration::from_secs(30))
        .run();
    run.assert_code(0);
    let header = run
        .stdout
        .lines()
        .find(|line| line.starts_with("client"))
        .unwrap_or_else(|| panic!("no table header:\n{}", run.dump()));
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "client", "requests", "ok", "failed", "attempts", "retries", "breaker", "limiter",
            "p50", "p99"
        ],
        "{}",
        run.dump()
    );
    for client in ["flaky", "slow", "limited", "dead"] {
        let row = run
            .stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(client))
            .unwrap_or_else(|| panic!("no row for `{client}`:\n{}", run.dump()));
        // Every client sent the 8 requests it was asked for.
        assert_eq!(
            row.split_whitespace().nth(1),
            Some("8"),
            "{row:?}\n{}",
            run.dump()
        );
    }
    assert!(
        run.stdout
            .lines()
            .any(|line| line.starts_with("upstream hits: flaky ")),
        "{}",
        run.dump()
    );
}

#[test]
fn demo_logs_correlation_ids_and_prints_its_metrics() {
    let run = httpower([
        "demo",
        "--requests",
        "8",
        "--concurrency",
        "4",
        "--quiet",
        "--metrics",
    ])
    .deadline(Duration::from_secs(30))
    .run();
    run.assert_code(0);
    // The WARN lines (retries, the dead upstream's failures) name their request.
    let retry_lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("retrying"))
        .collect();
    assert!(!retry_lines.is_empty(), "{}", run.dump());
    for line in retry_lines {
        let id = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("correlation_id="))
            .unwrap_or_else(|| panic!("no correlation id: {line}"));
        assert!(id.starts_with("req_") && id.len() == 20, "{line}");
    }
    // The exposition follows the summary: one series per demo client.
    for client in ["flaky", "slow", "limited", "dead"] {
        let series = format!("httpower_requests_total{{client=\"{client}\"");
        assert!(
            run.stdout.contains(&series),
            "{series} missing:\n{}",
            run.dump()
        );
    }
    assert!(run
        .stdout
        .contains("# TYPE httpower_request_duration_seconds histogram"));
}

#[test]
fn demo_with_a_malformed_redis_url_fails_before_running() {
    let run = httpower(["demo", "--redis", "http://:hunter2@127.0.0.1:1", "--quiet"]).run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("--redis: invalid Redis URL"),
        "{}",
        run.dump()
    );
    assert!(run.stdout.is_empty(), "{}", run.dump());
    run.assert_absent("hunter2");
}

// ---------------------------------------------------------------------------
// Redis stores: state, reset, check and the demo against a real redis-server.

#[path = "../../httpower-redis/tests/support/mod.rs"]
// The harness serves several test crates; not every one uses all of it.
#[allow(
    clippy::duplicated_attributes,
    dead_code,
    unreachable_pub,
    missing_docs
)]
mod redis_support;

use redis_support::RedisServer;

/// A configuration with one Redis store (`shared`, at `REDIS_URL`), a named limiter
/// `api` on it (10 per 300 s) and a client `app` that charges `tenant-7` on it.
const REDIS_CONFIG: &str = r#"
[stores.shared]
strategy = "redis"
url = "${REDIS_URL}"
key_prefix = "clitest"
socket_timeout = 1
socket_connect_timeout = 1

[stores.local]
strategy = "memory"

[limiters.api]
store_id = "shared"
algorithm = "sliding_window"
limit = 10
window_seconds = 300

[limiters.jobs]
store_id = "local"
algorithm = "fixed_window"
limit = 5
window_seconds = 60

[clients.app]
base_url = "${HTTPOWER_TEST_UPSTREAM:-http://127.0.0.1:9}"
rate_limit_key = "tenant-7"
rate_limit = { limiter = "api" }
circuit_breaker = { failure_threshold = 3 }
"#;

/// Writes `REDIS_CONFIG` to a file of its own.
fn redis_config() -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp config");
    file.write_all(REDIS_CONFIG.as_bytes())
        .expect("write config");
    file
}

/// `limiter` of the configuration at `path` charged once per key in `keys`, with the
/// library, against the Redis at `url`.
fn charge(path: &std::path::Path, url: &str, limiter: &str, keys: &[&str]) {
    let vars = |name: &str| (name == "REDIS_URL").then(|| url.to_owned());
    let config = httpower::config::Config::from_path_with_vars(path, &vars).unwrap();
    let stores = httpower::stores::Stores::new(&config);
    let limiter = config.limiter_on(limiter, &stores).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for key in keys {
            let verdict = limiter.key(key).check().await.unwrap();
            assert!(verdict.decision.allowed, "{key}: {verdict:?}");
            assert_eq!(
                verdict.source,
                httpower::core::store::DecisionSource::Store,
                "{key}"
            );
        }
    });
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn check_rate_sync_with_a_live_redis_builds_the_store_and_notes_max_connections() {
    let redis = RedisServer::start();
    let run = httpower(["check", "--config", RATE_SYNC])
        .env("REDIS_URL", &redis.url())
        .run();
    run.assert_code(0);
    assert!(
        run.stdout
            .lines()
            .any(|line| line.starts_with("max_connections = 20")
                && line.contains("unused")
                && line.contains("no pool to size")),
        "{}",
        run.dump()
    );
    assert!(
        run.stderr.contains("configuration is valid"),
        "{}",
        run.dump()
    );
}

#[test]
fn check_refuses_tls_settings_the_store_cannot_honour() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tls.toml");
    std::fs::write(
        &path,
        "[stores.r]\nstrategy = \"redis\"\nurl = \"rediss://:hunter2@127.0.0.1:6380\"\n\
         ssl_cert_reqs = \"none\"\n",
    )
    .unwrap();
    let run = httpower(["check", "--config", path.to_str().unwrap()]).run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("stores.r.ssl_cert_reqs"),
        "{}",
        run.dump()
    );
    run.assert_absent("hunter2");
}

#[test]
fn requests_through_a_redis_limiter_show_in_state() {
    let redis = RedisServer::start();
    let server = Server::start(|_, _| Reply::new(200, "ok"));
    let config = redis_config();
    let path = config.path().to_str().unwrap().to_owned();
    for _ in 0..3 {
        let run = httpower(["request", "--config", &path, "--client", "app", "GET", "/x"])
            .env("REDIS_URL", &redis.url())
            .env("HTTPOWER_TEST_UPSTREAM", &server.base_url())
            .run();
        run.assert_code(0);
    }
    assert_eq!(server.hits(), 3);

    let run = httpower([
        "state",
        "--config",
        &path,
        "--limiter",
        "api",
        "--key",
        "tenant-7",
    ])
    .env("REDIS_URL", &redis.url())
    .run();
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("store `shared` (redis, single, key prefix \"clitest\"): reachable"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout.contains("  tenant-7: 7/10 remaining"),
        "{}",
        run.dump()
    );

    // Without --key, the identifiers are listed; every limiter and the breaker note.
    let run = httpower(["state", "--config", &path])
        .env("REDIS_URL", &redis.url())
        .run();
    run.assert_code(0);
    assert!(
        run.stdout.contains("  tenant-7: 7/10 remaining"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout.contains("store `local` (memory): in-process"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout.contains("[limiters.jobs] fixed_window on store `local`\n  memory store: no shared state to show"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout
            .contains("[clients.app] circuit breaker: in-process only"),
        "{}",
        run.dump()
    );
}

#[test]
fn state_reports_an_exhausted_key_with_its_retry_time() {
    let redis = RedisServer::start();
    let config = redis_config();
    charge(config.path(), &redis.url(), "api", &["k"; 10]);
    let path = config.path().to_str().unwrap();
    let run = httpower(["state", "--config", path, "--limiter", "api", "--key", "k"])
        .env("REDIS_URL", &redis.url())
        .run();
    run.assert_code(0);
    let line = run
        .stdout
        .lines()
        .find(|line| line.starts_with("  k: "))
        .unwrap_or_else(|| panic!("{}", run.dump()));
    assert!(line.starts_with("  k: 0/10 remaining"), "{line}");
    assert!(line.contains("over the limit: retry after"), "{line}");
}

#[test]
fn reset_drops_one_key_then_every_key_of_the_limiter() {
    let redis = RedisServer::start();
    let config = redis_config();
    charge(config.path(), &redis.url(), "api", &["a", "a", "b", "c"]);
    let path = config.path().to_str().unwrap();

    let run = httpower(["reset", "--config", path, "--limiter", "api", "--key", "a"])
        .env("REDIS_URL", &redis.url())
        .run();
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("reset key `a` of limiter `api`: 1 key dropped"),
        "{}",
        run.dump()
    );
    let run = httpower(["state", "--config", path, "--limiter", "api", "--key", "a"])
        .env("REDIS_URL", &redis.url())
        .run();
    assert!(
        run.stdout.contains("  a: 10/10 remaining"),
        "{}",
        run.dump()
    );

    let run = httpower(["reset", "--config", path, "--limiter", "api"])
        .env("REDIS_URL", &redis.url())
        .run();
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("reset every key of limiter `api`: 2 keys dropped"),
        "{}",
        run.dump()
    );
    assert_eq!(
        redis_cli(redis.port(), &["--scan", "--pattern", "clitest*"]).trim(),
        ""
    );

    let run = httpower(["state", "--config", path, "--limiter", "api"])
        .env("REDIS_URL", &redis.url())
        .run();
    run.assert_code(0);
    assert!(
        run.stdout.contains("  no identifiers hold state"),
        "{}",
        run.dump()
    );
}

#[test]
fn reset_on_a_memory_store_says_there_is_nothing_shared() {
    let config = redis_config();
    let run = httpower([
        "reset",
        "--config",
        config.path().to_str().unwrap(),
        "--limiter",
        "jobs",
    ])
    .env("REDIS_URL", "redis://127.0.0.1:1")
    .run();
    run.assert_code(0);
    assert!(run.stdout.contains("0 keys dropped"), "{}", run.dump());
}

#[test]
fn state_against_a_killed_redis_exits_1_naming_the_store() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    let config = redis_config();
    let run = httpower(["state", "--config", config.path().to_str().unwrap()])
        .env("REDIS_URL", &url)
        .run();
    run.assert_code(1);
    assert!(
        run.stdout
            .contains("store `shared` (redis, single, key prefix \"clitest\"): unreachable"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout
            .contains("not shown: store `shared` is unreachable"),
        "{}",
        run.dump()
    );
    assert!(
        run.stderr.contains("error: unreachable store(s): shared"),
        "{}",
        run.dump()
    );
}

#[test]
fn demo_with_redis_keeps_limiter_state_in_redis_with_ttls() {
    let redis = RedisServer::start();
    let url = redis.url().replace("redis://", "redis://:s3cret@");
    // The server has no password: AUTH would fail, so use the plain URL for the run
    // and check the password redaction on the unreachable path below.
    let run = httpower([
        "demo",
        "--redis",
        &redis.url(),
        "--requests",
        "10",
        "--quiet",
        "--log",
        "off",
        "--config",
        &fixture("demo-redis.toml"),
    ])
    .deadline(Duration::from_secs(40))
    .run();
    run.assert_code(0);
    assert!(
        run.stderr
            .contains(&format!("redis store at {}", redis.url())),
        "{}",
        run.dump()
    );
    let keys = redis_cli(redis.port(), &["--scan", "--pattern", "httpower-demo:*"]);
    let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
    assert!(!keys.is_empty(), "no keys left\n{}", run.dump());
    for key in keys {
        let ttl: i64 = redis_cli(redis.port(), &["ttl", key])
            .trim()
            .parse()
            .unwrap();
        assert!(ttl > 0, "{key} has ttl {ttl}");
    }
    drop(redis);

    // Redis gone: the demo still runs (fail open) and says why.
    let run = httpower([
        "demo",
        "--redis",
        &url,
        "--requests",
        "5",
        "--quiet",
        "--log",
        "off",
        "--config",
        &fixture("demo-redis.toml"),
    ])
    .deadline(Duration::from_secs(40))
    .run();
    run.assert_code(0);
    assert!(run.stderr.contains("is unreachable"), "{}", run.dump());
    assert!(
        run.stderr
            .contains("redis store at redis://:[redacted]@127.0.0.1:"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout.contains("decisions failed open"),
        "{}",
        run.dump()
    );
    run.assert_absent("s3cret");
}
