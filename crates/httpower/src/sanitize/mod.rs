//! Redaction of secrets and card numbers in everything that leaves the process as
//! telemetry: log lines, events, span fields, metric labels.
//!
//! # Why
//!
//! An HTTP client sees credentials all the time: `Authorization` headers, API keys in
//! query strings, passwords in login bodies, card numbers in payment payloads. The
//! moment one of them reaches a log line it is copied to disks, log shippers, search
//! indexes and dashboards that many more people can read than the service's secret
//! store. Sanitizing "the logs" is not enough either: a tracing span that carries the
//! raw URL leaks the `?api_key=` that the log formatter hid. So every piece of request
//! or response data goes through one [`Sanitizer`] before it is written anywhere.
//!
//! Redaction works on copies: every method takes references and returns a new string,
//! so what is sent on the wire can never be changed by it.
//!
//! # Rules
//!
//! * **Header names** ([`Sanitizer::is_sensitive_header`]): the defaults in
//!   [`DEFAULT_HEADERS`] plus the builder's extras, compared case-insensitively; a header
//!   is also sensitive when its name would be a sensitive field name under the rule
//!   below (`X-Client-Secret`, `X-Amz-Security-Token`, `X-Upstream-Authorization`).
//!   Sensitive values become `[REDACTED]`; other values get the free-text rule.
//! * **Field names** in JSON bodies, form bodies and query strings
//!   ([`Sanitizer::is_sensitive_field`]): [`DEFAULT_FIELDS`] (plus the default header
//!   names, so a JSON `"cookie"` is hidden too) plus the builder's extras. A name is
//!   split into words at `-`, `_`, `.`, spaces, brackets and other punctuation, at
//!   camel-case humps (`accessToken`, `APIKey`) and between letters and digits; the
//!   words are lower-cased and joined (`api_key`, `api-key` and `apiKey` all become
//!   `apikey`). A name is sensitive when
//!   1. a sensitive name covers one or more **whole words** of it, anywhere:
//!      `user_pin`, `pin_code`, `stripe_api_key`, `password_confirmation`,
//!      `card[number]`, `x-client-secret` — but never `shipping` or `spinner`; or
//!   2. a sensitive name of **five letters or more** ends it, even without a word break:
//!      `githubtoken`, `clientsecret`, `xapikey`.
//!
//!   Short names (`pin`, `pwd`, `ssn`, `cvv`) need whole words so that they do not hide
//!   ordinary fields; the suffix rule stops at the end of the name so that
//!   `prompt_tokens` and `max_tokens` (counters, not credentials) stay readable.
//!   The value of a sensitive field becomes `"[REDACTED]"` whatever its type (a nested
//!   object is replaced as a whole).
//! * **Free text** ([`Sanitizer::text`]): card numbers — runs of 12 to 19 digits,
//!   possibly split into groups by single spaces or dashes, that pass the Luhn check —
//!   become `[CARD]`; order numbers that fail Luhn, and digits inside an unbroken run of
//!   20 or more, stay. Key-shaped tokens keep their well-known prefix and lose the rest
//!   (`sk_live_…` → `sk_[REDACTED]`): `sk_`, `pk_`, `rk_`, `whsec_`, `ghp_`, `gho_`,
//!   `ghu_`, `ghs_`, `github_pat_` and `xox?-` followed by at least six more key
//!   characters, `AKIA` followed by exactly 16 upper-case letters or digits, and
//!   three-part JWTs (`eyJ….….…`, replaced whole). The credentials after `Bearer ` are
//!   redacted too.
//! * **URLs** ([`Sanitizer::url`], [`Sanitizer::url_str`]): the user information is
//!   removed; query (and fragment) parameters with a sensitive name keep the name and
//!   lose the value; every path segment, query value and fragment value also gets the
//!   free-text rule, after percent-decoding.
//! * **Bodies** ([`Sanitizer::body`]): JSON is redacted structurally at any depth and
//!   keeps its formatting; `application/x-www-form-urlencoded` by field; anything else
//!   is free text. The result is cut at [`SanitizerBuilder::max_body_bytes`] on a
//!   character boundary, with a `…[truncated N bytes]` marker.
//!
//! Redaction is best effort for honest data, not a defence against someone hiding a
//! secret on purpose (a card number spelled with `\u0034` escapes inside a JSON key,
//! say): it keeps mistakes out of the logs.
//!
//! ```
//! use httpower::sanitize::Sanitizer;
//!
//! let sanitizer = Sanitizer::builder()
//!     .extra_headers(["x-tenant-signature"])
//!     .extra_fields(["mothers_maiden_name"])
//!     .max_body_bytes(4096)
//!     .build();
//!
//! assert_eq!(sanitizer.header_value("Authorization", "Bearer abc.def"), "[REDACTED]");
//! assert_eq!(sanitizer.header_value("X-Tenant-Signature", "deadbeef"), "[REDACTED]");
//!
//! let url = url::Url::parse("https://bob:hunter2@api.example.com/v1/keys/sk_live_abc123?api_key=k1&page=2")?;
//! assert_eq!(
//!     sanitizer.url(&url),
//!     "https://api.example.com/v1/keys/sk_[REDACTED]?api_key=[REDACTED]&page=2",
//! );
//!
//! let body = br#"{"user":{"email":"a@example.com","password":"hunter2"},"card":"4111 1111 1111 1111"}"#;
//! assert_eq!(
//!     sanitizer.body(Some("application/json"), body),
//!     r#"{"user":{"email":"a@example.com","password":"[REDACTED]"},"card":"[CARD]"}"#,
//! );
//!
//! // Order numbers that fail the Luhn check stay readable.
//! assert_eq!(sanitizer.text("order 4111-1111-1111-1112 paid"), "order 4111-1111-1111-1112 paid");
//! # Ok::<(), url::ParseError>(())
//! ```

mod body;
mod headers;
mod names;
mod text;
mod url;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use names::Names;

/// What replaces a secret: a sensitive header or field value, or a key-shaped token
/// (after the token's well-known prefix, if it has one).
pub const REDACTED: &str = "[REDACTED]";

/// What replaces a card number in free text.
pub const CARD: &str = "[CARD]";

/// Body size, in bytes of sanitized output, above which [`Sanitizer::body`] truncates
/// unless the builder sets another limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4096;

/// Header names that are always redacted (compared case-insensitively).
pub const DEFAULT_HEADERS: &[&str] = &[
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

/// Body and query field names that are always redacted (see the module docs for how a
/// name matches).
pub const DEFAULT_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "client_secret",
    "credit_card",
    "card_number",
    "cvv",
    "cvc",
    "pin",
    "ssn",
    "tax_id",
    "account_number",
    "routing_number",
];

/// Redacts secrets and card numbers from headers, URLs, bodies and free text.
///
/// Built once (with [`Sanitizer::builder`] or [`Sanitizer::default`]) and shared:
/// cloning is a reference-count increment. All methods take `&self` and borrowed
/// input and return new strings.
#[derive(Clone)]
pub struct Sanitizer {
    inner: Arc<Inner>,
}

struct Inner {
    /// Header names: default headers, extra headers, default fields, extra fields.
    headers: Names,
    /// Field names: default fields, extra fields, default headers.
    fields: Names,
    max_body_bytes: usize,
}

impl Sanitizer {
    /// Starts a builder with the default lists and a [`DEFAULT_MAX_BODY_BYTES`] limit.
    pub fn builder() -> SanitizerBuilder {
        SanitizerBuilder::default()
    }

    /// The most bytes of sanitized body [`Sanitizer::body`] returns before its
    /// truncation marker.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    /// Whether a header with this name has its value replaced by [`REDACTED`].
    pub fn is_sensitive_header(&self, name: &str) -> bool {
        self.inner.headers.matches(name)
    }

    /// Whether a JSON key, form field or query parameter with this name has its value
    /// replaced by [`REDACTED`].
    pub fn is_sensitive_field(&self, name: &str) -> bool {
        self.inner.fields.matches(name)
    }

    /// Redacts card numbers, key-shaped tokens and bearer credentials in free text.
    ///
    /// Returns the input unchanged (borrowed) when there is nothing to redact.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        text::redact(text)
    }
}

impl Default for Sanitizer {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl fmt::Debug for Sanitizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sanitizer")
            .field("headers", &self.inner.headers)
            .field("fields", &self.inner.fields)
            .field("max_body_bytes", &self.inner.max_body_bytes)
            .finish()
    }
}

/// Builds a [`Sanitizer`]. The lists given here are added to the defaults, never
/// replace them.
#[derive(Debug, Clone)]
pub struct SanitizerBuilder {
    extra_headers: Vec<String>,
    extra_fields: Vec<String>,
    max_body_bytes: usize,
}

impl Default for SanitizerBuilder {
    fn default() -> Self {
        Self {
            extra_headers: Vec::new(),
            extra_fields: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl SanitizerBuilder {
    /// More header names to redact, in addition to [`DEFAULT_HEADERS`]. Calls add up.
    pub fn extra_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.extra_headers
            .extend(names.into_iter().map(|n| n.as_ref().to_owned()));
        self
    }

    /// More body and query field names to redact, in addition to [`DEFAULT_FIELDS`].
    /// They are matched like the defaults (words, case and separators ignored) and
    /// apply to header names too. Calls add up.
    pub fn extra_fields<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.extra_fields
            .extend(names.into_iter().map(|n| n.as_ref().to_owned()));
        self
    }

    /// The most bytes of sanitized body to keep (default [`DEFAULT_MAX_BODY_BYTES`]);
    /// the rest is replaced by a `…[truncated N bytes]` marker.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Builds the sanitizer.
    pub fn build(self) -> Sanitizer {
        let extra_headers = self.extra_headers.iter().map(String::as_str);
        let extra_fields = self.extra_fields.iter().map(String::as_str);
        let headers = Names::new(
            DEFAULT_HEADERS
                .iter()
                .copied()
                .chain(extra_headers)
                .chain(DEFAULT_FIELDS.iter().copied())
                .chain(extra_fields.clone()),
        );
        let fields = Names::new(
            DEFAULT_FIELDS
                .iter()
                .copied()
                .chain(extra_fields)
                .chain(DEFAULT_HEADERS.iter().copied()),
        );
        Sanitizer {
            inner: Arc::new(Inner {
                headers,
                fields,
                max_body_bytes: self.max_body_bytes,
            }),
        }
    }
}
