//! `cluster:`: how the agents share observations and vote (peer API address, secret, quorum).

use std::net::SocketAddr;
use std::time::Duration;

use super::file::ClusterSection;
use super::nodes::Node;
use super::validate::Validator;
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
}

impl ClusterConfig {
    /// Where agent `node` serves the peer API: its probe address, on this config's port.
    pub fn peer_addr(&self, node: &Node) -> SocketAddr {
        SocketAddr::new(node.probe_address, self.listen.port())
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

impl Validator<'_> {
    pub(super) fn cluster(&self, section: ClusterSection) -> Result<ClusterConfig, ConfigError> {
        let ClusterSection {
            listen,
            secret_env,
            quorum,
            period,
        } = section;
        let listen = match &listen {
            Some(l) => self.socket_addr(l, "cluster.listen")?,
            None => DEFAULT_CLUSTER_LISTEN.parse().expect("valid default"),
        };
        let quorum = match quorum.as_ref().map(|q| q.value.as_str()) {
            None | Some("majority") => Quorum::Majority,
            Some("any") => Quorum::Any,
            Some("all") => Quorum::All,
            Some(other) => {
                return Err(self.error(
                    quorum.as_ref().expect("present"),
                    "cluster.quorum",
                    format!("`{other}` is not one of majority, any, all"),
                ));
            }
        };
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
        Ok(ClusterConfig {
            listen,
            secret_env,
            quorum,
            period,
        })
    }
}
