//! Durations in the configuration: unit strings and bare numbers.

use std::fmt;
use std::time::Duration;

/// The unit a bare number (`timeout = 5`) is read in; it depends on the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BareUnit {
    /// `timeout = 5` means five seconds.
    Seconds,
    /// `base_delay = 250` means 250 milliseconds.
    Millis,
}

impl BareUnit {
    fn nanos(self) -> f64 {
        match self {
            BareUnit::Seconds => 1e9,
            BareUnit::Millis => 1e6,
        }
    }

    /// The unit's name, for error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            BareUnit::Seconds => "seconds",
            BareUnit::Millis => "milliseconds",
        }
    }
}

/// A bare number in `unit`, as a duration; `None` when negative, not finite or too large.
pub(crate) fn from_number(value: f64, unit: BareUnit) -> Option<Duration> {
    scaled(value, unit.nanos())
}

/// `value` units of `unit_nanos` nanoseconds each, rounded to the nanosecond.
fn scaled(value: f64, unit_nanos: f64) -> Option<Duration> {
    let nanos = (value * unit_nanos).round();
    // u64::MAX nanoseconds is about 584 years: plenty for any setting.
    if nanos.is_finite() && (0.0..1.8e19).contains(&nanos) {
        Some(Duration::from_nanos(nanos as u64))
    } else {
        None
    }
}

/// Parses `"250ms"`, `"5s"`, `"1.5s"`, `"1m30s"`, `"2h"`, `"1d"` (units `ns`, `us`,
/// `µs`, `ms`, `s`, `m`, `h`, `d`; spaces between parts allowed). A string holding only
/// a number is read in `bare`.
pub(crate) fn parse(text: &str, bare: BareUnit) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("an empty string".to_owned());
    }
    if let Ok(n) = s.parse::<f64>() {
        return from_number(n, bare).ok_or_else(|| format!("{text:?}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("{text:?}"));
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| format!("{text:?}"))?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        let unit_nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" | "sec" | "secs" => 1e9,
            "m" | "min" | "mins" => 60e9,
            "h" | "hr" | "hrs" => 3600e9,
            "d" => 86_400e9,
            _ => return Err(format!("{text:?}")),
        };
        rest = rest[unit_len..].trim_start();
        let part = scaled(number, unit_nanos).ok_or_else(|| format!("{text:?}"))?;
        total = total.checked_add(part).ok_or_else(|| format!("{text:?}"))?;
    }
    Ok(total)
}

/// A duration written with its unit, the way the configuration accepts it back:
/// the largest unit that expresses it exactly (`"250ms"`, `"30s"`, `"5m"`, `"1500ms"`).
pub fn format_duration(d: Duration) -> String {
    Human(d).to_string()
}

/// Displays a duration with its unit; see [`format_duration`].
pub(crate) struct Human(pub(crate) Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        const UNITS: [(u128, &str); 6] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
        ];
        for (size, name) in UNITS {
            if nanos % size == 0 {
                return write!(f, "{}{name}", nanos / size);
            }
        }
        write!(f, "{nanos}ns")
    }
}

/// Parses a duration written with a unit (`"250ms"`, `"5s"`, `"1m30s"`); a bare number
/// is read in seconds. For command-line flags and other text outside a file.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse(text, BareUnit::Seconds)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unit_strings() {
        let s = BareUnit::Seconds;
        assert_eq!(parse("250ms", s).unwrap(), Duration::from_millis(250));
        assert_eq!(parse("5s", s).unwrap(), Duration::from_secs(5));
        assert_eq!(parse("1.5s", s).unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("1m", s).unwrap(), Duration::from_secs(60));
        assert_eq!(parse("1h", s).unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("1m30s", s).unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1m 30s", s).unwrap(), Duration::from_secs(90));
        assert_eq!(parse("10us", s).unwrap(), Duration::from_micros(10));
        assert_eq!(parse("2d", s).unwrap(), Duration::from_secs(172_800));
    }

    #[test]
    fn bare_number_strings_use_the_key_unit() {
        assert_eq!(
            parse("5", BareUnit::Seconds).unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            parse("5", BareUnit::Millis).unwrap(),
            Duration::from_millis(5)
        );
        assert_eq!(
            parse("0.1", BareUnit::Seconds).unwrap(),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "ms", "5 parsecs", "-1s", "1.2.3s", "5s!", "s5"] {
            assert!(parse(bad, BareUnit::Seconds).is_err(), "{bad}");
        }
        assert!(from_number(-1.0, BareUnit::Seconds).is_none());
        assert!(from_number(f64::NAN, BareUnit::Seconds).is_none());
        assert!(from_number(1e300, BareUnit::Seconds).is_none());
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_nanos(7)), "7ns");
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(90),
            Duration::from_nanos(1_234_567),
        ] {
            assert_eq!(parse(&format_duration(d), BareUnit::Seconds).unwrap(), d);
        }
    }
}
