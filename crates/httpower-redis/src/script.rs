//! The limiter script: argument encoding and reply decoding.
//!
//! Every decision is one `EVALSHA` of `scripts/limiter.lua` (see its header for the
//! calling convention). This module turns core types into the script's arguments and
//! its integer replies back into [`Decision`]s, rejecting replies of the wrong shape
//! with a typed error instead of guessing.

use std::time::Duration;

use httpower_core::rate::{AnyAlgorithm, Decision};
use redis::Value;

/// The script's source.
pub(crate) const SOURCE: &str = include_str!("scripts/limiter.lua");

/// What the script does with its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Admit iff every check admits; charge all or none.
    All,
    /// Admit iff one check admits; charge only the first that does.
    Any,
    /// Evaluate every check as if charging it, charge nothing.
    Dry,
    /// Give the cost of each check back.
    Refund,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::All => "all",
            Op::Any => "any",
            Op::Dry => "dry",
            Op::Refund => "refund",
        }
    }
}

/// Microseconds, rounded up so a limit is never looser on Redis than in memory.
pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX)
}

/// The four script fields of one check: algorithm code, a, b, cost.
pub(crate) fn check_fields(algorithm: &AnyAlgorithm, cost: u32) -> (&'static str, u64, u32, u32) {
    match algorithm {
        AnyAlgorithm::Gcra(g) => (
            "g",
            micros(g.quota().emission_interval()),
            g.quota().burst().get(),
            cost,
        ),
        AnyAlgorithm::SlidingWindow(s) => (
            "s",
            micros(s.quota().window()),
            s.quota().limit().get(),
            cost,
        ),
        AnyAlgorithm::FixedWindow(f) => (
            "f",
            micros(f.quota().window()),
            f.quota().limit().get(),
            cost,
        ),
    }
}

/// A reply that does not have the shape the script produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadReply(pub(crate) String);

fn integers(value: &Value) -> Result<Vec<i64>, BadReply> {
    let Value::Array(items) = value else {
        return Err(BadReply(format!(
            "expected an array of integers, got {value:?}"
        )));
    };
    items
        .iter()
        .map(|item| match item {
            Value::Int(n) => Ok(*n),
            other => Err(BadReply(format!("expected an integer, got {other:?}"))),
        })
        .collect()
}

fn non_negative(n: i64, what: &str) -> Result<u64, BadReply> {
    u64::try_from(n).map_err(|_| BadReply(format!("negative {what}: {n}")))
}

/// Decodes the reply of an `all` / `any` call with `limits.len()` checks.
pub(crate) fn decisions(value: &Value, limits: &[u32]) -> Result<(bool, Vec<Decision>), BadReply> {
    let numbers = integers(value)?;
    if numbers.len() != 1 + 4 * limits.len() {
        return Err(BadReply(format!(
            "expected {} integers for {} checks, got {}",
            1 + 4 * limits.len(),
            limits.len(),
            numbers.len()
        )));
    }
    let admitted = flag(numbers[0])?;
    let mut out = Vec::with_capacity(limits.len());
    for (fields, &limit) in numbers[1..].chunks_exact(4).zip(limits) {
        let allowed = flag(fields[0])?;
        let remaining = u32::try_from(fields[1])
            .ok()
            .filter(|r| *r <= limit)
            .ok_or_else(|| BadReply(format!("remaining {} outside 0..={limit}", fields[1])))?;
        let reset = Duration::from_micros(non_negative(fields[2], "reset_after")?);
        let retry = Duration::from_micros(non_negative(fields[3], "retry_after")?);
        out.push(if allowed {
            Decision::allow(limit, remaining, reset)
        } else {
            Decision::deny(limit, remaining, reset, retry)
        });
    }
    Ok((admitted, out))
}

/// Decodes the reply of an `acquire` call: (admitted, remaining).
pub(crate) fn slot(value: &Value, max: u32) -> Result<(bool, u32), BadReply> {
    let numbers = integers(value)?;
    let [admitted, remaining] = numbers[..] else {
        return Err(BadReply(format!(
            "expected 2 integers, got {}",
            numbers.len()
        )));
    };
    let remaining = u32::try_from(remaining)
        .ok()
        .filter(|r| *r <= max)
        .ok_or_else(|| BadReply(format!("remaining {remaining} outside 0..={max}")))?;
    Ok((flag(admitted)?, remaining))
}

fn flag(n: i64) -> Result<bool, BadReply> {
    match n {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(BadReply(format!("expected 0 or 1, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_reply_decodes() {
        let reply = Value::Array(vec![
            Value::Int(1),
            Value::Int(1),
            Value::Int(4),
            Value::Int(100_000),
            Value::Int(0),
        ]);
        let (admitted, d) = decisions(&reply, &[5]).unwrap();
        assert!(admitted);
        assert_eq!(d, vec![Decision::allow(5, 4, Duration::from_millis(100))]);
    }

    #[test]
    fn malformed_replies_are_typed_errors() {
        let short = Value::Array(vec![Value::Int(1), Value::Int(1)]);
        assert!(decisions(&short, &[5])
            .unwrap_err()
            .0
            .contains("expected 5 integers"));
        let text = Value::SimpleString("OK".into());
        assert!(decisions(&text, &[5]).is_err());
        let too_many_left = Value::Array(vec![
            Value::Int(1),
            Value::Int(1),
            Value::Int(9),
            Value::Int(0),
            Value::Int(0),
        ]);
        assert!(decisions(&too_many_left, &[5])
            .unwrap_err()
            .0
            .contains("outside"));
        let negative = Value::Array(vec![
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(0),
        ]);
        assert!(decisions(&negative, &[5]).is_err());
        assert!(slot(&Value::Array(vec![Value::Int(2), Value::Int(0)]), 3).is_err());
    }

    #[test]
    fn durations_round_up_to_microseconds() {
        assert_eq!(micros(Duration::from_nanos(1)), 1);
        assert_eq!(micros(Duration::from_millis(100)), 100_000);
    }
}
