//! SafeKit 8.2.5 time values: `"24h"`, `"700ms"`, or a bare number in the
//! attribute's implicit unit (`pulse="700"` means 700 ms, `loop_interval="24"`
//! means 24 hours).

use std::time::Duration;

/// A unit a time value may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Microseconds, `us`.
    Micros,
    /// Milliseconds, `ms`.
    Millis,
    /// Seconds, `s`.
    Secs,
    /// Minutes, `m`.
    Mins,
    /// Hours, `h`.
    Hours,
    /// Days, `d`.
    Days,
}

impl TimeUnit {
    /// Length of one unit in microseconds.
    pub const fn micros(self) -> u64 {
        match self {
            Self::Micros => 1,
            Self::Millis => 1_000,
            Self::Secs => 1_000_000,
            Self::Mins => 60_000_000,
            Self::Hours => 3_600_000_000,
            Self::Days => 86_400_000_000,
        }
    }

    /// The suffix as written in a configuration file.
    pub const fn suffix(self) -> &'static str {
        match self {
            Self::Micros => "us",
            Self::Millis => "ms",
            Self::Secs => "s",
            Self::Mins => "m",
            Self::Hours => "h",
            Self::Days => "d",
        }
    }

    fn from_suffix(s: &str) -> Option<Self> {
        Some(match s {
            "us" => Self::Micros,
            "ms" => Self::Millis,
            "s" => Self::Secs,
            "m" => Self::Mins,
            "h" => Self::Hours,
            "d" => Self::Days,
            _ => return None,
        })
    }
}

/// Reads a time value for `attribute`, whose implicit unit is `implicit`.
///
/// A value with another unit is converted to the implicit unit and rounded
/// (to nearest, ties to even), as SafeKit does; a non-zero value that rounds to zero cannot be
/// represented and is refused with SafeKit's own wording.
pub fn parse_time(value: &str, attribute: &str, implicit: TimeUnit) -> Result<Duration, String> {
    let v = value.trim();
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, suffix) = v.split_at(digits_end);
    let unit = if suffix.is_empty() { Some(implicit) } else { TimeUnit::from_suffix(suffix) };
    let (Ok(n), Some(unit)) = (num.parse::<u64>(), unit) else {
        return Err(format!(
            "invalid value '{value}' for the attribute {attribute} (expected a number with an optional unit d, h, m, s, ms or us; implicit unit: '{}')",
            implicit.suffix()
        ));
    };
    let total_us = u128::from(n) * u128::from(unit.micros());
    let per = u128::from(implicit.micros());
    // Round to nearest, ties to even (C's rint): 500ms is 0s, hence SafeKit's error.
    let (q, rem) = (total_us / per, total_us % per);
    let rounded = if rem * 2 > per || (rem * 2 == per && q % 2 == 1) { q + 1 } else { q };
    if n > 0 && rounded == 0 {
        return Err(format!("invalid value '{value}' for the attribute {attribute} (expected time unit: '{}')", implicit.suffix()));
    }
    let us = rounded
        .checked_mul(per)
        .and_then(|us| u64::try_from(us).ok())
        .ok_or_else(|| format!("invalid value '{value}' for the attribute {attribute} (too large)"))?;
    Ok(Duration::from_micros(us))
}

/// Writes `d` in `unit` with its suffix (used to write configurations back).
pub fn format_time(d: Duration, unit: TimeUnit) -> String {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    format!("{}{}", us / unit.micros(), unit.suffix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_use_the_implicit_unit() {
        assert_eq!(parse_time("700", "pulse", TimeUnit::Millis), Ok(Duration::from_millis(700)));
        assert_eq!(parse_time("24", "loop_interval", TimeUnit::Hours), Ok(Duration::from_secs(24 * 3600)));
    }

    #[test]
    fn units_convert_and_round_to_nearest_even() {
        assert_eq!(parse_time("2m", "boot_delay", TimeUnit::Secs), Ok(Duration::from_secs(120)));
        assert_eq!(parse_time("1500ms", "boot_delay", TimeUnit::Secs), Ok(Duration::from_secs(2)));
        assert_eq!(parse_time("2500ms", "boot_delay", TimeUnit::Secs), Ok(Duration::from_secs(2)));
        assert_eq!(parse_time("1501ms", "boot_delay", TimeUnit::Secs), Ok(Duration::from_secs(2)));
        assert_eq!(parse_time("1499ms", "boot_delay", TimeUnit::Secs), Ok(Duration::from_secs(1)));
        assert_eq!(parse_time("30s", "timeout", TimeUnit::Millis), Ok(Duration::from_millis(30_000)));
        assert_eq!(parse_time("1d", "loop_interval", TimeUnit::Hours), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_time("0s", "boot_delay", TimeUnit::Secs), Ok(Duration::ZERO));
    }

    #[test]
    fn rounding_to_zero_is_refused_with_safekit_wording() {
        assert_eq!(
            parse_time("500ms", "boot_delay", TimeUnit::Secs),
            Err("invalid value '500ms' for the attribute boot_delay (expected time unit: 's')".to_string())
        );
    }

    #[test]
    fn garbage_is_refused_with_the_expected_form() {
        for bad in ["", "ms", "5x", "-1", "1.5s", "5 s", "99999999999999999999999"] {
            let e = parse_time(bad, "pulse", TimeUnit::Millis).unwrap_err();
            assert!(e.contains("pulse"), "{e}");
        }
    }
}
