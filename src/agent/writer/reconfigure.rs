//! A reload in the writer: pairs whose node and check are unchanged keep their state, new or
//! changed ones start unconfirmed, removed ones go; the answers move only if they change.

use std::sync::Arc;

use tracing::info;

use super::Writer;
use crate::config::Config;
use crate::decide::Decision;
use crate::health::State;
use crate::overrides;

impl Writer {
    /// Switches to a new configuration. Pairs whose node and check are unchanged keep their
    /// state and history; new or changed ones start unconfirmed; removed ones disappear. The
    /// answers are republished (and the serial moved) only if they change.
    pub(super) fn reconfigure(&mut self, config: Arc<Config>) {
        let old = self.config.clone();
        let mut pairs = Vec::with_capacity(config.pair_count());
        let mut effective = Vec::with_capacity(config.pair_count());
        let mut kept = 0;
        for from in carried_pairs(&old, &config) {
            let carried = from.and_then(|p| {
                self.status
                    .pairs
                    .get(p)
                    .cloned()
                    .zip(self.status.effective.get(p).cloned())
            });
            kept += usize::from(carried.is_some());
            let (health, decided) = carried.unwrap_or_default();
            pairs.push(health);
            effective.push(decided);
        }
        // Previous answers, re-indexed by hostname and node id (for `last` and for comparing).
        let decisions: Vec<Decision> = if self.status.ready {
            config
                .hostnames
                .iter()
                .map(|h| {
                    let previous = old
                        .hostnames
                        .iter()
                        .position(|o| o.fqdn == h.fqdn)
                        .and_then(|oh| self.status.decisions.get(oh));
                    match previous {
                        Some(d) => Decision {
                            nodes: d
                                .nodes
                                .iter()
                                .filter_map(|&on| {
                                    config.nodes.iter().position(|x| x.id == old.nodes[on].id)
                                })
                                .collect(),
                            reason: d.reason,
                        },
                        None => Decision {
                            nodes: Vec::new(),
                            reason: crate::decide::Reason::Healthy,
                        },
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        self.unknown = pairs.iter().filter(|p| p.state == State::Unknown).count();
        info!(
            pairs = config.pair_count(),
            kept,
            new = config.pair_count() - kept,
            removed = old.pair_count() - kept,
            hostnames = config.hostnames.len(),
            "configuration reloaded"
        );
        // Overrides of nodes, hostnames or agents no longer configured go with them.
        let (dropped, why) = self.overrides.retain_valid(&config, overrides::unix_now());
        if dropped > 0 {
            info!(
                dropped,
                first = why.as_deref().unwrap_or(""),
                "overrides the new configuration does not allow were dropped"
            );
        }
        self.status.config = config.clone();
        self.status.pairs = pairs;
        self.status.effective = effective;
        self.split = vec![false; config.pair_count()];
        self.split_count = 0;
        self.status.decisions = decisions;
        self.dirty_all = true;
        self.config = config;
        if dropped > 0 {
            self.overrides_stored();
        }
        self.causes.push("configuration reloaded".into());
        self.refresh_peers();
        self.recompute();
        // New pairs first need a result, as at start; until then the current answers stay.
        if self.unknown == 0 && self.status.ready {
            self.decide_and_publish();
        }
        self.publish_status();
    }
}

/// For each pair of `new`, the pair of `old` it continues: same node id and probe address,
/// same check (id and settings). Those keep their state over a reload; the others start anew.
pub(in crate::agent) fn carried_pairs(old: &Config, new: &Config) -> Vec<Option<usize>> {
    (0..new.pair_count())
        .map(|p| {
            let (n, c) = new.pair(p);
            let (node, check) = (&new.nodes[n], &new.checks[c]);
            let on = old.nodes.iter().position(|o| o.id == node.id)?;
            let oc = old.checks.iter().position(|o| o.id == check.id)?;
            (old.nodes[on].probe_address == node.probe_address && old.checks[oc] == *check)
                .then(|| old.pair_index(on, oc))
        })
        .collect()
}
