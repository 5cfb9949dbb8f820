//! The effective state of each pair and the agent's place in the cluster, pure: which votes
//! count, what they decide, whether they are split, whether this agent is alone, and which agent
//! sends the cluster's notifications. No clock and no I/O: the writer (agent/writer/) passes
//! ages and states in and applies what comes out.
//!
//! | cluster | votes counted                                         | effective state        |
//! |---------|-------------------------------------------------------|------------------------|
//! | none    | –                                                     | this agent's own state |
//! | yes     | own (once it has a result), peers' younger than `freshness` | `tally(quorum, votes)` (Unknown without any) |
//! | yes, with witnesses, quorum majority | the same                 | `tally_of_all(nodes + witnesses, votes, previous)`: a majority of all agents moves it, else it keeps its state |
//!
//! | question                         | answer                                                   |
//! |----------------------------------|----------------------------------------------------------|
//! | a peer is reachable              | it answered a pull within `recent(period)` (3 periods + 1 s) |
//! | the votes on a pair are split    | at least one says up and one says down                   |
//! | this agent is alone              | a cluster, past the first `recent(period)`, no peer reachable |
//! | this agent notifies              | no reachable peer has a lower node id (always, alone)    |
//! | the puller comes back sooner     | a pair is split, and a pair became split or agreed within 3 periods |
//! | the error of a fall              | own error if this agent sees it down, else the first down voter's ("… (seen by x)"), else "failed" |

use std::time::Duration;

use crate::cluster::{tally, tally_of_all};
use crate::config::{ClusterConfig, Quorum};
use crate::health::{PairHealth, State};
use crate::status::Vote;

/// How long since its last answer a peer still counts as reachable (and its serial as current).
pub fn recent(period: Duration) -> Duration {
    period * 3 + Duration::from_secs(1)
}

/// Whether a peer that last answered `since_answer` ago (never: `None`) is reachable.
pub fn reachable(since_answer: Option<Duration>, period: Duration) -> bool {
    since_answer.is_some_and(|age| age <= recent(period))
}

/// This agent's vote on a pair: none before its first result. `age` is how old that result is;
/// the error travels with a down vote only.
pub fn own_vote(me: &str, own: &PairHealth, age: Duration) -> Option<Vote> {
    if own.state == State::Unknown {
        return None;
    }
    let error = if own.is_up() {
        None
    } else {
        own.last_result.as_ref().and_then(|r| r.error.clone())
    };
    Some(Vote {
        agent: me.to_string(),
        up: own.is_up(),
        age,
        error,
    })
}

/// The votes counted on a pair: this agent's first, then the others' no older than `fresh`, by
/// agent id (a stable order, so every agent shows and counts the same list).
pub fn counted(own: Option<Vote>, theirs: Vec<Vote>, fresh: Duration) -> Vec<Vote> {
    let mut theirs: Vec<Vote> = theirs.into_iter().filter(|v| v.age <= fresh).collect();
    theirs.sort_by(|a, b| a.agent.cmp(&b.agent));
    own.into_iter().chain(theirs).collect()
}

/// How a cluster's votes are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub quorum: Quorum,
    /// With witnesses and quorum `majority`: the number of agents (nodes + witnesses) a
    /// majority is taken of, whether they answer or not. `None`: of the fresh votes.
    pub of_all: Option<usize>,
}

impl Rule {
    /// The rule of `cluster`, whose agents are `nodes` nodes and its witnesses.
    pub fn of(cluster: &ClusterConfig, nodes: usize) -> Rule {
        let witnesses = cluster.witnesses.len();
        Rule {
            quorum: cluster.quorum,
            of_all: (witnesses > 0 && cluster.quorum == Quorum::Majority)
                .then_some(nodes + witnesses),
        }
    }
}

/// The state a pair's answers are decided from: the own state without a cluster (`rule`
/// none), else the vote; with witnesses, a majority of all agents or the `previous` state.
pub fn state(rule: Option<Rule>, own: State, previous: State, votes: &[Vote]) -> State {
    let ups = votes.iter().map(|v| v.up);
    match rule {
        None => own,
        Some(Rule {
            of_all: Some(agents),
            ..
        }) => tally_of_all(agents, ups, previous),
        Some(Rule { quorum, .. }) => tally(quorum, ups),
    }
}

/// The fresh votes disagree: some up, some down.
pub fn split(votes: &[Vote]) -> bool {
    votes.iter().any(|v| v.up) && votes.iter().any(|v| !v.up)
}

/// Why a pair is now down: this agent's error if it sees the pair down too, else a voter's.
pub fn fall_error(own: &PairHealth, votes: &[Vote]) -> String {
    let own_error = (own.state == State::Down)
        .then(|| own.last_result.as_ref().and_then(|r| r.error.clone()))
        .flatten();
    own_error
        .or_else(|| {
            votes.iter().find(|v| !v.up).and_then(|v| {
                v.error
                    .as_ref()
                    .map(|e| format!("{e} (seen by {})", v.agent))
            })
        })
        .unwrap_or_else(|| "failed".into())
}

/// Whether this agent decides alone: no other agent reachable, once the first pulls have had
/// the time to answer (`running` is how long the agent has run).
pub fn alone(running: Duration, period: Duration, any_reachable: bool) -> bool {
    running > recent(period) && !any_reachable
}

/// Whether this agent sends the cluster's notifications: the reachable agent with the lowest
/// node id does, so people get one message per event, not one per agent.
pub fn notifying<'a>(me: &str, reachable: impl IntoIterator<Item = &'a str>) -> bool {
    reachable.into_iter().all(|peer| peer > me)
}

/// Whether the puller is asked to come back sooner: while a pair's votes are split, so every
/// agent sees the others' changes quickly, but only for a few periods after the last pair
/// became split or agreed again (not for as long as an asymmetric fault lasts).
pub fn pull_sooner(split_pairs: usize, since_split_changed: Duration, period: Duration) -> bool {
    split_pairs > 0 && since_split_changed < period * 3
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::health::ProbeResult;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn vote(agent: &str, up: bool, age: u64, error: Option<&str>) -> Vote {
        Vote {
            agent: agent.into(),
            up,
            age: S(age),
            error: error.map(String::from),
        }
    }

    /// A pair after `results` (rise 1, fall 1): true passes, false fails with "HTTP 503".
    fn pair(results: &[bool]) -> PairHealth {
        let mut p = PairHealth::new();
        for &passed in results {
            let r = if passed {
                ProbeResult::pass(Duration::ZERO)
            } else {
                ProbeResult::fail(Duration::ZERO, "HTTP 503")
            };
            p.observe(r, 1, 1, SystemTime::UNIX_EPOCH);
        }
        p
    }

    #[test]
    fn reachable_and_alone_follow_the_table() {
        // (since the last answer, period, reachable)
        let table = [
            (None, 1, false),
            (Some(0), 1, true),
            (Some(4), 1, true),
            (Some(5), 1, false),
            (Some(30), 10, true),
            (Some(32), 10, false),
        ];
        for (age, period, want) in table {
            assert_eq!(reachable(age.map(S), S(period)), want, "{age:?} {period}");
        }
        // (running, period, any reachable, alone)
        let table = [
            (1, 1, false, false), // the first pulls may not have answered yet
            (4, 1, false, false),
            (5, 1, false, true),
            (5, 1, true, false),
            (60, 10, false, true),
        ];
        for (running, period, any, want) in table {
            assert_eq!(
                alone(S(running), S(period), any),
                want,
                "{running} {period} {any}"
            );
        }
    }

    #[test]
    fn the_lowest_reachable_id_notifies() {
        let table: &[(&str, &[&str], bool)] = &[
            ("b", &[], true),
            ("a", &["b", "c"], true),
            ("b", &["a", "c"], false),
            ("b", &["c"], true),
            ("node10", &["node2"], true), // ids compare as text
            ("node2", &["node10"], false),
        ];
        for (me, reachable, want) in table {
            assert_eq!(
                notifying(me, reachable.iter().copied()),
                *want,
                "{me} {reachable:?}"
            );
        }
    }

    #[test]
    fn the_own_vote_appears_with_the_first_result_and_carries_its_error_when_down() {
        assert_eq!(own_vote("a", &pair(&[]), S(1)), None);
        assert_eq!(
            own_vote("a", &pair(&[true]), S(1)),
            Some(vote("a", true, 1, None))
        );
        assert_eq!(
            own_vote("a", &pair(&[false]), S(2)),
            Some(vote("a", false, 2, Some("HTTP 503")))
        );
    }

    #[test]
    fn only_fresh_votes_count_own_first_then_by_agent() {
        let own = Some(vote("b", true, 1, None));
        let theirs = vec![
            vote("c", false, 10, Some("refused")),
            vote("a", true, 3, None),
            vote("d", true, 11, None), // too old
        ];
        let got = counted(own, theirs, S(10));
        let agents: Vec<&str> = got.iter().map(|v| v.agent.as_str()).collect();
        assert_eq!(agents, ["b", "a", "c"]);
        assert_eq!(counted(None, vec![vote("a", true, 1, None)], S(0)), []);
    }

    #[test]
    fn with_a_witness_the_state_moves_only_with_a_majority_of_all_agents() {
        use State::{Down, Up};
        let cluster = |quorum, witnesses: usize| ClusterConfig {
            listen: "127.0.0.1:1".parse().unwrap(),
            secret_env: "S".into(),
            quorum,
            period: S(1),
            witnesses: (0..witnesses)
                .map(|i| crate::config::Witness {
                    id: format!("w{i}"),
                    address: "192.0.2.9".parse().unwrap(),
                })
                .collect(),
        };
        let with_witness = Rule::of(&cluster(Quorum::Majority, 1), 2);
        assert_eq!(with_witness.of_all, Some(3));
        assert_eq!(Rule::of(&cluster(Quorum::Majority, 0), 2).of_all, None);
        assert_eq!(Rule::of(&cluster(Quorum::Any, 1), 2).of_all, None);
        let (n1, n2, w) = (
            vote("node1", true, 0, None),
            vote("node2", false, 0, Some("timeout")),
            vote("witness", true, 0, None),
        );
        // node2 cut off from node1 (node1's vote missing): the witness holds node1 up.
        let cut = [n2.clone(), w.clone()];
        assert_eq!(state(Some(with_witness), Down, Up, &cut), Up);
        // The same votes without a witness: a tie, down.
        let two = Rule::of(&cluster(Quorum::Majority, 0), 2);
        assert_eq!(state(Some(two), Down, Up, &cut), Down);
        // node1 really down: node2 and the witness see it.
        let w_down = vote("witness", false, 0, Some("timeout"));
        assert_eq!(state(Some(with_witness), Down, Up, &[n2, w_down]), Down);
        assert_eq!(state(Some(with_witness), Up, Down, &[n1, w]), Up);
    }

    #[test]
    fn the_state_is_the_own_without_a_cluster_and_the_vote_with_one() {
        use State::{Down, Unknown, Up};
        let up = vote("a", true, 0, None);
        let down = vote("b", false, 0, None);
        let rule = |quorum| {
            Some(Rule {
                quorum,
                of_all: None,
            })
        };
        // (rule, own state, votes, effective state)
        let table: &[(Option<Rule>, State, &[&Vote], State)] = &[
            (None, Up, &[], Up),
            (None, Down, &[&up], Down), // votes do not count without a cluster
            (None, Unknown, &[], Unknown),
            (rule(Quorum::Majority), Up, &[], Unknown),
            (rule(Quorum::Majority), Up, &[&up, &down], Down),
            (rule(Quorum::Majority), Down, &[&up, &up, &down], Up),
            (rule(Quorum::Any), Down, &[&down, &up], Up),
            (rule(Quorum::All), Up, &[&up, &down], Down),
        ];
        for (rule, own, votes, want) in table {
            let votes: Vec<Vote> = votes.iter().map(|v| (*v).clone()).collect();
            // Without witnesses the previous state plays no part.
            for previous in [Up, Down, Unknown] {
                assert_eq!(
                    state(*rule, *own, previous, &votes),
                    *want,
                    "{rule:?} {own:?}"
                );
            }
        }
    }

    #[test]
    fn split_and_quick_pulls_follow_the_table() {
        let (up, down) = (vote("a", true, 0, None), vote("b", false, 0, None));
        assert!(!split(&[]));
        assert!(!split(&[up.clone(), up.clone()]));
        assert!(!split(std::slice::from_ref(&down)));
        assert!(split(&[up, down]));
        // (split pairs, since the last change, period, sooner)
        let table = [
            (0, 0, 1, false),
            (1, 0, 1, true),
            (1, 2, 1, true),
            (1, 3, 1, false), // an asymmetric fault does not keep the puller busy
            (3, 29, 10, true),
        ];
        for (pairs, since, period, want) in table {
            assert_eq!(
                pull_sooner(pairs, S(since), S(period)),
                want,
                "{pairs} {since} {period}"
            );
        }
    }

    #[test]
    fn a_fall_is_explained_by_the_own_error_else_by_a_voter() {
        let seen_by = [
            vote("a", true, 0, None),
            vote("c", false, 0, Some("timeout after 5s")),
        ];
        // (own results, votes, error)
        let table: &[(&[bool], &[Vote], &str)] = &[
            (&[false], &seen_by, "HTTP 503"),
            (&[true], &seen_by, "timeout after 5s (seen by c)"),
            (&[], &seen_by, "timeout after 5s (seen by c)"),
            (&[true], &[], "failed"),
            (&[true], &[vote("c", false, 0, None)], "failed"),
        ];
        for (own, votes, want) in table {
            assert_eq!(fall_error(&pair(own), votes), *want, "{own:?}");
        }
    }
}
