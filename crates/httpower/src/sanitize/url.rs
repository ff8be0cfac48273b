//! URLs, query strings and form bodies.
//!
//! Output keeps the original encoding wherever nothing was redacted, so a logged URL
//! reads like the one that was sent; a component that changed is written back
//! percent-encoded, except for the brackets of the `[REDACTED]`/`[CARD]` markers.

use std::borrow::Cow;
use std::fmt::Write as _;

use ::url::{Position, Url};

use super::names::Names;
use super::{text, Sanitizer, REDACTED};

impl Sanitizer {
    /// `url` as it may be logged: without user information, with the values of
    /// sensitive query (and fragment) parameters replaced by [`REDACTED`], and with the
    /// free-text rule applied to every path segment and parameter value.
    ///
    /// `https://bob:pw@api.example.com/v1/keys/sk_live_abc123?api_key=k&page=2`
    /// becomes `https://api.example.com/v1/keys/sk_[REDACTED]?api_key=[REDACTED]&page=2`.
    pub fn url(&self, url: &Url) -> String {
        let mut out = String::with_capacity(url.as_str().len());
        // `scheme://` (or `scheme:`), then host and port: everything but the user info.
        out.push_str(&url[..Position::BeforeUsername]);
        out.push_str(&url[Position::BeforeHost..Position::AfterPort]);
        push_rest(
            &self.inner.fields,
            url.path(),
            url.query(),
            url.fragment(),
            &mut out,
        );
        out
    }

    /// Like [`Sanitizer::url`] for a URL that is only text: a relative reference
    /// (`/v1/users?token=…`) or something that does not parse. User information before
    /// an `@` in the authority is dropped and the query and path rules apply as far as
    /// the text can be split into them. Text with whitespace in it is no URL and gets
    /// the free-text rule only.
    pub fn url_str(&self, url: &str) -> String {
        if let Ok(parsed) = Url::parse(url) {
            return self.url(&parsed);
        }
        if url.bytes().any(|b| b.is_ascii_whitespace()) {
            // Not a URL at all (URLs carry no raw whitespace): plain text.
            return text::redact(url).into_owned();
        }
        let mut out = String::with_capacity(url.len());
        let (rest, fragment) = match url.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (url, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let path = match rest.find("://") {
            Some(i) => {
                let (scheme, after) = rest.split_at(i + 3);
                let authority_end = after.find('/').unwrap_or(after.len());
                let (authority, path) = after.split_at(authority_end);
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                out.push_str(scheme);
                out.push_str(host);
                path
            }
            None => rest,
        };
        push_rest(&self.inner.fields, path, query, fragment, &mut out);
        out
    }
}

fn push_rest(
    names: &Names,
    path: &str,
    query: Option<&str>,
    fragment: Option<&str>,
    out: &mut String,
) {
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        push_component(segment, false, out);
    }
    if let Some(query) = query {
        out.push('?');
        push_pairs(names, query, out);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        push_pairs(names, fragment, out);
    }
}

/// Appends a query string or form body (`a=1&b=2`) with sensitive values redacted and
/// the free-text rule applied to the rest.
pub(super) fn push_pairs(names: &Names, pairs: &str, out: &mut String) {
    for (i, pair) in pairs.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) => {
                if !value.is_empty() && names.matches(&decode(name, true)) {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                } else {
                    push_component(name, true, out);
                    out.push('=');
                    push_component(value, true, out);
                }
            }
            None => push_component(pair, true, out),
        }
    }
}

/// Appends one percent-encoded component: as it was if the free-text rule finds
/// nothing in its decoded form, re-encoded after redaction otherwise.
fn push_component(raw: &str, plus_is_space: bool, out: &mut String) {
    let decoded = decode(raw, plus_is_space);
    match text::redact(&decoded) {
        Cow::Borrowed(_) => out.push_str(raw),
        Cow::Owned(redacted) => encode_into(&redacted, out),
    }
}

/// Percent-decodes (and, in queries and forms, turns `+` into a space). Bytes that are
/// not UTF-8 after decoding are read lossily; a `%` not followed by two hex digits
/// stays as it is.
fn decode(raw: &str, plus_is_space: bool) -> Cow<'_, str> {
    let needs = raw
        .bytes()
        .any(|b| b == b'%' || (plus_is_space && b == b'+'));
    if !needs {
        return Cow::Borrowed(raw);
    }
    let b = raw.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| {
                    let h = std::str::from_utf8(h).ok()?;
                    u8::from_str_radix(h, 16).ok()
                });
                match hex {
                    Some(v) => {
                        bytes.push(v);
                        i += 3;
                    }
                    None => {
                        bytes.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                bytes.push(b' ');
                i += 1;
            }
            other => {
                bytes.push(other);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
}

/// Percent-encodes everything but unreserved characters, a few harmless sub-delimiters
/// and the brackets of the redaction markers.
fn encode_into(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'[' | b']' | b'!' | b'$' | b'*' | b',' | b':' | b'@'
            )
        {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}
