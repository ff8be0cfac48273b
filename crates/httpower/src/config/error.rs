//! The one error type of configuration loading.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of mistake a [`ConfigError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid TOML.
    Syntax,
    /// A key that this section does not define.
    UnknownKey,
    /// A key that must be present is missing.
    MissingKey,
    /// A value of the wrong type or outside its allowed range.
    InvalidValue,
    /// `${VAR}` names a variable that is not set and has no default.
    UnsetVariable,
    /// A name (client, limiter, store, preset) that the configuration does not define.
    UnknownName,
}

impl ConfigErrorKind {
    /// A stable, machine-readable name for the kind (`unknown_key`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            ConfigErrorKind::Io => "io",
            ConfigErrorKind::Syntax => "syntax",
            ConfigErrorKind::UnknownKey => "unknown_key",
            ConfigErrorKind::MissingKey => "missing_key",
            ConfigErrorKind::InvalidValue => "invalid_value",
            ConfigErrorKind::UnsetVariable => "unset_variable",
            ConfigErrorKind::UnknownName => "unknown_name",
        }
    }
}

/// A configuration mistake, located by its key path.
///
/// Every error names the key path (`clients.stripe.retry.max_retries`), what was
/// expected there and what was found, and, for misspellings, the closest valid
/// spelling:
///
/// ```
/// use httpower::config::Config;
///
/// let err = Config::from_toml_str("[clients.stripe.retry]\nmax_retrys = 2\n").unwrap_err();
/// assert_eq!(err.path(), "clients.stripe.retry.max_retrys");
/// assert_eq!(err.suggestion(), Some("max_retries"));
/// assert_eq!(
///     err.to_string(),
///     r#"clients.stripe.retry.max_retrys: unknown key (did you mean "max_retries"?)"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    // Boxed: the error travels through every `Result` of the loader and stays one
    // pointer wide.
    inner: Box<Inner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    kind: ConfigErrorKind,
    path: String,
    expected: String,
    found: String,
    suggestion: Option<String>,
    file: Option<PathBuf>,
}

impl ConfigError {
    pub(crate) fn new(
        kind: ConfigErrorKind,
        path: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        ConfigError {
            inner: Box::new(Inner {
                kind,
                path: path.into(),
                expected: expected.into(),
                found: found.into(),
                suggestion: None,
                file: None,
            }),
        }
    }

    /// A value of the wrong type or out of range.
    pub(crate) fn invalid(
        path: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self::new(ConfigErrorKind::InvalidValue, path, expected, found)
    }

    /// A required key that is absent.
    pub(crate) fn missing(path: impl Into<String>, expected: impl Into<String>) -> Self {
        Self::new(ConfigErrorKind::MissingKey, path, expected, "nothing")
    }

    /// A key the section does not define, with the closest valid key if one is near.
    pub(crate) fn unknown_key(path: impl Into<String>, valid: &[&str], key: &str) -> Self {
        let expected = if valid.is_empty() {
            "no keys".to_owned()
        } else {
            format!("one of: {}", valid.join(", "))
        };
        let mut err = Self::new(ConfigErrorKind::UnknownKey, path, expected, key.to_owned());
        err.inner.suggestion = closest(key, valid.iter().copied());
        err
    }

    /// A reference to a name that is not defined.
    pub(crate) fn unknown_name<'a>(
        path: impl Into<String>,
        what: &str,
        name: &str,
        known: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let known: Vec<&str> = known.into_iter().collect();
        let expected = if known.is_empty() {
            format!("the name of a defined {what} (none are defined)")
        } else {
            format!("the name of a defined {what}: {}", known.join(", "))
        };
        let mut err = Self::new(
            ConfigErrorKind::UnknownName,
            path,
            expected,
            format!("{name:?}"),
        );
        err.inner.suggestion = closest(name, known.iter().copied());
        err
    }

    /// Adds the closest of `candidates` to `found` as a suggestion, if one is near.
    pub(crate) fn suggest_from<'a>(
        mut self,
        found: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        self.inner.suggestion = closest(found, candidates);
        self
    }

    /// Records the file the error was found in.
    pub(crate) fn in_file(mut self, file: &Path) -> Self {
        self.inner.file = Some(file.to_path_buf());
        self
    }

    /// What kind of mistake this is.
    pub fn kind(&self) -> ConfigErrorKind {
        self.inner.kind
    }

    /// The dotted key path of the offending value (`clients.stripe.retry.max_retries`;
    /// array elements as `server.routes[0]`). Empty for an I/O error on the file itself.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// What the key accepts.
    pub fn expected(&self) -> &str {
        &self.inner.expected
    }

    /// What was found instead (for an unset variable: the variable's name).
    pub fn found(&self) -> &str {
        &self.inner.found
    }

    /// The closest valid spelling, for a misspelled key or name.
    pub fn suggestion(&self) -> Option<&str> {
        self.inner.suggestion.as_deref()
    }

    /// The file the configuration was read from, when it came from a file.
    pub fn file(&self) -> Option<&Path> {
        self.inner.file.as_deref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &*self.inner;
        let path = if e.path.is_empty() { "<root>" } else { &e.path };
        match e.kind {
            ConfigErrorKind::Io => {
                write!(f, "{path}: cannot read the configuration: {}", e.found)?;
            }
            ConfigErrorKind::Syntax => write!(f, "{path}: invalid TOML: {}", e.found)?,
            ConfigErrorKind::UnknownKey => write!(f, "{path}: unknown key")?,
            ConfigErrorKind::MissingKey => {
                write!(f, "{path}: missing; expected {}", e.expected)?;
            }
            ConfigErrorKind::UnsetVariable => write!(
                f,
                "{path}: environment variable `{}` is not set and has no default \
                 (write ${{{}:-default}} to give one)",
                e.found, e.found
            )?,
            ConfigErrorKind::InvalidValue | ConfigErrorKind::UnknownName => {
                write!(f, "{path}: expected {}, found {}", e.expected, e.found)?;
            }
        }
        if let Some(s) = &e.suggestion {
            write!(f, " (did you mean {s:?}?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The candidate closest to `word` by edit distance, if it is close enough to be a
/// plausible misspelling.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let word_lower = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= limit && *d < c.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_owned())
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and
/// transpositions of two neighbours each cost one.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    // Three rows: two back (for transpositions), previous, current.
    let mut before: Vec<usize> = vec![0; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur: Vec<usize> = vec![0; width];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..width {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            cur[j] = best;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("max_retrys", "max_retries"), 2);
        assert_eq!(edit_distance("tiemout", "timeout"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn closest_picks_the_nearest_plausible_key() {
        let keys = ["max_retries", "base_delay", "max_delay"];
        assert_eq!(closest("max_retrys", keys).as_deref(), Some("max_retries"));
        assert_eq!(closest("max_dealy", keys).as_deref(), Some("max_delay"));
        assert_eq!(closest("colour", keys), None);
        assert_eq!(closest("BASE_DELAY", keys).as_deref(), Some("base_delay"));
    }

    #[test]
    fn display_forms() {
        let e = ConfigError::invalid("retry.max_retries", "an integer", "\"three\"");
        assert_eq!(
            e.to_string(),
            "retry.max_retries: expected an integer, found \"three\""
        );
        let e = ConfigError::new(ConfigErrorKind::UnsetVariable, "stores.main.url", "", "X");
        assert!(e
            .to_string()
            .starts_with("stores.main.url: environment variable `X`"));
    }
}
