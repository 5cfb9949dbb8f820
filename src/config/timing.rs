//! Probe timing (interval, retry, timeout, fall, rise): the `defaults:` section, what each check
//! inherits from it, and the bounds.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::file::TimingSection;
use super::validate::Validator;
use super::{ConfigError, HumanDuration, format_duration};

/// The longest `interval` and `retry_interval`: a check probed less than daily is not a health
/// check, and every sum of durations the agent computes stays far from overflow.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The longest probe `timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The shortest `interval`, `retry_interval` and `timeout`.
pub const MIN_TIMING: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between probes while the check passes.
    pub interval: Duration,
    /// Between probes while it fails or is not yet confirmed.
    pub retry_interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before an up check goes down.
    pub fall: u32,
    /// Consecutive passes before a down check comes back up.
    pub rise: u32,
}

impl Validator<'_> {
    pub(super) fn timing_defaults(&self, d: &TimingSection) -> Result<Timing, ConfigError> {
        let base = Timing {
            interval: Duration::from_secs(30),
            retry_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            fall: 2,
            rise: 2,
        };
        self.timing(&base, d, "defaults")
    }

    pub(super) fn timing(
        &self,
        base: &Timing,
        t: &TimingSection,
        prefix: &str,
    ) -> Result<Timing, ConfigError> {
        let pick = |v: &Option<Spanned<HumanDuration>>, d: Duration| {
            v.as_ref().map(|s| s.value.0).unwrap_or(d)
        };
        let interval = pick(&t.interval, base.interval);
        // Unset here while the interval is set here, the retry interval and the timeout are the
        // inherited values, but no longer than this interval: probing a failing check less often
        // than a passing one would only delay failback, and `interval: 1s` alone must not meet
        // the built-in 5 s timeout.
        let follow =
            |v: &Option<Spanned<HumanDuration>>, inherited: Duration| match (v, &t.interval) {
                (Some(written), _) => written.value.0,
                (None, Some(_)) => inherited.min(interval),
                (None, None) => inherited,
            };
        let timing = Timing {
            interval,
            retry_interval: follow(&t.retry_interval, base.retry_interval),
            timeout: follow(&t.timeout, base.timeout),
            fall: t.fall.as_ref().map(|s| s.value).unwrap_or(base.fall),
            rise: t.rise.as_ref().map(|s| s.value).unwrap_or(base.rise),
        };
        // Inherited values were bounded where they were written; written ones are bounded here.
        for (name, span, max) in [
            ("interval", &t.interval, MAX_INTERVAL),
            ("retry_interval", &t.retry_interval, MAX_INTERVAL),
            ("timeout", &t.timeout, MAX_TIMEOUT),
        ] {
            let key = format!("{prefix}.{name}");
            self.bounded(span.as_ref(), &key, (MIN_TIMING, max), format_duration)?;
        }
        for (name, value, span) in [
            ("fall", timing.fall, &t.fall),
            ("rise", timing.rise, &t.rise),
        ] {
            if value == 0 {
                let message = "must be at least 1".to_string();
                return Err(match span {
                    Some(s) => self.error(s, format!("{prefix}.{name}"), message),
                    None => self.plain_error(format!("{prefix}.{name}"), message),
                });
            }
        }
        // A retry_interval shorter than the timeout is fine: probes of a pair run one after the
        // other, so the next one starts when the previous ends. A timeout longer than the
        // interval is not: a passing check could not keep its period. Only a timeout written
        // here can get there (an inherited one follows the interval, see above).
        if timing.timeout > timing.interval
            && let Some(span) = &t.timeout
        {
            let message = format!(
                "timeout {} is longer than interval {}; lower `{prefix}.timeout` or set a longer `{prefix}.interval`",
                format_duration(timing.timeout),
                format_duration(timing.interval)
            );
            return Err(self.error(span, format!("{prefix}.timeout"), message));
        }
        Ok(timing)
    }
}
