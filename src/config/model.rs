//! `Config`: the whole validated configuration, as every other module reads it.
//!
//! Each section's own types live in that section's file (`dns.rs`, `nodes.rs`, …), beside the
//! code that builds them from the file; this file holds them together.

use std::net::SocketAddr;
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
    /// This agent is one of `cluster.witnesses` (its index there) rather than a node: it
    /// probes and votes, and serves no hostname. At most one of `self_node` and `self_witness`.
    pub self_witness: Option<usize>,
    /// How `self_node` (or `self_witness`) was found, for `check-config`.
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
    /// Secondaries fed by zone transfer and NOTIFY (`secondaries:`); `None`: transfers REFUSED.
    pub secondaries: Option<super::SecondariesConfig>,
    /// RFC 2136 updates of the answers into existing DNS servers (`publish:`).
    pub publish: Option<super::PublishConfig>,
}

/// One agent of the cluster as the others reach it: a node or a witness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agent<'a> {
    pub id: &'a str,
    /// Where its peer API listens (a node's probe address, a witness's address).
    pub address: SocketAddr,
    pub witness: bool,
}

impl Config {
    /// The id this agent speaks as to the others: its node's or its witness's.
    pub fn self_id(&self) -> Option<&str> {
        match (self.self_node, self.self_witness, &self.cluster) {
            (Some(n), _, _) => Some(&self.nodes[n].id),
            (None, Some(w), Some(c)) => Some(&c.witnesses[w].id),
            _ => None,
        }
    }

    /// The witnesses (none without a cluster).
    pub fn witnesses(&self) -> &[super::Witness] {
        self.cluster.as_ref().map_or(&[], |c| &c.witnesses)
    }

    /// Every agent of the cluster, nodes first, then witnesses, this one included; empty
    /// without a cluster.
    pub fn agents(&self) -> Vec<Agent<'_>> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        let nodes = self.nodes.iter().map(|n| Agent {
            id: &n.id,
            address: cluster.peer_addr(n),
            witness: false,
        });
        let witnesses = cluster.witnesses.iter().map(|w| Agent {
            id: &w.id,
            address: cluster.witness_addr(w),
            witness: true,
        });
        nodes.chain(witnesses).collect()
    }

    /// The other agents this one pulls from and counts the votes of.
    pub fn peers(&self) -> Vec<Agent<'_>> {
        let me = self.self_id();
        self.agents()
            .into_iter()
            .filter(|a| Some(a.id) != me)
            .collect()
    }

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

    /// Sorts node indexes best first: higher `priority` first, equal priorities by node id.
    /// The one ranking every answer, page and summary uses.
    pub fn rank(&self, nodes: &mut [usize]) {
        nodes.sort_by(|&a, &b| {
            let (a, b) = (&self.nodes[a], &self.nodes[b]);
            b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id))
        });
    }

    /// Every node's index, best first (see [`rank`](Self::rank)).
    pub fn ranked_nodes(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        self.rank(&mut order);
        order
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
