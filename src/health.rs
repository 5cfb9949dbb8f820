//! The state of one (node, check) pair: raw probe results in, confirmed up/down out (rise/fall).
//!
//! Pure: no clock, no I/O. The agent's one writer (agent/writer/) calls [`PairHealth::observe`].
//!
//! | state   | result | streak after           | new state | cadence of next probe |
//! |---------|--------|------------------------|-----------|-----------------------|
//! | Unknown | pass   | –                      | Up        | interval              |
//! | Unknown | fail   | –                      | Down      | retry_interval        |
//! | Up      | pass   | –                      | Up        | interval              |
//! | Up      | fail   | failures <  fall       | Up        | retry_interval        |
//! | Up      | fail   | failures >= fall       | Down      | retry_interval        |
//! | Down    | fail   | –                      | Down      | retry_interval        |
//! | Down    | pass   | passes   <  rise       | Down      | retry_interval        |
//! | Down    | pass   | passes   >= rise       | Up        | interval              |

use std::time::{Duration, SystemTime};

/// What one probe saw. Probes report this and nothing else: no thresholds, no policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub passed: bool,
    pub latency: Duration,
    /// Why it failed, in words an operator reads: "connection refused", "HTTP 503", "timeout after 5s".
    pub error: Option<String>,
}

impl ProbeResult {
    pub fn pass(latency: Duration) -> Self {
        Self {
            passed: true,
            latency,
            error: None,
        }
    }

    pub fn fail(latency: Duration, error: impl Into<String>) -> Self {
        Self {
            passed: false,
            latency,
            error: Some(error.into()),
        }
    }
}

/// Confirmed state of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No result yet: the agent does not answer DNS until every pair has left this state.
    Unknown,
    Up,
    Down,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Unknown => "PENDING",
            State::Up => "OK",
            State::Down => "KO",
        }
    }
}

/// How soon the pair wants its next probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Passing and confirmed: `interval`.
    Steady,
    /// Failing or not yet confirmed: `retry_interval`.
    Retry,
}

/// A change of confirmed state, reported once when it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// The error of the result that caused it (for a fall), if any.
    pub error: Option<String>,
}

/// History and confirmed state of one (node, check) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairHealth {
    pub state: State,
    /// When `state` was entered.
    pub since: Option<SystemTime>,
    /// Passes in a row, counting the latest result.
    pub passes: u32,
    /// Failures in a row, counting the latest result.
    pub failures: u32,
    pub last_result: Option<ProbeResult>,
    pub last_checked: Option<SystemTime>,
    /// Every pass and failure since the agent started (for `/metrics`).
    pub passes_total: u64,
    pub failures_total: u64,
    /// Probes run early because another agent suspected the pair or saw it recover (counted by
    /// the writer from `check::schedule::PairResult::extra`; for `/metrics`).
    pub extra_probes_total: u64,
}

impl Default for PairHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl PairHealth {
    pub fn new() -> Self {
        Self {
            state: State::Unknown,
            since: None,
            passes: 0,
            failures: 0,
            last_result: None,
            last_checked: None,
            passes_total: 0,
            failures_total: 0,
            extra_probes_total: 0,
        }
    }

    /// Folds one probe result in. Returns the transition if the confirmed state changed.
    pub fn observe(
        &mut self,
        result: ProbeResult,
        rise: u32,
        fall: u32,
        now: SystemTime,
    ) -> Option<Transition> {
        if result.passed {
            self.passes = self.passes.saturating_add(1);
            self.passes_total += 1;
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.failures_total += 1;
            self.passes = 0;
        }
        let next = match (self.state, result.passed) {
            (State::Unknown, true) => State::Up,
            (State::Unknown, false) => State::Down,
            (State::Up, false) if self.failures >= fall => State::Down,
            (State::Down, true) if self.passes >= rise => State::Up,
            (state, _) => state,
        };
        let error = result.error.clone();
        self.last_result = Some(result);
        self.last_checked = Some(now);
        if next == self.state {
            return None;
        }
        let transition = Transition {
            from: self.state,
            to: next,
            error: if next == State::Down { error } else { None },
        };
        self.state = next;
        self.since = Some(now);
        Some(transition)
    }

    /// When to probe next, by the table above.
    pub fn cadence(&self) -> Cadence {
        let last_passed = self.last_result.as_ref().is_some_and(|r| r.passed);
        if self.state == State::Up && last_passed {
            Cadence::Steady
        } else {
            Cadence::Retry
        }
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(results: &str, rise: u32, fall: u32) -> (Vec<State>, Vec<Cadence>, usize) {
        let mut pair = PairHealth::new();
        let mut states = Vec::new();
        let mut cadences = Vec::new();
        let mut transitions = 0;
        let t0 = SystemTime::UNIX_EPOCH;
        for (i, c) in results.chars().enumerate() {
            let r = if c == '+' {
                ProbeResult::pass(Duration::from_millis(1))
            } else {
                ProbeResult::fail(Duration::from_millis(1), "HTTP 503")
            };
            if pair
                .observe(r, rise, fall, t0 + Duration::from_secs(i as u64))
                .is_some()
            {
                transitions += 1;
            }
            states.push(pair.state);
            cadences.push(pair.cadence());
        }
        (states, cadences, transitions)
    }

    use Cadence::{Retry as R, Steady as S};
    use State::{Down as D, Up as U};

    #[test]
    fn follows_the_table() {
        // (results, rise, fall, states after each, cadence after each, transitions)
        type Row<'a> = (&'a str, u32, u32, &'a [State], &'a [Cadence], usize);
        let table: &[Row] = &[
            ("+", 2, 2, &[U], &[S], 1),
            ("-", 2, 2, &[D], &[R], 1),
            ("+-+", 2, 2, &[U, U, U], &[S, R, S], 1),
            ("+--", 2, 2, &[U, U, D], &[S, R, R], 2),
            ("+---", 2, 3, &[U, U, U, D], &[S, R, R, R], 2),
            ("-+", 2, 2, &[D, D], &[R, R], 1),
            ("-++", 2, 2, &[D, D, U], &[R, R, S], 2),
            ("-+-++", 2, 2, &[D, D, D, D, U], &[R, R, R, R, S], 2),
            ("+-", 1, 1, &[U, D], &[S, R], 2),
            ("-+", 1, 1, &[D, U], &[R, S], 2),
            ("+-+-+-", 2, 2, &[U; 6], &[S, R, S, R, S, R], 1),
        ];
        for (results, rise, fall, states, cadences, transitions) in table {
            let got = run(results, *rise, *fall);
            assert_eq!(
                got.0, *states,
                "states for {results} rise={rise} fall={fall}"
            );
            assert_eq!(
                got.1, *cadences,
                "cadences for {results} rise={rise} fall={fall}"
            );
            assert_eq!(
                got.2, *transitions,
                "transitions for {results} rise={rise} fall={fall}"
            );
        }
    }

    #[test]
    fn a_fall_carries_the_error_and_since_moves_only_on_transitions() {
        let mut pair = PairHealth::new();
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        pair.observe(ProbeResult::pass(Duration::ZERO), 2, 2, t(1));
        assert_eq!(pair.since, Some(t(1)));
        pair.observe(
            ProbeResult::fail(Duration::ZERO, "connection refused"),
            2,
            2,
            t(2),
        );
        assert_eq!(pair.since, Some(t(1)));
        let tr = pair
            .observe(
                ProbeResult::fail(Duration::ZERO, "connection refused"),
                2,
                2,
                t(3),
            )
            .unwrap();
        assert_eq!(
            tr,
            Transition {
                from: State::Up,
                to: State::Down,
                error: Some("connection refused".into())
            }
        );
        assert_eq!(pair.since, Some(t(3)));
        assert_eq!(pair.last_checked, Some(t(3)));
    }
}
