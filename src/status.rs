//! The agent's current view for readers other than DNS (dashboard, API, notifiers): an
//! immutable value the writer republishes, so readers never wait on it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::decide::Decision;
use crate::events::Event;
use crate::health::{PairHealth, State};

/// How many recent events are kept for display.
pub const RECENT_EVENTS: usize = 100;

#[derive(Debug, Clone)]
pub struct Status {
    pub config: Arc<Config>,
    pub started_at: SystemTime,
    /// False until the first full round of checks is done (DNS answers SERVFAIL until then).
    pub ready: bool,
    /// SOA serial of the zone being served.
    pub serial: u32,
    /// What the peer API tells the other agents about that serial (none before the first
    /// round, or while a change's serial could not be stored).
    pub claim: Option<crate::serial::Claim>,
    /// This agent's own view of each (node, check) pair (its probes, rise/fall), indexed by
    /// `Config::pair_index`.
    pub pairs: Vec<PairHealth>,
    /// The state each pair's answers are decided from: the cluster's vote, or the own state
    /// when there is no cluster. Same index as `pairs`.
    pub effective: Vec<Effective>,
    /// Per hostname, in config order; empty until ready.
    pub decisions: Vec<Decision>,
    /// Newest last, at most `RECENT_EVENTS`.
    pub events: VecDeque<Arc<Event>>,
    /// The other agents, in config order (empty without a cluster).
    pub peers: Vec<PeerStatus>,
    /// A cluster is configured but no other agent answers: this agent decides alone.
    pub alone: bool,
    /// This agent is the one that sends the cluster's notifications (the reachable agent with
    /// the lowest node id); always true without a cluster.
    pub notifying: bool,
    /// Manual overrides known to this agent, cleared and expired ones included.
    pub overrides: Vec<crate::overrides::Override>,
}

/// The decided state of one pair, and who voted for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub state: State,
    /// When `state` was entered.
    pub since: Option<SystemTime>,
    /// The fresh votes counted, this agent's first (empty without a cluster).
    pub votes: Vec<Vote>,
}

impl Default for Effective {
    fn default() -> Self {
        Self {
            state: State::Unknown,
            since: None,
            votes: Vec::new(),
        }
    }
}

/// One agent's vote on one pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Vote {
    /// The voting agent's node id.
    pub agent: String,
    pub up: bool,
    /// Age of the probe result behind the vote.
    pub age: Duration,
    pub error: Option<String>,
}

/// What this agent knows of another agent.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    pub agent: String,
    /// Its peer API address.
    pub address: SocketAddr,
    /// It answered a pull recently (within three pull periods).
    pub reachable: bool,
    pub last_seen: Option<SystemTime>,
    /// Why the last pull failed, if it did.
    pub error: Option<String>,
}

impl Status {
    pub fn new(config: Arc<Config>, serial: u32) -> Self {
        let pairs = vec![PairHealth::new(); config.pair_count()];
        let effective = vec![Effective::default(); config.pair_count()];
        Self {
            config,
            started_at: SystemTime::now(),
            ready: false,
            serial,
            claim: None,
            pairs,
            effective,
            decisions: Vec::new(),
            events: VecDeque::new(),
            peers: Vec::new(),
            alone: false,
            notifying: true,
            overrides: Vec::new(),
        }
    }
}
