//! Refusing header names and values that could split or smuggle a request.

use std::fmt;

/// Checks a header name and value before they are sent.
///
/// Refuses an empty name, a name with any byte that is not an RFC 9110 token character
/// (so CR, LF, NUL, spaces and colons), and a value containing CR, LF, NUL or another
/// control character other than horizontal tab. A CR or LF that reached the wire would
/// let whoever controls the value add headers or a second request (response splitting,
/// request smuggling); NUL is truncated differently by different servers.
///
/// The error names the header but never shows the value: header values are where
/// tokens and passwords live.
///
/// ```
/// use httpower::security::{check_header, HeaderProblem};
///
/// assert!(check_header("x-request-id", b"abc-123").is_ok());
/// let err = check_header("authorization", b"Bearer t\r\nX-Admin: 1").unwrap_err();
/// assert_eq!(err.name(), "authorization");
/// assert_eq!(err.problem(), HeaderProblem::ForbiddenValueByte(b'\r'));
/// assert!(!err.to_string().contains("Bearer"));
/// ```
pub fn check_header(name: &str, value: &[u8]) -> Result<(), InvalidHeaderError> {
    if name.is_empty() {
        return Err(InvalidHeaderError::new(name, HeaderProblem::EmptyName));
    }
    if let Some(byte) = name.bytes().find(|&byte| !is_token_byte(byte)) {
        return Err(InvalidHeaderError::new(
            name,
            HeaderProblem::InvalidNameByte(byte),
        ));
    }
    if let Some(&byte) = value
        .iter()
        .find(|&&byte| (byte < 0x20 && byte != b'\t') || byte == 0x7f)
    {
        return Err(InvalidHeaderError::new(
            name,
            HeaderProblem::ForbiddenValueByte(byte),
        ));
    }
    Ok(())
}

/// `tchar` from RFC 9110 section 5.6.2.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// What is wrong with a header refused by [`check_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderProblem {
    /// The name is empty.
    EmptyName,
    /// The name contains this byte, which is not a token character (CR, LF, NUL, a
    /// space, a colon, a non-ASCII byte...).
    InvalidNameByte(u8),
    /// The value contains this byte: CR, LF, NUL or another control character.
    ForbiddenValueByte(u8),
}

/// A header refused before sending. Names the header and the problem, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Described(self))]
pub struct InvalidHeaderError {
    name: String,
    problem: HeaderProblem,
}

impl InvalidHeaderError {
    fn new(name: &str, problem: HeaderProblem) -> Self {
        InvalidHeaderError {
            name: printable(name),
            problem,
        }
    }

    /// The header's name, with control and non-ASCII characters escaped so that it is
    /// safe to log.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What is wrong.
    pub fn problem(&self) -> HeaderProblem {
        self.problem
    }
}

/// The message of an [`InvalidHeaderError`].
struct Described<'a>(&'a InvalidHeaderError);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.0.name;
        match self.0.problem {
            HeaderProblem::EmptyName => f.write_str("header name is empty"),
            HeaderProblem::InvalidNameByte(byte) => write!(
                f,
                "header name `{name}` contains {}, which is not allowed in a header name",
                ByteName(byte)
            ),
            HeaderProblem::ForbiddenValueByte(byte) => write!(
                f,
                "value of header `{name}` contains {}; CR, LF, NUL and other control \
                 characters are refused (the value is not shown)",
                ByteName(byte)
            ),
        }
    }
}

/// A byte, described for a human.
struct ByteName(u8);

impl fmt::Display for ByteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b'\r' => f.write_str("a carriage return (CR)"),
            b'\n' => f.write_str("a line feed (LF)"),
            0 => f.write_str("a NUL byte"),
            b' ' => f.write_str("a space"),
            byte if byte.is_ascii_graphic() => write!(f, "`{}`", char::from(byte)),
            byte => write!(f, "byte 0x{byte:02x}"),
        }
    }
}

/// `text` with everything but printable ASCII escaped.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn accepts_ordinary_headers() {
        for (name, value) in [
            ("x-request-id", &b"abc-123"[..]),
            ("Authorization", b"Bearer abc.def"),
            ("accept", b"text/html;q=0.9, */*;q=0.1"),
            ("x-tab", b"a\tb"),
            ("x-empty", b""),
            ("x-utf8", "caf\u{e9}".as_bytes()),
            ("x-weird!#$%&'*+-.^_`|~", b"1"),
        ] {
            assert_eq!(check_header(name, value), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_bad_values_without_showing_them() {
        for (value, byte) in [
            (&b"secret\r\nX-Injected: 1"[..], b'\r'),
            (b"secret\nX-Injected: 1", b'\n'),
            (b"secret\0tail", 0),
            (b"secret\x1b[31m", 0x1b),
            (b"secret\x7f", 0x7f),
        ] {
            let err = check_header("authorization", value).unwrap_err();
            assert_eq!(err.problem(), HeaderProblem::ForbiddenValueByte(byte));
            assert_eq!(err.name(), "authorization");
            let message = err.to_string();
            assert!(message.contains("`authorization`"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
        assert!(check_header("x", b"a\rb")
            .unwrap_err()
            .to_string()
            .contains("carriage return (CR)"));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(
            check_header("", b"v").unwrap_err().problem(),
            HeaderProblem::EmptyName
        );
        for (name, byte) in [
            ("x-a\r\nx-b", b'\r'),
            ("x-a\nx-b", b'\n'),
            ("x\0", 0),
            ("x a", b' '),
            ("x:a", b':'),
            ("x(a)", b'('),
            ("caf\u{e9}", 0xc3),
        ] {
            let err = check_header(name, b"v").unwrap_err();
            assert_eq!(
                err.problem(),
                HeaderProblem::InvalidNameByte(byte),
                "{name:?}"
            );
        }
        // The name in the message is safe to log: no raw line breaks.
        let err = check_header("x-a\r\nSet-Cookie: y", b"v").unwrap_err();
        assert_eq!(err.name(), "x-a\\r\\nSet-Cookie: y");
        assert!(!err.to_string().contains('\n'));
        assert!(!err.to_string().contains('\r'));
    }
}
