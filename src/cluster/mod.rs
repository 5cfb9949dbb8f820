//! Agreement between agents: each agent serves its own observations on the peer API, pulls the
//! others', and every (node, check) pair is decided by a vote, so all nameservers answer alike.
//!
//! ```text
//! own probes ─► local state ─┐
//! peer API pulls ─► votes ───┴─► tally (quorum) ─► effective state ─► decide ─► zone
//! pushes (a peer's view changed) ┘
//! ```
//!
//! An agent whose own view of a pair changes (a state flips, a suspicion or a recovery starts)
//! pushes its answer to every peer at once (`push`); pulls every `period` stay as the safety
//! net. A peer's vote that reports a pair suspected or recovering makes the local probe of that
//! pair probe now (`check::schedule::Nudges`), so all agents reach `fall` together.

pub mod auth;
pub mod pull;
pub mod push;
pub mod server;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Quorum, Timing};
use crate::health::State;

/// Path of the peer API's only resource.
pub const OBSERVATIONS_PATH: &str = "/v1/observations";

/// What one agent tells the others: its own view of every pair it has a result for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerAnswer {
    /// The node id of the agent answering.
    pub agent: String,
    /// Its zone: agents of different zones must not vote together.
    pub zone: String,
    pub observations: Vec<PairVote>,
    /// Every manual override the agent knows (cleared ones too), to be merged by version.
    #[serde(default)]
    pub overrides: Vec<crate::overrides::Override>,
    /// The content it serves and that content's SOA serial, once stored (see `serial`): the
    /// agents serving the same content move up to the highest serial among them.
    #[serde(default)]
    pub serial: Option<crate::serial::Claim>,
}

/// One agent's confirmed (rise/fall) state of one pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairVote {
    pub node: String,
    pub check: String,
    pub up: bool,
    /// How old the agent's last probe of the pair was when it answered: ages, not clock
    /// times, so the agents' clocks need not agree for freshness.
    pub age_ms: u64,
    pub latency_ms: f64,
    pub error: Option<String>,
    /// The last probe disagrees with the confirmed state: failing while still up (a suspicion)
    /// or passing while still down (a recovery). The agents hearing it probe the pair now.
    /// Left out when false: steady-state answers are no bigger than before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changing: bool,
}

/// The result of pulling one peer, for the writer.
#[derive(Debug)]
pub struct PeerReport {
    /// The peer's node id.
    pub peer: String,
    pub result: Result<PeerAnswer, String>,
    pub received_at: tokio::time::Instant,
}

/// How long a peer's observation of a pair counts: a few probe intervals plus a pull period.
pub fn freshness(timing: &Timing, period: Duration) -> Duration {
    // Saturating: validation bounds each term, and an overflow here would panic the writer.
    (timing.interval.saturating_mul(3))
        .saturating_add(timing.timeout)
        .saturating_add(period)
}

/// The state a set of fresh votes decides (`true` = up). Pure, order-independent, and the same
/// on every agent given the same votes.
///
/// | fresh votes | quorum   | up when               |
/// |-------------|----------|-----------------------|
/// | none        | any      | – (Unknown)           |
/// | n           | majority | more than n / 2 say up (a tie is down) |
/// | n           | any      | at least one says up  |
/// | n           | all      | every one says up     |
pub fn tally(quorum: Quorum, votes: impl IntoIterator<Item = bool>) -> State {
    let (mut n, mut up) = (0usize, 0usize);
    for vote in votes {
        n += 1;
        up += usize::from(vote);
    }
    if n == 0 {
        return State::Unknown;
    }
    let is_up = match quorum {
        Quorum::Majority => up * 2 > n,
        Quorum::Any => up >= 1,
        Quorum::All => up == n,
    };
    if is_up { State::Up } else { State::Down }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Quorum::*;
    use State::{Down, Unknown, Up};

    #[test]
    fn tally_follows_the_table() {
        let table: &[(Quorum, &[bool], State)] = &[
            (Majority, &[], Unknown),
            (Majority, &[true], Up),
            (Majority, &[false], Down),
            (Majority, &[true, false], Down),
            (Majority, &[true, true, false], Up),
            (Majority, &[true, false, false], Down),
            (Majority, &[false, true, true, false, true], Up),
            (Any, &[false, false, true], Up),
            (Any, &[false, false], Down),
            (All, &[true, true, true], Up),
            (All, &[true, false, true], Down),
            (All, &[], Unknown),
        ];
        for (quorum, votes, want) in table {
            assert_eq!(
                tally(*quorum, votes.iter().copied()),
                *want,
                "{quorum:?} {votes:?}"
            );
        }
    }

    #[test]
    fn the_order_of_votes_does_not_matter() {
        for quorum in [Majority, Any, All] {
            assert_eq!(
                tally(quorum, [true, false, true]),
                tally(quorum, [false, true, true])
            );
        }
    }
}
