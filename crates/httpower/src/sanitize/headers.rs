//! Header values for logs.

use std::borrow::Cow;

use super::{text, Sanitizer, REDACTED};

impl Sanitizer {
    /// The value of header `name` as it may be logged: [`REDACTED`] when the name is
    /// sensitive ([`Sanitizer::is_sensitive_header`]), otherwise the value with the
    /// free-text rule applied (card numbers, key-shaped tokens, `Bearer` credentials).
    pub fn header_value<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        if self.is_sensitive_header(name) {
            Cow::Borrowed(REDACTED)
        } else {
            text::redact(value)
        }
    }

    /// Every header of `headers`, in order, as `(name, sanitized value)` pairs for a log
    /// line. Names are lower-case (as [`http::HeaderName`] stores them); values that are
    /// not valid UTF-8 are read lossily.
    pub fn headers(&self, headers: &http::HeaderMap) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(name, value)| {
                let name = name.as_str();
                let value = if self.is_sensitive_header(name) {
                    REDACTED.to_owned()
                } else {
                    match text::redact(&String::from_utf8_lossy(value.as_bytes())) {
                        Cow::Borrowed(v) => v.to_owned(),
                        Cow::Owned(v) => v,
                    }
                };
                (name.to_owned(), value)
            })
            .collect()
    }
}
