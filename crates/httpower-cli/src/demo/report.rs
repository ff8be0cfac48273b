//! The demo's summary: what each client did, as an aligned plain-text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::upstream::UpstreamHits;

/// The widest the table may be; wider cells are shortened to fit (the full
/// text then follows the table).
pub(crate) const MAX_WIDTH: usize = 100;

/// Widest (retries, breaker) cells to try, roomiest (unlimited) first, until
/// the table fits [`MAX_WIDTH`]: retries beyond the width fold their rarest
/// reasons into `+N`, a breaker path beyond it is abbreviated (`C→O→H`).
const CELL_CAPS: [(usize, usize); 4] = [(usize::MAX, usize::MAX), (26, 24), (20, 16), (14, 10)];

/// What one demo client did during the run.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientReport {
    /// The client's name, as shown in the first column.
    pub(crate) name: String,
    /// Logical requests made (each may have taken several attempts).
    pub(crate) requests: u64,
    /// Requests that ended in success.
    pub(crate) succeeded: u64,
    /// Requests that ended in failure, by reason (`"503"`, `"timeout"`,
    /// `"breaker-open"`, ...).
    pub(crate) failed_by_reason: BTreeMap<String, u64>,
    /// Attempts sent upstream, retries included.
    pub(crate) attempts: u64,
    /// Retries, by the reason of the attempt that was retried.
    pub(crate) retries_by_reason: BTreeMap<String, u64>,
    /// Breaker state changes in order, each `"from→to"` (e.g. `"closed→open"`).
    pub(crate) breaker_transitions: Vec<String>,
    /// Times the client limiter made a request wait.
    pub(crate) limiter_waits: u64,
    /// Total time spent waiting on the client limiter.
    pub(crate) limiter_wait_total: Duration,
    /// Times the client limiter refused a request outright.
    pub(crate) limiter_denials: u64,
    /// Decisions the limiter's store could not make, admitted by the fail mode (fail
    /// open).
    pub(crate) store_fallbacks_open: u64,
    /// Decisions the limiter's store could not make, refused by the fail mode (fail
    /// closed).
    pub(crate) store_fallbacks_closed: u64,
    /// End-to-end latency of every request (retries and waits included).
    pub(crate) latencies: Vec<Duration>,
}

impl ClientReport {
    /// An empty report for the client `name`.
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Records a request that succeeded after `latency`.
    pub(crate) fn record_success(&mut self, latency: Duration) {
        self.requests += 1;
        self.succeeded += 1;
        self.latencies.push(latency);
    }

    /// Records a request that failed for `reason` after `latency`.
    pub(crate) fn record_failure(&mut self, reason: impl Into<String>, latency: Duration) {
        self.requests += 1;
        *self.failed_by_reason.entry(reason.into()).or_default() += 1;
        self.latencies.push(latency);
    }

    /// Records `n` attempts sent upstream.
    pub(crate) fn record_attempts(&mut self, n: u64) {
        self.attempts += n;
    }

    /// Records one retry of an attempt that failed for `reason`.
    pub(crate) fn record_retry(&mut self, reason: impl Into<String>) {
        *self.retries_by_reason.entry(reason.into()).or_default() += 1;
    }

    /// Records a breaker state change.
    pub(crate) fn record_transition(&mut self, from: &str, to: &str) {
        self.breaker_transitions.push(format!("{from}→{to}"));
    }

    /// Records one wait of `wait` imposed by the client limiter.
    pub(crate) fn record_limiter_wait(&mut self, wait: Duration) {
        self.limiter_waits += 1;
        self.limiter_wait_total += wait;
    }

    /// Records one decision the store could not make; `admitted` when the fail mode let
    /// the request through.
    pub(crate) fn record_store_fallback(&mut self, admitted: bool) {
        if admitted {
            self.store_fallbacks_open += 1;
        } else {
            self.store_fallbacks_closed += 1;
        }
    }

    /// Records one request the client limiter refused.
    pub(crate) fn record_limiter_denial(&mut self) {
        self.limiter_denials += 1;
    }

    /// Requests that ended in failure, whatever the reason.
    pub(crate) fn failed(&self) -> u64 {
        self.failed_by_reason.values().sum()
    }

    /// Retries, whatever the reason.
    #[cfg(test)]
    pub(crate) fn retries(&self) -> u64 {
        self.retries_by_reason.values().sum()
    }

    /// The nearest-rank `percent` percentile of the latencies (`percent` is
    /// clamped to 1..=100); `None` when nothing was recorded.
    pub(crate) fn percentile(&self, percent: u32) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        let percent = usize::try_from(percent.clamp(1, 100)).unwrap_or(100);
        // Nearest rank: the smallest value with at least `percent`% of the
        // samples at or below it.
        let rank = (percent * n).div_ceil(100).clamp(1, n);
        sorted.get(rank - 1).copied()
    }

    /// The median latency, `None` when nothing was recorded.
    pub(crate) fn p50(&self) -> Option<Duration> {
        self.percentile(50)
    }

    /// The 99th percentile latency, `None` when nothing was recorded.
    pub(crate) fn p99(&self) -> Option<Duration> {
        self.percentile(99)
    }
}

/// Formats a duration for people: `850µs`, `12ms`, `1.20s`, `75.3s`.
pub(crate) fn format_duration(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{}µs", d.as_micros())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d < Duration::from_secs(10) {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// `reason:count` pairs, most frequent first (ties by name), e.g.
/// `503:4 timeout:2 502:1`; `-` when empty. Reasons that do not fit in
/// `width` are folded into a trailing `+N` (N = how many reasons were left out).
fn format_reasons(reasons: &BTreeMap<String, u64>, width: usize) -> String {
    let mut pairs: Vec<(&String, &u64)> = reasons.iter().filter(|(_, n)| **n > 0).collect();
    if pairs.is_empty() {
        return "-".to_owned();
    }
    pairs.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let items: Vec<String> = pairs.iter().map(|(r, n)| format!("{r}:{n}")).collect();
    let full = items.join(" ");
    if full.chars().count() <= width {
        return full;
    }
    // Keep as many leading items as fit together with the `+N` marker; always
    // keep at least one.
    let mut kept = items.len();
    while kept > 1 {
        kept -= 1;
        let text = format!("{} +{}", items[..kept].join(" "), items.len() - kept);
        if text.chars().count() <= width {
            return text;
        }
    }
    format!("{} +{}", items[0], items.len() - 1)
}

/// The breaker's path through its states, e.g. `closed→open→half-open`;
/// `-` when it never changed. Consecutive transitions are chained; a path
/// too wide for `width` is abbreviated (`C→O→H→C`), and a still-too-wide one
/// becomes `N× →last`.
fn format_breaker(transitions: &[String], width: usize) -> String {
    if transitions.is_empty() {
        return "-".to_owned();
    }
    let mut states: Vec<&str> = Vec::new();
    for transition in transitions {
        let (from, to) = transition
            .split_once('→')
            .unwrap_or(("", transition.as_str()));
        if states.last() != Some(&from) && !from.is_empty() {
            if !states.is_empty() {
                // A gap in the record: mark it rather than invent a transition.
                states.push("…");
            }
            states.push(from);
        }
        states.push(to);
    }
    let full = states.join("→");
    if full.chars().count() <= width {
        return full;
    }
    let short = states
        .iter()
        .map(|s| abbreviate_state(s))
        .collect::<Vec<_>>()
        .join("→");
    if short.chars().count() <= width {
        return short;
    }
    let last = states.last().copied().unwrap_or_default();
    format!("{}× →{last}", transitions.len())
}

fn abbreviate_state(state: &str) -> String {
    match state {
        "closed" => "C".to_owned(),
        "open" => "O".to_owned(),
        "half-open" | "half_open" | "halfopen" => "H".to_owned(),
        other => other.to_owned(),
    }
}

fn format_limiter(report: &ClientReport) -> String {
    if report.limiter_waits == 0 && report.limiter_denials == 0 {
        return "-".to_owned();
    }
    format!("{}/{}", report.limiter_waits, report.limiter_denials)
}

fn format_optional(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), format_duration)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

const COLUMNS: [(&str, Align); 10] = [
    ("client", Align::Left),
    ("requests", Align::Right),
    ("ok", Align::Right),
    ("failed", Align::Right),
    ("attempts", Align::Right),
    ("retries", Align::Left),
    ("breaker", Align::Left),
    ("limiter", Align::Right),
    ("p50", Align::Right),
    ("p99", Align::Right),
];

const GAP: &str = "  ";

fn row(report: &ClientReport, (retries_width, breaker_width): (usize, usize)) -> [String; 10] {
    [
        report.name.clone(),
        report.requests.to_string(),
        report.succeeded.to_string(),
        report.failed().to_string(),
        report.attempts.to_string(),
        format_reasons(&report.retries_by_reason, retries_width),
        format_breaker(&report.breaker_transitions, breaker_width),
        format_limiter(report),
        format_optional(report.p50()),
        format_optional(report.p99()),
    ]
}

fn column_widths(header: &[String; 10], rows: &[[String; 10]]) -> [usize; 10] {
    let mut widths = [0_usize; 10];
    for cells in std::iter::once(header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    widths
}

fn render_line(out: &mut String, cells: &[String; 10], widths: &[usize; 10]) {
    let mut line = String::new();
    for (i, (cell, (_, align))) in cells.iter().zip(COLUMNS).enumerate() {
        if i > 0 {
            line.push_str(GAP);
        }
        let width = widths[i];
        // `{:<w$}` pads by characters, which matches the display width of
        // everything rendered here (ASCII, `→`, `µ`, `…`, `×`).
        let _ = match align {
            Align::Left => write!(line, "{cell:<width$}"),
            Align::Right => write!(line, "{cell:>width$}"),
        };
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// Renders the end-of-run summary: one table row per client, failure reasons
/// and limiter wait time below it, then upstream hit counts and the total
/// elapsed time.
pub(crate) fn render_summary(
    reports: &[ClientReport],
    upstream_hits: Option<&UpstreamHits>,
    elapsed: Duration,
) -> String {
    let header: [String; 10] = COLUMNS.map(|(name, _)| name.to_owned());
    let mut layout = None;
    for caps in CELL_CAPS {
        let rows: Vec<[String; 10]> = reports.iter().map(|r| row(r, caps)).collect();
        let widths = column_widths(&header, &rows);
        let total_width = widths.iter().sum::<usize>() + GAP.len() * (widths.len() - 1);
        let fits = total_width <= MAX_WIDTH;
        layout = Some((rows, widths, total_width));
        if fits {
            break;
        }
    }
    let (rows, widths, total_width) = layout.unwrap_or_default();

    let mut out = String::new();
    render_line(&mut out, &header, &widths);
    out.push_str(&"─".repeat(total_width));
    out.push('\n');
    if rows.is_empty() {
        out.push_str("(no clients ran)\n");
    }
    for cells in &rows {
        render_line(&mut out, cells, &widths);
    }
    out.push_str(&"─".repeat(total_width));
    out.push('\n');

    let name_width = reports
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0);
    for (report, cells) in reports.iter().zip(&rows) {
        let mut notes = Vec::new();
        if report.failed() > 0 {
            notes.push(format!(
                "failed {}",
                format_reasons(&report.failed_by_reason, usize::MAX)
            ));
        }
        if report.limiter_waits > 0 {
            notes.push(format!(
                "limiter waited {} in total",
                format_duration(report.limiter_wait_total)
            ));
        }
        if report.store_fallbacks_open > 0 {
            notes.push(format!(
                "limiter store unreachable: {} decisions failed open",
                report.store_fallbacks_open
            ));
        }
        if report.store_fallbacks_closed > 0 {
            notes.push(format!(
                "limiter store unreachable: {} decisions failed closed",
                report.store_fallbacks_closed
            ));
        }
        // Cells shortened to fit the table are spelled out here.
        let retries = format_reasons(&report.retries_by_reason, usize::MAX);
        if retries != cells[5] {
            notes.push(format!("retried {retries}"));
        }
        let breaker = format_breaker(&report.breaker_transitions, usize::MAX);
        if breaker != cells[6] {
            notes.push(format!("breaker {breaker}"));
        }
        if !notes.is_empty() {
            let _ = writeln!(out, "{:<name_width$}  {}", report.name, notes.join(" · "));
        }
    }

    out.push_str(
        "attempts include retries · retries by reason, most frequent first · \
         limiter = waits/denials\n\
         p50/p99 = request latency, retries and waits included\n",
    );
    if let Some(hits) = upstream_hits {
        let _ = writeln!(
            out,
            "upstream hits: flaky {} · slow {} · limited {} · dead {} · ok {} (total {})",
            hits.flaky,
            hits.slow,
            hits.limited,
            hits.dead,
            hits.ok,
            hits.total()
        );
    }
    let _ = writeln!(out, "elapsed {}", format_duration(elapsed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn with_latencies(values: &[u64]) -> ClientReport {
        let mut report = ClientReport::new("t");
        for v in values {
            report.record_success(ms(*v));
        }
        report
    }

    /// The character column where `needle` starts in `line`.
    fn column_of(line: &str, needle: &str) -> Option<usize> {
        line.find(needle).map(|byte| line[..byte].chars().count())
    }

    /// The character column where `needle` ends in `line`.
    fn end_of(line: &str, needle: &str) -> Option<usize> {
        column_of(line, needle).map(|c| c + needle.chars().count())
    }

    #[test]
    fn percentiles_are_empty_safe() {
        let report = ClientReport::new("empty");
        assert_eq!(report.p50(), None);
        assert_eq!(report.p99(), None);
        assert_eq!(report.percentile(0), None);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let one = with_latencies(&[7]);
        assert_eq!(one.p50(), Some(ms(7)));
        assert_eq!(one.p99(), Some(ms(7)));

        // Unsorted on purpose.
        let ten = with_latencies(&[10, 1, 9, 2, 8, 3, 7, 4, 6, 5]);
        assert_eq!(ten.p50(), Some(ms(5)));
        assert_eq!(ten.p99(), Some(ms(10)));
        assert_eq!(ten.percentile(10), Some(ms(1)));
        assert_eq!(ten.percentile(11), Some(ms(2)));
        assert_eq!(ten.percentile(100), Some(ms(10)));
        // Out-of-range percents are clamped.
        assert_eq!(ten.percentile(0), Some(ms(1)));
        assert_eq!(ten.percentile(250), Some(ms(10)));

        let hundred: Vec<u64> = (1..=100).rev().collect();
        let hundred = with_latencies(&hundred);
        assert_eq!(hundred.p50(), Some(ms(50)));
        assert_eq!(hundred.p99(), Some(ms(99)));

        let two = with_latencies(&[1, 100]);
        assert_eq!(two.p50(), Some(ms(1)));
        assert_eq!(two.p99(), Some(ms(100)));
    }

    #[test]
    fn recording_updates_counts() {
        let mut report = ClientReport::new("api");
        report.record_success(ms(3));
        report.record_failure("503", ms(9));
        report.record_failure("503", ms(4));
        report.record_failure("timeout", ms(1000));
        report.record_attempts(7);
        report.record_retry("503");
        report.record_retry("timeout");
        report.record_retry("503");
        report.record_transition("closed", "open");
        report.record_limiter_wait(ms(20));
        report.record_limiter_wait(ms(30));
        report.record_limiter_denial();
        assert_eq!(report.requests, 4);
        assert_eq!(report.succeeded, 1);
        assert_eq!(report.failed(), 3);
        assert_eq!(report.failed_by_reason.get("503"), Some(&2));
        assert_eq!(report.attempts, 7);
        assert_eq!(report.retries(), 3);
        assert_eq!(report.breaker_transitions, ["closed→open"]);
        assert_eq!(report.limiter_waits, 2);
        assert_eq!(report.limiter_wait_total, ms(50));
        assert_eq!(report.limiter_denials, 1);
        assert_eq!(report.latencies.len(), 4);
    }

    #[test]
    fn durations_are_human_friendly() {
        assert_eq!(format_duration(Duration::ZERO), "0µs");
        assert_eq!(format_duration(Duration::from_micros(850)), "850µs");
        assert_eq!(format_duration(ms(12)), "12ms");
        assert_eq!(format_duration(Duration::from_micros(999_999)), "999ms");
        assert_eq!(format_duration(ms(1200)), "1.20s");
        assert_eq!(format_duration(ms(9_994)), "9.99s");
        assert_eq!(format_duration(ms(75_340)), "75.3s");
    }

    #[test]
    fn reasons_are_compact_and_most_frequent_first() {
        let mut reasons = BTreeMap::new();
        assert_eq!(format_reasons(&reasons, 40), "-");
        reasons.insert("502".to_owned(), 1);
        reasons.insert("503".to_owned(), 4);
        reasons.insert("timeout".to_owned(), 2);
        reasons.insert("connect".to_owned(), 0);
        assert_eq!(format_reasons(&reasons, 40), "503:4 timeout:2 502:1");
        // Too narrow: the rarest reasons fold into `+N`.
        assert_eq!(format_reasons(&reasons, 18), "503:4 timeout:2 +1");
        assert_eq!(format_reasons(&reasons, 10), "503:4 +2");
        // At least one reason is always shown.
        assert_eq!(format_reasons(&reasons, 1), "503:4 +2");
        // Ties are ordered by name.
        let ties: BTreeMap<String, u64> = [("b", 2), ("a", 2), ("c", 3)]
            .into_iter()
            .map(|(r, n)| (r.to_owned(), n))
            .collect();
        assert_eq!(format_reasons(&ties, 40), "c:3 a:2 b:2");
    }

    #[test]
    fn breaker_transitions_chain_and_abbreviate() {
        let t = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(format_breaker(&[], 30), "-");
        assert_eq!(format_breaker(&t(&["closed→open"]), 30), "closed→open");
        let flap = t(&["closed→open", "open→half-open", "half-open→closed"]);
        assert_eq!(format_breaker(&flap, 40), "closed→open→half-open→closed");
        assert_eq!(format_breaker(&flap, 20), "C→O→H→C");
        assert_eq!(format_breaker(&flap, 5), "3× →closed");
        // A gap in the record is shown, not papered over.
        let gap = t(&["closed→open", "half-open→closed"]);
        assert_eq!(format_breaker(&gap, 40), "closed→open→…→half-open→closed");
    }

    fn sample_reports() -> Vec<ClientReport> {
        let mut retrying = ClientReport::new("retry");
        for i in 0..40 {
            retrying.record_success(ms(5 + i));
        }
        retrying.record_failure("503", ms(1500));
        retrying.record_attempts(48);
        for reason in ["503", "503", "503", "503", "502", "timeout", "timeout"] {
            retrying.record_retry(reason);
        }

        let mut breaker = ClientReport::new("breaker");
        breaker.record_success(ms(2));
        breaker.record_attempts(6);
        for _ in 0..5 {
            breaker.record_failure("503", ms(2));
        }
        for _ in 0..15 {
            breaker.record_failure("breaker-open", Duration::from_micros(40));
        }
        breaker.record_transition("closed", "open");
        breaker.record_transition("open", "half-open");
        breaker.record_transition("half-open", "open");

        let mut limited = ClientReport::new("rate-limited");
        for _ in 0..30 {
            limited.record_success(ms(1));
        }
        limited.record_attempts(30);
        limited.record_limiter_wait(ms(900));
        limited.record_limiter_wait(ms(300));
        limited.record_limiter_denial();

        vec![retrying, breaker, limited, ClientReport::new("idle")]
    }

    #[test]
    fn summary_columns_are_aligned() {
        let reports = sample_reports();
        let hits = UpstreamHits {
            flaky: 48,
            slow: 0,
            limited: 30,
            dead: 5,
            ok: 0,
        };
        let text = render_summary(&reports, Some(&hits), ms(4_321));
        let lines: Vec<&str> = text.lines().collect();
        let header = lines[0];
        assert!(header.starts_with("client"), "{text}");
        for column in [
            "requests", "ok", "failed", "attempts", "retries", "breaker", "limiter", "p50", "p99",
        ] {
            assert!(header.contains(column), "missing {column}: {text}");
        }
        assert!(lines[1].chars().all(|c| c == '─'), "{text}");
        let rows = &lines[2..6];

        // Every line of the table fits a 100-column terminal, and the rules
        // span exactly the widest row.
        let rule_width = lines[1].chars().count();
        assert!(rule_width <= MAX_WIDTH, "{text}");
        for line in &lines[..7] {
            assert!(line.chars().count() <= rule_width, "{line}");
        }
        assert_eq!(lines[6], lines[1]);

        // Right-aligned numbers end under their header; left-aligned text
        // starts under it.
        let header_end = |name| end_of(header, name);
        let header_start = |name| column_of(header, name);
        let retry = rows[0];
        assert!(retry.starts_with("retry "), "{retry}");
        assert_eq!(end_of(retry, " 41 "), header_end("requests").map(|c| c + 1));
        assert_eq!(end_of(retry, " 48 "), header_end("attempts").map(|c| c + 1));
        assert_eq!(
            column_of(retry, "503:4 timeout:2 502:1"),
            header_start("retries")
        );
        assert_eq!(retry.chars().count(), rule_width);
        assert!(retry.ends_with("1.50s"), "{retry}");

        let breaker = rows[1];
        // The full path would not fit in 100 columns: abbreviated in the
        // table, spelled out below it.
        assert_eq!(
            column_of(breaker, "C→O→H→O"),
            header_start("breaker"),
            "{text}"
        );
        assert_eq!(end_of(breaker, " 20 "), header_end("failed").map(|c| c + 1));
        assert!(breaker.ends_with("2ms"), "{breaker}");

        let limited = rows[2];
        assert_eq!(end_of(limited, "2/1"), header_end("limiter"), "{text}");
        assert!(limited.ends_with("1ms"), "{limited}");

        // A client with no requests shows dashes, not zero durations.
        let idle = rows[3];
        assert!(idle.starts_with("idle "), "{idle}");
        let tail: Vec<&str> = idle.split_whitespace().rev().take(2).collect();
        assert_eq!(tail, ["-", "-"], "{idle}");
        assert!(idle.ends_with(" -"), "{idle}");
        assert_eq!(idle.chars().count(), rule_width, "{idle}");

        // Footer: details, legend, upstream hits and elapsed time.
        assert!(
            text.contains(
                "breaker       failed breaker-open:15 503:5 · breaker closed→open→half-open→open"
            ),
            "{text}"
        );
        assert!(text.contains("rate-limited  limiter waited 1.20s in total"));
        assert!(text.contains("retry         failed 503:1"));
        assert!(
            lines[7..].iter().all(|line| !line.starts_with("idle")),
            "{text}"
        );
        assert!(text
            .contains("upstream hits: flaky 48 · slow 0 · limited 30 · dead 5 · ok 0 (total 83)"));
        assert!(text.ends_with("elapsed 4.32s\n"), "{text}");
    }

    #[test]
    fn summary_shortens_wide_cells_to_fit_and_spells_them_out_below() {
        let mut wide = ClientReport::new("wide-client");
        wide.record_success(ms(1));
        wide.record_attempts(99_999);
        for reason in ["503", "502", "429", "timeout", "connect", "reset", "body"] {
            wide.record_retry(reason);
        }
        for _ in 0..4 {
            wide.record_transition("closed", "open");
            wide.record_transition("open", "half-open");
            wide.record_transition("half-open", "closed");
        }
        let text = render_summary(&[wide], None, ms(10));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].chars().count() <= MAX_WIDTH, "{text}");
        for line in &lines[..4] {
            assert!(line.chars().count() <= MAX_WIDTH, "{line}");
        }
        assert!(lines[2].contains(" +"), "{text}");
        assert!(lines[2].contains("12× →closed"), "{text}");
        assert!(text.contains("retried 429:1 502:1 503:1 body:1 connect:1 reset:1 timeout:1"));
        assert!(text.contains("breaker closed→open→half-open→closed→open"));
        assert!(!text.contains("upstream hits"), "{text}");
    }

    #[test]
    fn summary_keeps_cells_whole_when_they_fit() {
        let mut report = ClientReport::new("api");
        report.record_success(ms(3));
        report.record_retry("503");
        report.record_transition("closed", "open");
        report.record_transition("open", "half-open");
        report.record_transition("half-open", "closed");
        let text = render_summary(&[report], None, ms(3));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            column_of(lines[2], "closed→open→half-open→closed"),
            column_of(lines[0], "breaker"),
            "{text}"
        );
        assert_eq!(
            column_of(lines[2], "503:1"),
            column_of(lines[0], "retries"),
            "{text}"
        );
        // Nothing was shortened, so nothing is repeated below the table.
        assert!(
            lines[4..].iter().all(|line| !line.starts_with("api")),
            "{text}"
        );
    }

    #[test]
    fn summary_without_clients_says_so() {
        let text = render_summary(&[], None, ms(0));
        assert!(text.contains("(no clients ran)"), "{text}");
        assert!(text.ends_with("elapsed 0µs\n"), "{text}");
    }
}
