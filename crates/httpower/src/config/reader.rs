//! Typed reading of a TOML table that knows its key path.
//!
//! Each section is read through a [`Reader`] that first rejects keys the section does
//! not define (suggesting the closest valid one) and then extracts typed values, so
//! every error carries the full key path, what was expected and what was found.

use std::collections::HashSet;
use std::time::Duration;

use super::duration::{self, BareUnit};
use super::error::ConfigError;
use super::path::{index, join};

/// Paths whose string value came from `${...}` interpolation.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub(crate) expanded: HashSet<String>,
}

/// A table being read, with its path and the keys it may hold.
pub(crate) struct Reader<'a> {
    table: &'a toml::Table,
    path: String,
    ctx: &'a Ctx,
}

/// A short description of a value for "found ..." in messages.
pub(crate) fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => {
            if s.chars().count() > 60 {
                let cut: String = s.chars().take(57).collect();
                format!("{:?}", format!("{cut}..."))
            } else {
                format!("{s:?}")
            }
        }
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => format!("the date {d}"),
        toml::Value::Array(_) => "an array".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

impl<'a> Reader<'a> {
    /// Reads `table` at `path`, rejecting any key outside `valid`.
    pub(crate) fn new(
        table: &'a toml::Table,
        path: impl Into<String>,
        ctx: &'a Ctx,
        valid: &[&str],
    ) -> Result<Self, ConfigError> {
        let path = path.into();
        for key in table.keys() {
            if !valid.contains(&key.as_str()) {
                return Err(ConfigError::unknown_key(join(&path, key), valid, key));
            }
        }
        Ok(Reader { table, path, ctx })
    }

    /// Reads `value` at `path` as a table with `valid` keys.
    pub(crate) fn of_value(
        value: &'a toml::Value,
        path: impl Into<String>,
        ctx: &'a Ctx,
        valid: &[&str],
    ) -> Result<Self, ConfigError> {
        let path = path.into();
        match value {
            toml::Value::Table(t) => Reader::new(t, path, ctx, valid),
            other => Err(ConfigError::invalid(path, "a table", describe(other))),
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn ctx(&self) -> &'a Ctx {
        self.ctx
    }

    /// The full path of `key` in this table.
    pub(crate) fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a toml::Value> {
        self.table.get(key)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &'a String> {
        self.table.keys()
    }

    fn was_expanded(&self, key: &str) -> bool {
        self.ctx.expanded.contains(&self.at(key))
    }

    fn bad(&self, key: &str, expected: &str, value: &toml::Value) -> ConfigError {
        ConfigError::invalid(self.at(key), expected, describe(value))
    }

    /// A sub-table with its own set of keys.
    pub(crate) fn table(
        &self,
        key: &str,
        valid: &[&str],
    ) -> Result<Option<Reader<'a>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Reader::of_value(v, self.at(key), self.ctx, valid).map(Some),
        }
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.bad(key, "a string", v)),
        }
    }

    /// A non-empty string.
    pub(crate) fn name(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.string(key)? {
            Some(s) if s.trim().is_empty() => Err(ConfigError::invalid(
                self.at(key),
                "a non-empty string",
                "an empty string",
            )),
            other => Ok(other),
        }
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(v @ toml::Value::String(s)) if self.was_expanded(key) => {
                match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => Ok(Some(true)),
                    "false" | "0" | "no" | "off" => Ok(Some(false)),
                    _ => Err(self.bad(key, "true or false", v)),
                }
            }
            Some(v) => Err(self.bad(key, "true or false", v)),
        }
    }

    /// A whole number within `min ..= max`.
    pub(crate) fn int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, ConfigError> {
        let expected = if max == i64::MAX {
            format!("an integer of at least {min}")
        } else {
            format!("an integer in {min} ..= {max}")
        };
        let n = match self.get(key) {
            None => return Ok(None),
            Some(toml::Value::Integer(i)) => *i,
            Some(v @ toml::Value::String(s)) if self.was_expanded(key) => {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| self.bad(key, &expected, v))?
            }
            Some(v) => return Err(self.bad(key, &expected, v)),
        };
        if n < min || n > max {
            return Err(ConfigError::invalid(self.at(key), expected, n.to_string()));
        }
        Ok(Some(n))
    }

    /// A `u32` of at least `min`.
    pub(crate) fn u32(&self, key: &str, min: u32) -> Result<Option<u32>, ConfigError> {
        let n = self.int(key, i64::from(min), i64::from(u32::MAX))?;
        Ok(n.and_then(|n| u32::try_from(n).ok()))
    }

    /// A `usize` of at least `min`.
    pub(crate) fn usize(&self, key: &str, min: usize) -> Result<Option<usize>, ConfigError> {
        let min = i64::try_from(min).unwrap_or(i64::MAX);
        let n = self.int(key, min, i64::MAX)?;
        Ok(n.and_then(|n| usize::try_from(n).ok()))
    }

    /// A number (integer or float) within `min ..= max`.
    pub(crate) fn number(&self, key: &str, min: f64, max: f64) -> Result<Option<f64>, ConfigError> {
        let expected = if max == f64::INFINITY {
            format!("a number of at least {min}")
        } else {
            format!("a number in {min} ..= {max}")
        };
        let n = match self.get(key) {
            None => return Ok(None),
            Some(toml::Value::Integer(i)) => *i as f64,
            Some(toml::Value::Float(f)) => *f,
            Some(v @ toml::Value::String(s)) if self.was_expanded(key) => {
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| self.bad(key, &expected, v))?
            }
            Some(v) => return Err(self.bad(key, &expected, v)),
        };
        if !n.is_finite() || n < min || n > max {
            return Err(ConfigError::invalid(self.at(key), expected, n.to_string()));
        }
        Ok(Some(n))
    }

    /// A number above zero.
    pub(crate) fn positive(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        let n = self.number(key, 0.0, f64::INFINITY)?;
        if n == Some(0.0) {
            return Err(ConfigError::invalid(self.at(key), "a number above 0", "0"));
        }
        Ok(n)
    }

    /// A percentage above 0 and at most 100.
    pub(crate) fn percent(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        let n = self.number(key, 0.0, 100.0)?;
        if n == Some(0.0) {
            return Err(ConfigError::invalid(
                self.at(key),
                "a percentage above 0 and at most 100",
                "0",
            ));
        }
        Ok(n)
    }

    /// A duration: a unit string (`"250ms"`) or a bare number in `unit`.
    pub(crate) fn duration(
        &self,
        key: &str,
        unit: BareUnit,
    ) -> Result<Option<Duration>, ConfigError> {
        let expected = || {
            format!(
                "a duration such as \"250ms\", \"5s\", \"1m\" or a number of {}",
                unit.name()
            )
        };
        match self.get(key) {
            None => Ok(None),
            Some(v @ toml::Value::Integer(i)) => duration::from_number(*i as f64, unit)
                .map(Some)
                .ok_or_else(|| self.bad(key, &expected(), v)),
            Some(v @ toml::Value::Float(f)) => duration::from_number(*f, unit)
                .map(Some)
                .ok_or_else(|| self.bad(key, &expected(), v)),
            Some(toml::Value::String(s)) => duration::parse(s, unit)
                .map(Some)
                .map_err(|found| ConfigError::invalid(self.at(key), expected(), found)),
            Some(v) => Err(self.bad(key, &expected(), v)),
        }
    }

    /// A duration that is not zero.
    pub(crate) fn nonzero_duration(
        &self,
        key: &str,
        unit: BareUnit,
    ) -> Result<Option<Duration>, ConfigError> {
        match self.duration(key, unit)? {
            Some(d) if d.is_zero() => Err(ConfigError::invalid(
                self.at(key),
                "a duration above zero",
                describe_or(self.get(key), "0"),
            )),
            other => Ok(other),
        }
    }

    /// A duration, or `"none"` / `false` for "no limit": `Some(None)`.
    pub(crate) fn optional_duration(
        &self,
        key: &str,
        unit: BareUnit,
    ) -> Result<Option<Option<Duration>>, ConfigError> {
        match self.get(key) {
            Some(toml::Value::String(s)) if s.trim().eq_ignore_ascii_case("none") => Ok(Some(None)),
            Some(toml::Value::Boolean(false)) => Ok(Some(None)),
            _ => Ok(self.nonzero_duration(key, unit)?.map(Some)),
        }
    }

    /// One of `choices` (with a suggestion for a near miss).
    pub(crate) fn choice(
        &self,
        key: &str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>, ConfigError> {
        let expected = || {
            let quoted: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
            format!("one of {}", quoted.join(", "))
        };
        match self.get(key) {
            None => Ok(None),
            Some(v @ toml::Value::String(s)) => {
                match choices.iter().find(|c| c.eq_ignore_ascii_case(s.trim())) {
                    Some(c) => Ok(Some(*c)),
                    None => Err(self
                        .bad(key, &expected(), v)
                        .suggest_from(s, choices.iter().copied())),
                }
            }
            Some(v) => Err(self.bad(key, &expected(), v)),
        }
    }

    /// An array of values, each with its own path.
    pub(crate) fn array(
        &self,
        key: &str,
    ) -> Result<Option<Vec<(String, &'a toml::Value)>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(items)) => {
                let path = self.at(key);
                Ok(Some(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (index(&path, i), v))
                        .collect(),
                ))
            }
            Some(v) => Err(self.bad(key, "an array", v)),
        }
    }

    /// An array of strings.
    pub(crate) fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (path, v) in items {
            match v {
                toml::Value::String(s) => out.push(s.clone()),
                other => return Err(ConfigError::invalid(path, "a string", describe(other))),
            }
        }
        Ok(Some(out))
    }

    /// A table of string values, in file order.
    pub(crate) fn string_map(
        &self,
        key: &str,
    ) -> Result<Option<Vec<(String, String)>>, ConfigError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let toml::Value::Table(t) = value else {
            return Err(self.bad(key, "a table of strings", value));
        };
        let path = self.at(key);
        let mut out = Vec::with_capacity(t.len());
        for (k, v) in t {
            match v {
                toml::Value::String(s) => out.push((k.clone(), s.clone())),
                other => {
                    return Err(ConfigError::invalid(
                        join(&path, k),
                        "a string",
                        describe(other),
                    ))
                }
            }
        }
        Ok(Some(out))
    }
}

fn describe_or(value: Option<&toml::Value>, default: &str) -> String {
    value.map_or_else(|| default.to_owned(), describe)
}
