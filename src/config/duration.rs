//! Human-written durations (`500ms`, `5s`, `2m`, `1h`) as they appear in the YAML file.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration that was written with an explicit unit in the configuration file.
///
/// A bare number is refused: `timeout: 5` could mean seconds or milliseconds, and a wrong guess
/// makes a check either useless or a flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `500ms`, `5s`, `2m`, `1h`, `1d`, `1w` or a combination such as `1m30s`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || {
            format!(
                "`{text}` is not a duration: write a number with a unit, such as 500ms, 5s, 2m or 1h"
            )
        };
        if text.is_empty() {
            return Err(bad());
        }
        let mut total = Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let part = match unit {
                "ms" => Duration::from_millis(value),
                "s" => Duration::from_secs(value),
                "m" => Duration::from_secs(value.saturating_mul(60)),
                "h" => Duration::from_secs(value.saturating_mul(3600)),
                // For the SOA timers (`secondaries.soa.expire: 1w`).
                "d" => Duration::from_secs(value.saturating_mul(86400)),
                "w" => Duration::from_secs(value.saturating_mul(7 * 86400)),
                _ => return Err(bad()),
            };
            total = total.saturating_add(part);
        }
        Ok(Self(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", format_duration(self.0))
    }
}

/// Writes a duration the way an operator would type it in the config (`1m30s`, `500ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return if ms >= 1000 {
            format!("{:.1}s", d.as_secs_f64())
        } else {
            format!("{ms}ms")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_operators_write() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("5s", Duration::from_secs(5)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            (" 10s ", Duration::from_secs(10)),
            ("2d", Duration::from_secs(2 * 86400)),
            ("1w", Duration::from_secs(7 * 86400)),
        ];
        for (text, want) in cases {
            assert_eq!(
                HumanDuration::parse(text),
                Ok(HumanDuration(want)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_numbers_without_units_and_unknown_units() {
        for text in ["5", "", "s", "5 s", "5sec", "-5s", "1.5s", "5y"] {
            let err = HumanDuration::parse(text).unwrap_err();
            assert!(err.contains("500ms, 5s, 2m"), "{text}: {err}");
        }
    }

    #[test]
    fn formats_back_as_written() {
        for (d, want) in [
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_millis(1500), "1.5s"),
        ] {
            assert_eq!(format_duration(d), want);
        }
    }
}
