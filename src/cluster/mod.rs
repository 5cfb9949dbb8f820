//! Agreement between agents: each agent serves its own observations on the peer API, pulls the
//! others', and every (node, check) pair is decided by a vote, so all nameservers answer alike.
//! The agents are the nodes and the witnesses (`cluster.witnesses`: agents that vote but are no
//! node, for two-node clusters); `Config::peers` says whom an agent pulls and counts.
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

/// The state the votes decide in a cluster with witnesses (quorum `majority`): a majority of
/// *all* its `agents` (nodes and witnesses, answering or not) must agree to change a pair's
/// state; short of one, the pair keeps its `previous` state. So an agent cut off from a healthy
/// node (its own vote down, the witness's up, the node's own missing) moves nothing, and an
/// agent left alone moves nothing either: a switch needs the witness or the other node.
///
/// | of `agents` n, votes say | state      |
/// |--------------------------|------------|
/// | up: more than n / 2      | Up         |
/// | down: more than n / 2    | Down       |
/// | neither                  | `previous` (Unknown before any majority) |
pub fn tally_of_all(
    agents: usize,
    votes: impl IntoIterator<Item = bool>,
    previous: State,
) -> State {
    let (mut up, mut down) = (0usize, 0usize);
    for vote in votes {
        if vote {
            up += 1;
        } else {
            down += 1;
        }
    }
    if up * 2 > agents {
        State::Up
    } else if down * 2 > agents {
        State::Down
    } else {
        previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Quorum::*;
    use State::{Down, Unknown, Up};

    /// Issue 13.7: `interval × 3 + timeout + period` overflowed with the durations validation
    /// now refuses, and panicked the health task; it saturates instead.
    #[test]
    fn freshness_saturates_instead_of_overflowing() {
        let timing = |interval, timeout| Timing {
            interval,
            retry_interval: Duration::from_secs(1),
            timeout,
            fall: 2,
            rise: 2,
        };
        let one = Duration::from_secs(1);
        assert_eq!(freshness(&timing(one, one), one), Duration::from_secs(5));
        let huge = Duration::from_secs(7_000_000_000_000_000_000);
        assert_eq!(freshness(&timing(huge, one), one), Duration::MAX);
        assert_eq!(
            freshness(&timing(one, Duration::MAX), Duration::MAX),
            Duration::MAX
        );
    }

    #[test]
    fn with_witnesses_a_majority_of_all_agents_is_needed_to_move() {
        // (agents, votes, previous, state): two nodes and a witness are 3 agents.
        let table: &[(usize, &[bool], State, State)] = &[
            (3, &[true, true, true], Unknown, Up),
            (3, &[false, false, false], Up, Down),
            // node2 cut off from node1: its own vote down, the witness up, node1's missing.
            (3, &[false, true], Up, Up),
            (3, &[false, true], Down, Down),
            // node1 really down: node2 and the witness agree, node1's own vote says so too
            // (or is missing, its agent down with it).
            (3, &[false, false], Up, Down),
            (3, &[false, false, true], Up, Down),
            (3, &[true, true], Down, Up),
            // Alone: its own vote moves nothing.
            (3, &[false], Up, Up),
            (3, &[true], Unknown, Unknown),
            (3, &[], Up, Up),
            // Two nodes and two witnesses: 3 of 4 must agree.
            (4, &[false, false], Up, Up),
            (4, &[false, false, false], Up, Down),
            (4, &[true, true, false, false], Down, Down),
        ];
        for (agents, votes, previous, want) in table {
            assert_eq!(
                tally_of_all(*agents, votes.iter().copied(), *previous),
                *want,
                "{agents} agents, votes {votes:?}, was {previous:?}"
            );
        }
    }

    #[test]
    fn without_a_witness_two_nodes_tie_to_down() {
        // The documented two-node behaviour (README): a tie counts as down, and an agent that
        // hears nothing from the other decides on its own vote alone.
        assert_eq!(tally(Majority, [true, false]), Down);
        assert_eq!(tally(Majority, [false]), Down);
        assert_eq!(tally(Majority, [true]), Up);
    }

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
