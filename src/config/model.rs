//! `Config`: the whole validated configuration, as every other module reads it.
//!
//! Each section's own types live in that section's file (`dns.rs`, `nodes.rs`, …), beside the
//! code that builds them from the file; this file holds them together.

use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::Name;

use super::{
    Check, ClusterConfig, DashboardConfig, DnsConfig, Hostname, Node, NotifyConfig, SelfSource,
};

/// A fully validated configuration. Built once by [`load`]; never changed afterwards.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from, for messages.
    pub path: PathBuf,
    /// The delegated zone, lower case, fully qualified.
    pub zone: Name,
    /// This node, when configured or found among the machine's own addresses (by
    /// [`find_self`](super::find_self), which [`load`](super::load) calls).
    pub self_node: Option<usize>,
    /// How `self_node` was found, for `check-config`.
    pub self_source: SelfSource,
    pub dns: DnsConfig,
    pub dashboard: DashboardConfig,
    pub nodes: Vec<Node>,
    pub checks: Vec<Check>,
    pub hostnames: Vec<Hostname>,
    /// Where state changes are sent (email, webhook); empty without a `notify:` section.
    pub notify: NotifyConfig,
    /// Agreement with the other agents; `None`: this agent decides alone.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Index of the (node, check) pair in every per-pair table.
    pub fn pair_index(&self, node: usize, check: usize) -> usize {
        node * self.checks.len() + check
    }

    pub fn pair_count(&self) -> usize {
        self.nodes.len() * self.checks.len()
    }

    /// The (node, check) of a pair index.
    pub fn pair(&self, index: usize) -> (usize, usize) {
        (index / self.checks.len(), index % self.checks.len())
    }

    /// The longest check timeout: the first full round cannot take longer.
    pub fn longest_timeout(&self) -> Duration {
        self.checks
            .iter()
            .map(|c| c.timing.timeout)
            .max()
            .unwrap_or_default()
    }
}
