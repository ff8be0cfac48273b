//! Request and response bodies: JSON, forms and text, then truncation.
//!
//! JSON is redacted by a streaming pass over the bytes instead of parsing into a
//! `serde_json::Value` and printing it again: the pass validates the grammar, tracks
//! which object key each value belongs to, and copies the input through in large spans,
//! writing only where something is replaced. That keeps the body's own formatting, does
//! not allocate per value, and takes a few microseconds for a 4 KB body (the
//! `sanitize/json_4k` bench). Nesting is tracked on a heap stack, not by recursion, so a
//! deeply nested body cannot overflow the thread's stack.

use std::fmt::Write as _;

use super::names::Names;
use super::text::{self, push_replacement};
use super::url::push_pairs;
use super::{Sanitizer, REDACTED};

/// What the content type says the body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Form,
    Text,
    Unknown,
}

fn kind(content_type: Option<&str>) -> Kind {
    let Some(ct) = content_type else {
        return Kind::Unknown;
    };
    if contains_ignore_case(ct, "json") {
        Kind::Json
    } else if contains_ignore_case(ct, "x-www-form-urlencoded") {
        Kind::Form
    } else {
        Kind::Text
    }
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Without a content type, text with an `=`, no whitespace and no braces is read as a
/// form body (`user=bob&password=…`).
fn looks_like_form(s: &str) -> bool {
    s.contains('=')
        && !s
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'{' || b == b'[')
}

impl Sanitizer {
    /// `body` as it may be logged, given its `Content-Type`.
    ///
    /// * a content type containing `json` (`application/json`,
    ///   `application/problem+json`, …), or no content type and a body that parses as
    ///   JSON: redacted structurally — the value of every sensitive key becomes
    ///   `"[REDACTED]"` whatever its type, at any depth, and every other string gets the
    ///   free-text rule; numbers, booleans and the formatting are kept. Invalid JSON
    ///   falls back to the free-text rule;
    /// * `application/x-www-form-urlencoded` (or, without a content type, text shaped
    ///   like `a=1&b=2`): redacted by field, like a query string;
    /// * anything else: the free-text rule (bytes that are not UTF-8 are read lossily).
    ///
    /// The result is cut to [`Sanitizer::max_body_bytes`] on a character boundary and
    /// ends with `…[truncated N bytes]`, N being the bytes of sanitized text left out.
    pub fn body(&self, content_type: Option<&str>, body: &[u8]) -> String {
        let mut out =
            String::with_capacity(body.len().min(self.inner.max_body_bytes.saturating_add(64)));
        match std::str::from_utf8(body) {
            Ok(s) => match kind(content_type) {
                Kind::Json => self.json_or_text(s, &mut out),
                Kind::Form => push_pairs(&self.inner.fields, s, &mut out),
                Kind::Text => text::redact_into(s, &mut out),
                Kind::Unknown => {
                    if redact_json(&self.inner.fields, s, &mut out).is_err() {
                        out.clear();
                        if looks_like_form(s) {
                            push_pairs(&self.inner.fields, s, &mut out);
                        } else {
                            text::redact_into(s, &mut out);
                        }
                    }
                }
            },
            Err(_) => text::redact_into(&String::from_utf8_lossy(body), &mut out),
        }
        truncate(&mut out, self.inner.max_body_bytes);
        out
    }

    fn json_or_text(&self, s: &str, out: &mut String) {
        let start = out.len();
        if redact_json(&self.inner.fields, s, out).is_err() {
            out.truncate(start);
            text::redact_into(s, out);
        }
    }
}

/// Cuts `out` to at most `max` bytes on a character boundary and appends the marker.
fn truncate(out: &mut String, max: usize) {
    if out.len() <= max {
        return;
    }
    let mut cut = max;
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = out.len() - cut;
    out.truncate(cut);
    let _ = write!(out, "…[truncated {dropped} bytes]");
}

/// The input is not JSON.
#[derive(Debug)]
pub(super) struct Invalid;

/// Appends `s` with sensitive values replaced and the free-text rule applied to the
/// other strings; fails (leaving partial output behind) if `s` is not one JSON value.
pub(super) fn redact_json(names: &Names, s: &str, out: &mut String) -> Result<(), Invalid> {
    Redactor {
        names,
        s,
        b: s.as_bytes(),
        pos: 0,
        mark: 0,
        out,
        seen: [None; KEY_CACHE],
    }
    .run()
}

#[derive(Clone, Copy)]
enum State {
    /// A value comes next.
    Value,
    /// An object key (after `{` or `,`) comes next.
    Key,
    /// A value just ended.
    After,
}

/// Slots in the per-body memo of key verdicts.
const KEY_CACHE: usize = 32;

struct Redactor<'a, 'o> {
    names: &'a Names,
    s: &'a str,
    b: &'a [u8],
    /// Next byte to read.
    pos: usize,
    /// Input before this has been written to `out` (or deliberately skipped).
    mark: usize,
    out: &'o mut String,
    /// Verdicts for raw keys already seen in this body, direct-mapped: arrays of
    /// objects repeat the same few keys, and a comparison is cheaper than matching.
    seen: [Option<(&'a str, bool)>; KEY_CACHE],
}

impl Redactor<'_, '_> {
    fn run(mut self) -> Result<(), Invalid> {
        // `true` for an object, `false` for an array.
        let mut stack: Vec<bool> = Vec::new();
        // While a sensitive value is being skipped: the nesting depth it started at.
        let mut skipping: Option<usize> = None;
        let mut state = State::Value;
        loop {
            match state {
                State::Value => {
                    self.skip_ws();
                    match self.peek()? {
                        b'{' => {
                            self.pos += 1;
                            self.skip_ws();
                            if self.peek()? == b'}' {
                                self.pos += 1;
                                state = State::After;
                            } else {
                                stack.push(true);
                                state = State::Key;
                            }
                        }
                        b'[' => {
                            self.pos += 1;
                            self.skip_ws();
                            if self.peek()? == b']' {
                                self.pos += 1;
                                state = State::After;
                            } else {
                                stack.push(false);
                            }
                        }
                        b'"' => {
                            let (start, end, escaped) = self.string()?;
                            if skipping.is_none() {
                                self.string_value(start, end, escaped);
                            }
                            state = State::After;
                        }
                        b'-' | b'0'..=b'9' => {
                            self.number()?;
                            state = State::After;
                        }
                        b't' => {
                            self.literal(b"true")?;
                            state = State::After;
                        }
                        b'f' => {
                            self.literal(b"false")?;
                            state = State::After;
                        }
                        b'n' => {
                            self.literal(b"null")?;
                            state = State::After;
                        }
                        _ => return Err(Invalid),
                    }
                }
                State::Key => {
                    self.skip_ws();
                    if self.peek()? != b'"' {
                        return Err(Invalid);
                    }
                    let (start, end, escaped) = self.string()?;
                    self.skip_ws();
                    if self.peek()? != b':' {
                        return Err(Invalid);
                    }
                    self.pos += 1;
                    if skipping.is_none() && self.key_is_sensitive(start, end, escaped) {
                        self.skip_ws();
                        self.flush_to(self.pos);
                        self.out.push('"');
                        self.out.push_str(REDACTED);
                        self.out.push('"');
                        skipping = Some(stack.len());
                    }
                    state = State::Value;
                }
                State::After => {
                    if skipping == Some(stack.len()) {
                        skipping = None;
                        self.mark = self.pos;
                    }
                    self.skip_ws();
                    match stack.last() {
                        None => {
                            if self.pos != self.b.len() {
                                return Err(Invalid);
                            }
                            self.flush_to(self.pos);
                            return Ok(());
                        }
                        Some(&object) => {
                            let c = self.peek()?;
                            self.pos += 1;
                            match (c, object) {
                                (b',', true) => state = State::Key,
                                (b',', false) => state = State::Value,
                                (b'}', true) | (b']', false) => {
                                    stack.pop();
                                }
                                _ => return Err(Invalid),
                            }
                        }
                    }
                }
            }
        }
    }

    fn peek(&self) -> Result<u8, Invalid> {
        self.b.get(self.pos).copied().ok_or(Invalid)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Writes the input between `mark` and `upto` to the output.
    fn flush_to(&mut self, upto: usize) {
        self.out.push_str(self.s.get(self.mark..upto).unwrap_or(""));
        self.mark = upto;
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Invalid> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.b.get(self.pos) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), Invalid> {
        if self.b.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.b.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Invalid),
        }
        if self.b.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(Invalid);
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.b.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Invalid);
            }
        }
        Ok(())
    }

    /// Reads the string starting at the opening quote under `pos`. Returns the span of
    /// its raw contents and whether they contain escapes.
    fn string(&mut self) -> Result<(usize, usize, bool), Invalid> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            let c = self.peek()?;
            match c {
                b'"' => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok((start, end, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match self.b.get(self.pos + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 2;
                        }
                        Some(b'u') => {
                            let hex = self.b.get(self.pos + 2..self.pos + 6).ok_or(Invalid)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(Invalid);
                            }
                            self.pos += 6;
                        }
                        _ => return Err(Invalid),
                    }
                }
                0..=0x1f => return Err(Invalid),
                _ => self.pos += 1,
            }
        }
    }

    fn key_is_sensitive(&mut self, start: usize, end: usize, escaped: bool) -> bool {
        let raw = self.s.get(start..end).unwrap_or("");
        if escaped {
            return self.names.matches(&unescape(raw));
        }
        let b = raw.as_bytes();
        let slot = match (b.first(), b.last()) {
            (Some(&first), Some(&last)) => {
                (b.len() * 7 + usize::from(first) * 3 + usize::from(last)) % KEY_CACHE
            }
            _ => 0,
        };
        if let Some((key, verdict)) = self.seen[slot] {
            if key == raw {
                return verdict;
            }
        }
        let verdict = self.names.matches(raw);
        self.seen[slot] = Some((raw, verdict));
        verdict
    }

    /// Applies the free-text rule to a string value's contents.
    fn string_value(&mut self, start: usize, end: usize, escaped: bool) {
        let s = self.s;
        let raw = s.get(start..end).unwrap_or("");
        if escaped {
            if let std::borrow::Cow::Owned(redacted) = text::redact(&unescape(raw)) {
                self.flush_to(start);
                escape_into(&redacted, self.out);
                self.mark = end;
            }
            return;
        }
        text::scan(raw, |from, to, hit| {
            self.flush_to(start + from);
            push_replacement(self.out, raw, from, hit);
            self.mark = start + to;
        });
    }
}

/// Decodes the escapes of a JSON string's raw contents (already validated). Lone
/// surrogates become U+FFFD.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    let mut pending_high: Option<u32> = None;
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush_high(&mut pending_high, &mut out);
            out.push(c);
            continue;
        }
        let decoded = match chars.next() {
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let unit = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                if (0xD800..0xDC00).contains(&unit) {
                    flush_high(&mut pending_high, &mut out);
                    pending_high = Some(unit);
                    continue;
                }
                if (0xDC00..0xE000).contains(&unit) {
                    if let Some(high) = pending_high.take() {
                        let code = 0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00);
                        out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                    } else {
                        out.push('\u{FFFD}');
                    }
                    continue;
                }
                char::from_u32(unit).unwrap_or('\u{FFFD}')
            }
            Some(other) => other,
            None => break,
        };
        flush_high(&mut pending_high, &mut out);
        out.push(decoded);
    }
    flush_high(&mut pending_high, &mut out);
    out
}

fn flush_high(pending: &mut Option<u32>, out: &mut String) {
    if pending.take().is_some() {
        out.push('\u{FFFD}');
    }
}

/// Writes `s` as the contents of a JSON string (without the quotes).
fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}
