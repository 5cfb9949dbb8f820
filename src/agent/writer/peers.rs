//! The writer's record of the other agents: their last answers (votes, overrides, serial),
//! whether they are reachable, whether this agent is alone, and whether it sends the cluster's
//! notifications (decided by `effective`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{info, warn};

use super::Writer;
use crate::cluster::PeerReport;
use crate::effective;
use crate::events::EventKind;
use crate::overrides;
use crate::serial::Claim;
use crate::status::PeerStatus;

/// The last answer of one other agent.
#[derive(Debug, Default)]
pub(super) struct PeerRecord {
    /// When it last answered a pull.
    pub(super) last_ok: Option<Instant>,
    pub(super) last_seen: Option<SystemTime>,
    /// Why the last pull failed.
    pub(super) error: Option<String>,
    /// Whether its last answer had overrides that were refused: logged when that starts, not
    /// on every pull (a peer can vary what it sends each time).
    pub(super) refusing: bool,
    /// Its content and serial, as of its last answer.
    pub(super) claim: Option<Claim>,
    /// (node id, check id) → its vote and when the result behind it was observed.
    pub(super) votes: HashMap<(String, String), PeerVote>,
}

#[derive(Debug, Clone)]
pub(super) struct PeerVote {
    pub(super) up: bool,
    /// Its last probe disagrees with its vote (a suspicion, a recovery).
    pub(super) changing: bool,
    pub(super) observed_at: Instant,
    pub(super) error: Option<String>,
}

impl Writer {
    /// Folds one agent's pulled observations in (or notes why it did not answer).
    pub(super) fn peer_report(&mut self, report: PeerReport) {
        let PeerReport {
            peer,
            result,
            received_at,
        } = report;
        match result {
            Ok(observations) => {
                let merged = self.overrides.merge(
                    &observations.overrides,
                    &self.config,
                    overrides::unix_now(),
                );
                if !merged.changed.is_empty() {
                    for o in &merged.changed {
                        info!(peer = %peer, change = %o.summary(), "override received from another agent");
                        self.emit(EventKind::OverrideChanged {
                            summary: o.summary(),
                        });
                    }
                    self.overrides_stored();
                }
                let view = self.peers.entry(peer.clone()).or_default();
                if let Some(why) = &merged.first_refusal
                    && !view.refusing
                {
                    warn!(peer = %peer, refused = merged.refused, first = %why, "overrides sent by another agent refused (not something an operator of this cluster could set)");
                }
                view.refusing = merged.first_refusal.is_some();
                if view.error.is_some() || view.last_ok.is_none() {
                    info!(peer = %peer, "peer agent answers; counting its votes");
                }
                view.last_ok = Some(received_at);
                view.last_seen = Some(SystemTime::now());
                view.error = None;
                view.claim = observations.serial;
                // A push and a pull may cross: per pair, the vote behind the newer result wins.
                let before = std::mem::take(&mut view.votes);
                let mut nudge = Vec::new();
                for o in observations.observations {
                    let age = Duration::from_millis(o.age_ms);
                    let observed_at = received_at.checked_sub(age).unwrap_or(received_at);
                    let key = (o.node, o.check);
                    let vote = match before.get(&key) {
                        Some(old) if old.observed_at > observed_at => old.clone(),
                        old => {
                            // News of a pair: a suspicion or recovery, or a vote against ours,
                            // makes our probe of it look now (edge-triggered: once per change).
                            let news = old.is_none_or(|v| (v.up, v.changing) != (o.up, o.changing));
                            if news && let Some(&pair) = self.pair_index.get(&key) {
                                let local = self.status.pairs[pair].state;
                                let against = local != crate::health::State::Unknown
                                    && (local == crate::health::State::Up) != o.up;
                                if o.changing || against {
                                    nudge.push(pair);
                                }
                            }
                            PeerVote {
                                up: o.up,
                                changing: o.changing,
                                observed_at,
                                error: o.error,
                            }
                        }
                    };
                    view.votes.insert(key, vote);
                }
                for pair in nudge {
                    self.nudges.nudge(pair);
                }
            }
            Err(error) => {
                let view = self.peers.entry(peer.clone()).or_default();
                if view.error.as_deref() != Some(error.as_str()) {
                    warn!(peer = %peer, %error, "peer agent does not answer; its votes age out");
                }
                view.error = Some(error);
            }
        }
        self.dirty_all = true;
        self.status_dirty = true;
        self.refresh_peers();
    }

    /// Updates the peer list, whether this agent is alone, and whether it is the one that
    /// sends notifications (the reachable agent with the lowest node id).
    pub(super) fn refresh_peers(&mut self) {
        let config = self.config.clone();
        let (Some(cluster), Some(me_id)) = (&config.cluster, config.self_id()) else {
            return;
        };
        let now = Instant::now();
        let peers: Vec<PeerStatus> = config
            .peers()
            .into_iter()
            .map(|agent| {
                let view = self.peers.get(agent.id);
                PeerStatus {
                    agent: agent.id.to_string(),
                    address: agent.address,
                    reachable: effective::reachable(
                        view.and_then(|v| v.last_ok).map(|t| now.duration_since(t)),
                        cluster.period,
                    ),
                    last_seen: view.and_then(|v| v.last_seen),
                    error: view.and_then(|v| v.error.clone()),
                }
            })
            .collect();
        // Before the first pulls can have answered, nobody is "alone" yet.
        let any_reachable = peers.iter().any(|p| p.reachable);
        let alone = effective::alone(
            now.duration_since(self.started),
            cluster.period,
            any_reachable,
        );
        if alone != self.status.alone && !peers.is_empty() {
            if alone
                && !cluster.witnesses.is_empty()
                && cluster.quorum == crate::config::Quorum::Majority
            {
                warn!(
                    "no other agent answers: without a majority of the agents (nodes and witnesses) every pair keeps its state"
                );
            } else if alone {
                warn!("no other agent answers: this agent decides alone on its own observations");
            } else {
                let voting = peers.iter().filter(|p| p.reachable).count();
                info!(
                    peers = voting,
                    "other agents answer again: deciding by vote"
                );
            }
        }
        let reachable = peers.iter().filter(|p| p.reachable);
        let notifying = effective::notifying(me_id, reachable.map(|p| p.agent.as_str()));
        if notifying != self.status.notifying {
            info!(
                sending = notifying,
                "this agent {} the cluster's notifications",
                if notifying {
                    "now sends"
                } else {
                    "no longer sends"
                }
            );
        }
        if peers != self.status.peers
            || alone != self.status.alone
            || notifying != self.status.notifying
        {
            self.status_dirty = true;
        }
        self.status.peers = peers;
        self.status.alone = alone;
        self.status.notifying = notifying;
    }
}
