//! `cluster:`: how the agents share observations and vote (peer API address, secret, quorum,
//! and the witnesses: agents that vote without being nodes).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::Validator;
use super::file::{ClusterSection, WitnessEntry};
use super::nodes::Node;
use super::validate::is_label;
use super::{ConfigError, format_duration};

/// Default address of the peer API.
pub const DEFAULT_CLUSTER_LISTEN: &str = "0.0.0.0:8053";
/// Default environment variable of the cluster secret.
pub const DEFAULT_CLUSTER_SECRET_ENV: &str = "FAILOVERD_CLUSTER_SECRET";

/// How agents share observations and vote (`cluster:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Where this agent serves its observations to the others (the peer API).
    pub listen: SocketAddr,
    /// Environment variable holding the shared secret (never the secret itself).
    pub secret_env: String,
    pub quorum: Quorum,
    /// How often each agent pulls every other agent's observations.
    pub period: Duration,
    /// Agents that probe every node and vote, but serve no hostname and are no nameserver of
    /// the zone (`cluster.witnesses`), in the order written.
    pub witnesses: Vec<Witness>,
}

/// An agent that votes without being a node (`cluster.witnesses[]`): it breaks the tie of a
/// two-node cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub id: String,
    /// Where the other agents reach its peer API (on the port of `cluster.listen`).
    pub address: IpAddr,
}

impl ClusterConfig {
    /// Where agent `node` serves the peer API: its probe address, on this config's port.
    pub fn peer_addr(&self, node: &Node) -> SocketAddr {
        SocketAddr::new(node.probe_address, self.listen.port())
    }

    /// Where witness `witness` serves the peer API.
    pub fn witness_addr(&self, witness: &Witness) -> SocketAddr {
        SocketAddr::new(witness.address, self.listen.port())
    }
}

/// How many of the agents with a fresh observation must say "up" for a pair to be up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// More than half.
    Majority,
    /// At least one.
    Any,
    /// Every one.
    All,
}

named!(Quorum {
    Majority => "majority",
    Any => "any",
    All => "all",
});

impl Validator<'_> {
    pub(super) fn cluster(
        &self,
        section: ClusterSection,
        nodes: &[Node],
    ) -> Result<ClusterConfig, ConfigError> {
        let ClusterSection {
            listen,
            secret_env,
            quorum,
            period,
            witnesses,
        } = section;
        let listen = match &listen {
            Some(l) => self.socket_addr(l, "cluster.listen")?,
            None => DEFAULT_CLUSTER_LISTEN.parse().expect("valid default"),
        };
        let quorum = self.word(quorum.as_ref(), "cluster.quorum", Quorum::Majority)?;
        let secret_env = match secret_env {
            None => DEFAULT_CLUSTER_SECRET_ENV.to_string(),
            Some(name) => {
                let valid = !name.value.is_empty()
                    && name
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.value.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    return Err(self.error(
                        &name,
                        "cluster.secret_env",
                        format!("`{}` is not an environment variable name (example: FAILOVERD_CLUSTER_SECRET); the secret itself never goes in the file", name.value),
                    ));
                }
                name.value
            }
        };
        let period_value = period
            .as_ref()
            .map(|p| p.value.0)
            .unwrap_or(Duration::from_secs(2));
        if let Some(span) = &period
            && !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&period_value)
        {
            let message = format!("{} is outside 100ms–60s", format_duration(period_value));
            return Err(self.error(span, "cluster.period", message));
        }
        let period = period_value;
        let witnesses = self.witnesses(witnesses, nodes)?;
        Ok(ClusterConfig {
            listen,
            secret_env,
            quorum,
            period,
            witnesses,
        })
    }

    /// The witnesses: ids unique among nodes and witnesses (ignoring case, as node ids are), an
    /// address that no node has (an agent could not tell which of the two it is).
    fn witnesses(
        &self,
        entries: Vec<WitnessEntry>,
        nodes: &[Node],
    ) -> Result<Vec<Witness>, ConfigError> {
        // Node ids are already unique ignoring case: seed the set with them.
        let mut folded: HashMap<String, String> = nodes
            .iter()
            .map(|n| (n.id.to_ascii_lowercase(), n.id.clone()))
            .collect();
        let mut out: Vec<Witness> = Vec::with_capacity(entries.len());
        for (i, WitnessEntry { id, address }) in entries.into_iter().enumerate() {
            let key = format!("cluster.witnesses[{i}].id");
            if !is_label(&id.value) {
                let message = format!(
                    "`{}` is not usable as a witness id: use letters, digits and '-'",
                    id.value
                );
                return Err(self.error(&id, key, message));
            }
            if let Some(earlier) = folded.get(&id.value.to_ascii_lowercase()) {
                let is_node = nodes.iter().any(|n| n.id == *earlier);
                let message = match (is_node, *earlier == id.value) {
                    (true, true) => format!(
                        "`{}` is a node id; a witness is not a node (it serves no hostname): give it an id of its own, or remove it from `nodes:` if it should only vote",
                        id.value
                    ),
                    (false, true) => format!(
                        "witness id `{}` is used twice; ids must be unique across nodes and witnesses",
                        id.value
                    ),
                    (_, false) => format!(
                        "witness id `{}` differs from `{earlier}` only in case; ids are compared ignoring case across nodes and witnesses, so rename one",
                        id.value
                    ),
                };
                return Err(self.error(&id, key, message));
            }
            folded.insert(id.value.to_ascii_lowercase(), id.value.clone());
            let address_key = format!("cluster.witnesses[{i}].address");
            let ip = self.ip(&address, &address_key)?;
            let clash = nodes
                .iter()
                .find(|n| n.probe_address == ip || n.addresses.contains(&ip))
                .map(|n| format!("node `{}`", n.id))
                .or_else(|| {
                    out.iter()
                        .find(|w| w.address == ip)
                        .map(|w| format!("witness `{}`", w.id))
                });
            if let Some(other) = clash {
                let message = format!(
                    "{ip} is also the address of {other}; a witness runs on a machine of its own (the agents could not tell the two apart)"
                );
                return Err(self.error(&address, address_key, message));
            }
            out.push(Witness {
                id: id.value,
                address: ip,
            });
        }
        Ok(out)
    }
}
