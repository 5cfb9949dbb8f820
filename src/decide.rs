//! Which nodes every hostname answers with, from which pairs are up. Pure and deterministic:
//! every agent given the same inputs computes the same answer.
//!
//! A node is *eligible* for a hostname when every check the hostname lists is up on it.
//! Eligible nodes are ranked by priority, highest first; equal priorities by node id.
//!
//! | eligible | mode     | when_all_down | answer                                            |
//! |----------|----------|---------------|---------------------------------------------------|
//! | ≥ 1      | failover | –             | the first ranked eligible node                    |
//! | ≥ 1      | all      | –             | every eligible node, ranked                       |
//! | 0        | any      | all           | every node of the hostname, ranked (fail open)    |
//! | 0        | any      | none          | no node (NOERROR, no address)                     |
//! | 0        | any      | last          | the previous answer; every node if there was none |
//!
//! Failback is automatic: a higher-priority node that becomes eligible again ranks first again.
//!
//! Manual overrides come first: a hostname forced to a node answers with that node whatever
//! the health; a node in maintenance is never eligible and is left out of every answer,
//! fail-open ones included (if every node of a hostname is in maintenance, it has no address).

use crate::config::{Config, Mode, WhenAllDown};
use crate::overrides::Active;

/// The answer for one hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Indexes into `Config::nodes`, in answer order.
    pub nodes: Vec<usize>,
    pub reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// At least one node passes every check of the hostname.
    Healthy,
    /// No node is eligible; `when_all_down: all` answers with every node.
    AllDownFailOpen,
    /// No node is eligible; `when_all_down: none` answers with nothing.
    AllDownEmpty,
    /// No node is eligible; `when_all_down: last` keeps the previous answer.
    AllDownKeptLast,
    /// An operator forced the hostname to a node.
    Forced,
    /// Every node of the hostname is in maintenance.
    AllInMaintenance,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Healthy => "healthy",
            Reason::AllDownFailOpen => {
                "all nodes down: answering with every node (when_all_down: all)"
            }
            Reason::AllDownEmpty => {
                "all nodes down: answering with no address (when_all_down: none)"
            }
            Reason::AllDownKeptLast => {
                "all nodes down: keeping the last answer (when_all_down: last)"
            }
            Reason::Forced => "forced to a node by an operator",
            Reason::AllInMaintenance => "every node is in maintenance: no address",
        }
    }

    /// The reason in a few words, for one-line summaries: `describe` up to its colon.
    pub fn headline(self) -> &'static str {
        match self {
            Reason::Healthy => "healthy",
            Reason::AllDownFailOpen | Reason::AllDownEmpty | Reason::AllDownKeptLast => {
                "all nodes down"
            }
            Reason::Forced => "forced to a node by an operator",
            Reason::AllInMaintenance => "every node is in maintenance",
        }
    }
}

/// Decides every hostname's answer.
///
/// `up[pair]` tells whether a (node, check) pair is confirmed up (see `Config::pair_index`);
/// `previous` is the last published decision per hostname (empty at start), used by `last`.
pub fn decide(
    config: &Config,
    up: &[bool],
    previous: &[Decision],
    overrides: &Active,
) -> Vec<Decision> {
    config
        .hostnames
        .iter()
        .enumerate()
        .map(|(h, hostname)| {
            if let Some(node) = overrides.forced.get(h).copied().flatten() {
                return Decision {
                    nodes: vec![node],
                    reason: Reason::Forced,
                };
            }
            let drained = |n: &usize| overrides.maintenance.get(*n).copied().unwrap_or(false);
            let mut ranked: Vec<usize> = hostname
                .nodes
                .iter()
                .copied()
                .filter(|n| !drained(n))
                .collect();
            if ranked.is_empty() {
                return Decision {
                    nodes: Vec::new(),
                    reason: Reason::AllInMaintenance,
                };
            }
            config.rank(&mut ranked);
            let eligible: Vec<usize> = ranked
                .iter()
                .copied()
                .filter(|&n| hostname.checks.iter().all(|&c| up[config.pair_index(n, c)]))
                .collect();
            if !eligible.is_empty() {
                let nodes = match hostname.mode {
                    Mode::Failover => vec![eligible[0]],
                    Mode::All => eligible,
                };
                return Decision {
                    nodes,
                    reason: Reason::Healthy,
                };
            }
            match hostname.when_all_down {
                WhenAllDown::All => Decision {
                    nodes: ranked,
                    reason: Reason::AllDownFailOpen,
                },
                WhenAllDown::None => Decision {
                    nodes: Vec::new(),
                    reason: Reason::AllDownEmpty,
                },
                WhenAllDown::Last => match previous.get(h) {
                    Some(prev) if prev.nodes.iter().any(|n| !drained(n)) => Decision {
                        nodes: prev.nodes.iter().copied().filter(|n| !drained(n)).collect(),
                        reason: Reason::AllDownKeptLast,
                    },
                    _ => Decision {
                        nodes: ranked,
                        reason: Reason::AllDownFailOpen,
                    },
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The one-line summaries of events used to cut `describe` at its colon; `headline` says
    /// the same words.
    #[test]
    fn the_headline_is_the_description_up_to_its_colon() {
        use Reason::*;
        for reason in [
            Healthy,
            AllDownFailOpen,
            AllDownEmpty,
            AllDownKeptLast,
            Forced,
            AllInMaintenance,
        ] {
            let cut = reason.describe().split(':').next().unwrap();
            assert_eq!(reason.headline(), cut, "{reason:?}");
        }
    }

    /// Three nodes: a (prio 10), b (prio 5), c (prio 5); checks web and sip; hostnames of each mode.
    fn config() -> Config {
        crate::config::parse(
            Path::new("test.yaml"),
            r#"
zone: ha.example.com
self: a
dns: { listen: ["127.0.0.1:0"] }
nodes:
  - { id: c, address: 192.0.2.3, priority: 5 }
  - { id: a, address: 192.0.2.1, priority: 10 }
  - { id: b, address: 192.0.2.2, priority: 5 }
checks:
  - { id: web, type: http, url: "http://{address}/" }
  - { id: sip, type: tcp, port: 5060 }
hostnames:
  - { name: fo, checks: [web] }
  - { name: both, checks: [web, sip], mode: all }
  - { name: none, checks: [web], when_all_down: none }
  - { name: last, checks: [web], when_all_down: last }
"#,
        )
        .expect("test config is valid")
    }

    fn decide_plain(cfg: &Config, up: &[bool], previous: &[Decision]) -> Vec<Decision> {
        decide(cfg, up, previous, &Active::none(cfg))
    }

    #[test]
    fn overrides_come_first() {
        let cfg = config();
        let all = [A, B, C];
        let mut active = Active::none(&cfg);
        active.maintenance[A] = true;
        let got = decide(&cfg, &up(&cfg, &all, &all), &[], &active);
        assert_eq!(
            nodes(&got),
            [vec![B], vec![B, C], vec![B], vec![B]],
            "a drained node serves nothing"
        );
        // All down: fail open leaves the drained node out too.
        let got = decide(&cfg, &up(&cfg, &[], &[]), &[], &active);
        assert_eq!(got[0].nodes, [B, C]);
        active.maintenance = vec![true; 3];
        let got = decide(&cfg, &up(&cfg, &all, &all), &[], &active);
        assert_eq!(
            got[0],
            Decision {
                nodes: vec![],
                reason: Reason::AllInMaintenance
            }
        );
        let mut forced = Active::none(&cfg);
        forced.forced[0] = Some(C);
        let got = decide(&cfg, &up(&cfg, &[], &[]), &[], &forced);
        assert_eq!(
            got[0],
            Decision {
                nodes: vec![C],
                reason: Reason::Forced
            },
            "forced whatever the health"
        );
    }

    const C: usize = 0;
    const A: usize = 1;
    const B: usize = 2;

    /// `web` and `sip` are the sets of nodes where those checks are up.
    fn up(cfg: &Config, web: &[usize], sip: &[usize]) -> Vec<bool> {
        (0..cfg.pair_count())
            .map(|p| {
                let (n, c) = cfg.pair(p);
                if c == 0 {
                    web.contains(&n)
                } else {
                    sip.contains(&n)
                }
            })
            .collect()
    }

    fn nodes(d: &[Decision]) -> Vec<Vec<usize>> {
        d.iter().map(|d| d.nodes.clone()).collect()
    }

    #[test]
    fn follows_the_table() {
        let cfg = config();
        let all = [A, B, C];
        // (web up on, sip up on, expected [fo, both, none, last] with no previous answer)
        /// (web up on, sip up on, expected answers for fo, both, none, last)
        type Row<'a> = (&'a [usize], &'a [usize], [&'a [usize]; 4]);
        let table: &[Row] = &[
            (&all, &all, [&[A], &[A, B, C], &[A], &[A]]),
            // tie between b and c (priority 5) is broken by id
            (&[B, C], &all, [&[B], &[B, C], &[B], &[B]]),
            (&[C], &all, [&[C], &[C], &[C], &[C]]),
            // `both` needs web and sip on the same node
            (&[A, B], &[C], [&[A], &[A, B, C], &[A], &[A]]),
            (&[A, B], &[B], [&[A], &[B], &[A], &[A]]),
            // all down: fail open, empty, last (no previous: fail open)
            (&[], &all, [&[A, B, C], &[A, B, C], &[], &[A, B, C]]),
        ];
        for (web, sip, want) in table {
            let got = decide_plain(&cfg, &up(&cfg, web, sip), &[]);
            let want: Vec<Vec<usize>> = want.iter().map(|w| w.to_vec()).collect();
            assert_eq!(nodes(&got), want, "web up on {web:?}, sip up on {sip:?}");
        }
    }

    #[test]
    fn reasons_say_why() {
        let cfg = config();
        let got = decide_plain(&cfg, &up(&cfg, &[], &[]), &[]);
        let reasons: Vec<Reason> = got.iter().map(|d| d.reason).collect();
        assert_eq!(
            reasons,
            [
                Reason::AllDownFailOpen,
                Reason::AllDownFailOpen,
                Reason::AllDownEmpty,
                Reason::AllDownFailOpen
            ]
        );
    }

    #[test]
    fn last_keeps_the_previous_answer_and_failback_is_automatic() {
        let cfg = config();
        let healthy = decide_plain(&cfg, &up(&cfg, &[B], &[]), &[]);
        assert_eq!(healthy[3].nodes, [B]);
        let down = decide_plain(&cfg, &up(&cfg, &[], &[]), &healthy);
        assert_eq!(
            down[3],
            Decision {
                nodes: vec![B],
                reason: Reason::AllDownKeptLast
            }
        );
        // still down: keeps it again
        let still = decide_plain(&cfg, &up(&cfg, &[], &[]), &down);
        assert_eq!(still[3].nodes, [B]);
        // a recovers: takes every name back
        let back = decide_plain(&cfg, &up(&cfg, &[A, B], &[A]), &still);
        assert_eq!(nodes(&back), [vec![A], vec![A], vec![A], vec![A]]);
    }

    #[test]
    fn same_inputs_same_answer() {
        let cfg = config();
        let u = up(&cfg, &[B, C], &[C]);
        assert_eq!(decide_plain(&cfg, &u, &[]), decide_plain(&cfg, &u, &[]));
    }
}
