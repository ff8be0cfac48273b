//! `${VAR}` and `${VAR:-default}` in string values.

use std::collections::HashSet;

use super::error::{ConfigError, ConfigErrorKind};
use super::path::{index, join};

/// Expands every string in `value` (recursively), recording the key paths whose value
/// contained a reference, so typed readers may accept `"${PORT:-80}"` where a number is
/// expected.
pub(crate) fn interpolate_tree(
    value: &mut toml::Value,
    path: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    expanded: &mut HashSet<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) if s.contains('$') => {
            let out = expand(s, vars).map_err(|e| e.at(path))?;
            if out != *s {
                expanded.insert(path.to_owned());
            }
            *s = out;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &index(path, i), vars, expanded)?;
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                interpolate_tree(item, &join(path, key), vars, expanded)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Why a string could not be expanded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// `${NAME}` with `NAME` unset and no default.
    Unset(String),
    /// A `${` without its `}`, or a bad variable name.
    Malformed(String),
}

impl ExpandError {
    fn at(self, path: &str) -> ConfigError {
        match self {
            ExpandError::Unset(name) => ConfigError::new(
                ConfigErrorKind::UnsetVariable,
                path,
                format!("environment variable {name} to be set"),
                name,
            ),
            ExpandError::Malformed(text) => ConfigError::invalid(
                path,
                "`${NAME}` or `${NAME:-default}` (write `$${` for a literal `${`)",
                text,
            ),
        }
    }
}

/// Expands `${NAME}` and `${NAME:-default}` (the default applies when `NAME` is unset
/// or empty); `$${` is a literal `${`; any other `$` is kept as is.
pub(crate) fn expand(
    text: &str,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(ExpandError::Malformed(format!("{text:?}")));
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !valid_name(name) {
            return Err(ExpandError::Malformed(format!("{text:?}")));
        }
        match (vars(name).filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                // Set but empty, without a default, expands to the empty string.
                match vars(name) {
                    Some(empty) => out.push_str(&empty),
                    None => return Err(ExpandError::Unset(name.to_owned())),
                }
            }
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_references() {
        assert_eq!(
            expand("redis://${HOST}:6379", &vars).unwrap(),
            "redis://db.internal:6379"
        );
        assert_eq!(expand("${MISSING:-x:y}", &vars).unwrap(), "x:y");
        assert_eq!(expand("${HOST:-other}", &vars).unwrap(), "db.internal");
        assert_eq!(expand("${EMPTY:-fallback}", &vars).unwrap(), "fallback");
        assert_eq!(expand("${EMPTY}", &vars).unwrap(), "");
        assert_eq!(expand("${MISSING:-}", &vars).unwrap(), "");
        assert_eq!(
            expand("cost $5, $${HOST}", &vars).unwrap(),
            "cost $5, ${HOST}"
        );
        assert_eq!(expand("a$", &vars).unwrap(), "a$");
    }

    #[test]
    fn reports_unset_and_malformed() {
        assert_eq!(
            expand("x ${NOPE} y", &vars),
            Err(ExpandError::Unset("NOPE".to_owned()))
        );
        assert!(matches!(
            expand("${HOST", &vars),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand("${1BAD}", &vars),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand("${}", &vars),
            Err(ExpandError::Malformed(_))
        ));
    }
}
