//! The writer: the one task that changes the agent's state. It folds probe results into pair
//! health, counts the other agents' votes, applies overrides, decides, and publishes one snapshot
//! (the answers for DNS, the status for everyone else), then the events it holds; it also applies
//! reloads. The decisions themselves are pure and live elsewhere: `health` (rise/fall),
//! `effective` (own state or vote, freshness, split, alone, who notifies), `decide` (answers),
//! `serial::Keeper`.
//!
//! | file             | what it does                                                         |
//! |------------------|----------------------------------------------------------------------|
//! | `mod.rs`         | the loop, probe results in, events, storing the snapshot             |
//! | `peers.rs`       | the other agents' answers, reachability, alone, the notifier election |
//! | `commands.rs`    | operators' commands (overrides) and their storage                     |
//! | `publish.rs`     | effective states, decisions, the zone and its serial                  |
//! | `reconfigure.rs` | a reload: what carries over, what starts anew                         |

mod commands;
mod peers;
mod publish;
mod reconfigure;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Published, STATUS_PUBLISH_PERIOD};
use crate::check::schedule::{Nudges, PairResult};
use crate::cluster::PeerReport;
use crate::command::Command;
use crate::config::Config;
use crate::dns::Answers;
use crate::events::{Event, EventKind};
use crate::health::State;
use crate::overrides::{self, Active, Overrides};
use crate::serial::Keeper;
use crate::snapshot::{self, Snapshot};
use crate::state_dir::StateDir;
use crate::status::{RECENT_EVENTS, Status};
use peers::PeerRecord;
pub(super) use reconfigure::carried_pairs;

/// A new configuration, with the results channel of the probes started for it.
pub(super) struct Reconfigure {
    pub config: Arc<Config>,
    pub results: mpsc::Receiver<PairResult>,
    /// The nudges of the probes started for it.
    pub nudges: Arc<Nudges>,
}

/// The one writer: folds probe results into pair health, decides, publishes the snapshot.
pub(super) struct Writer {
    config: Arc<Config>,
    /// The working copy; readers get clones in the snapshots published to `published`.
    status: Status,
    /// The answers in force (shared by the snapshots until the zone changes).
    answers: Arc<Answers>,
    /// Where the one snapshot is stored.
    published: snapshot::Shared,
    /// Whether `status` has changes not yet published.
    status_dirty: bool,
    last_status_publish: Instant,
    events: broadcast::Sender<Arc<Event>>,
    /// Events emitted since the last publication: sent once the snapshot that holds them is
    /// stored, so that whoever receives one sees the state it describes.
    unsent: Vec<Arc<Event>>,
    /// Pairs still waiting for their first result; DNS answers once this reaches 0.
    unknown: usize,
    /// Check transitions since the last decision, to explain answer changes.
    causes: Vec<String>,
    state: StateDir,
    /// The SOA serial: stored before it is served, agreed with the other agents.
    serial: Keeper,
    /// The last serial store failed (reported once, retried on the aging tick).
    serial_failing: bool,
    /// What each other agent said last, by node id.
    peers: HashMap<String, PeerRecord>,
    /// Pairs whose effective state must be recomputed (own result changed)…
    dirty: Vec<usize>,
    /// …or all of them (a peer's votes arrived or aged).
    dirty_all: bool,
    /// Manual overrides, stored in the state directory and exchanged with the other agents.
    overrides: Overrides,
    /// The overrides in force at the last decision (they also end by expiry).
    active: Active,
    /// Overrides changed since the last decision.
    overrides_changed: bool,
    /// When this task started (peers get a grace period to answer).
    started: Instant,
    /// Asks the peer puller for the others' votes now (after a local change).
    pull_now: Arc<tokio::sync::Notify>,
    /// Per pair: the fresh votes disagree (some up, some down). While any pair's do, the
    /// puller is asked to come back sooner, so every agent sees the others' changes quickly.
    split: Vec<bool>,
    split_count: usize,
    /// When a pair last became split or agreed again: the quick pulls last a few periods
    /// after that, not for as long as an asymmetric fault does.
    split_changed: Instant,
    /// Wakes the pusher once the snapshot holding a change of this agent's own view is stored.
    push_now: Arc<tokio::sync::Notify>,
    /// This agent's own view of a pair changed (a state, or a suspicion or recovery starting or
    /// ending) since the last push.
    push_wanted: bool,
    /// Asks a pair's probe to probe now (another agent suspects the pair, or sees it recover).
    nudges: Arc<Nudges>,
    /// (node id, check id) → pair index, for the peers' votes.
    pair_index: HashMap<(String, String), usize>,
}

/// (node id, check id) → pair index of `config`.
fn pair_index(config: &Config) -> HashMap<(String, String), usize> {
    (0..config.pair_count())
        .map(|p| {
            let (n, c) = config.pair(p);
            ((config.nodes[n].id.clone(), config.checks[c].id.clone()), p)
        })
        .collect()
}

/// The last result disagrees with the confirmed state (failing while up, passing while down).
fn changing(health: &crate::health::PairHealth) -> bool {
    health.state != State::Unknown
        && health
            .last_result
            .as_ref()
            .is_some_and(|r| r.passed != health.is_up())
}

impl Writer {
    pub(super) fn new(
        config: Arc<Config>,
        parts: Published,
        state: StateDir,
        serial: Keeper,
        overrides: Overrides,
    ) -> Self {
        let Published {
            snapshot,
            events,
            pull_now,
            push_now,
            ..
        } = parts;
        Self {
            status: Status::new(config.clone(), serial.serial()),
            answers: snapshot.load().answers.clone(),
            published: snapshot,
            status_dirty: false,
            last_status_publish: Instant::now(),
            events,
            unsent: Vec::new(),
            unknown: config.pair_count(),
            causes: Vec::new(),
            state,
            serial,
            serial_failing: false,
            peers: HashMap::new(),
            dirty: Vec::new(),
            dirty_all: false,
            active: Active::none(&config),
            overrides,
            overrides_changed: true,
            started: Instant::now(),
            pull_now,
            split: vec![false; config.pair_count()],
            split_count: 0,
            split_changed: Instant::now(),
            push_now,
            push_wanted: false,
            nudges: Nudges::new(0),
            pair_index: pair_index(&config),
            config,
        }
    }

    /// The nudges of the probes running for this configuration.
    pub(super) fn nudging(mut self, nudges: Arc<Nudges>) -> Self {
        self.nudges = nudges;
        self
    }

    pub(super) async fn run(
        mut self,
        mut results: mpsc::Receiver<PairResult>,
        mut reloads: mpsc::Receiver<Reconfigure>,
        mut peer_reports: mpsc::Receiver<PeerReport>,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        // A state file may hold entries this configuration does not allow (a node removed, or
        // written by a release that took whatever another agent sent): they go now.
        let (dropped, why) = self
            .overrides
            .retain_valid(&self.config, overrides::unix_now());
        if dropped > 0 {
            warn!(
                dropped,
                first = why.as_deref().unwrap_or(""),
                "stored overrides this configuration does not allow were dropped"
            );
            self.overrides_stored();
        }
        self.status.overrides = self.overrides.list();
        // The other agents are listed (as not answering yet) from the start.
        self.refresh_peers();
        if !self.unsent.is_empty() {
            self.publish_status();
        }
        // The probes of a replaced configuration are stopped after their successor channel is
        // handed over; their closing channel must not end this loop.
        let mut results_open = true;
        // Peer votes age out even when nothing arrives: look again every so often.
        let mut aging = tokio::time::interval(Duration::from_millis(500));
        aging.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let flush_at = self.last_status_publish + STATUS_PUBLISH_PERIOD;
            let mut changed = false;
            tokio::select! {
                o = results.recv(), if results_open => match o {
                    Some(o) => {
                        // Fold everything already waiting, then decide once.
                        changed |= self.observe(o);
                        while let Ok(more) = results.try_recv() {
                            changed |= self.observe(more);
                        }
                    }
                    None => {
                        results_open = false;
                        continue;
                    }
                },
                Some(report) = peer_reports.recv() => {
                    self.peer_report(report);
                    while let Ok(more) = peer_reports.try_recv() {
                        self.peer_report(more);
                    }
                }
                _ = aging.tick() => {
                    if self.config.cluster.is_some() {
                        self.dirty_all = true;
                        self.refresh_peers();
                    }
                    // An override may have just expired.
                    if self.overrides.active(&self.config, overrides::unix_now()) != self.active {
                        self.overrides_changed = true;
                    }
                    // A serial that could not be stored is stored as soon as it can be.
                    if self.serial.pending() {
                        let (before, now) = (self.serial.serial(), overrides::unix_now());
                        let outcome = self.serial.retry(now, |s| self.state.store_serial(s));
                        self.serial_outcome(outcome, "stored after all");
                        self.republish_serial(before);
                    }
                    self.follow_peer_serials(true);
                }
                Some(command) = commands.recv() => self.command(command),
                Some(Reconfigure { config, results: fresh, nudges }) = reloads.recv() => {
                    // Results still queued from the old probes are dropped with their channel.
                    results = fresh;
                    results_open = true;
                    self.nudges = nudges;
                    self.pair_index = pair_index(&config);
                    self.reconfigure(config);
                    continue;
                }
                () = tokio::time::sleep_until(flush_at), if self.status_dirty => {
                    self.publish_status();
                    continue;
                }
                () = shutdown.cancelled() => {
                    // Current until now: a restart may serve them at once (`dns::saved`).
                    if self.status.ready {
                        self.save_answers();
                    }
                    return;
                }
            }
            changed |= self.recompute();
            changed |= std::mem::take(&mut self.overrides_changed) && self.status.ready;
            if changed && self.unknown == 0 {
                self.decide_and_publish();
            }
            self.follow_peer_serials(false);
            let push = std::mem::take(&mut self.push_wanted);
            if push || changed || !self.unsent.is_empty() || Instant::now() >= flush_at {
                self.publish_status();
            }
            // After the store: the pusher sends what the snapshot now holds.
            if push {
                self.push_now.notify_one();
            }
        }
    }

    /// Records an event among the recent ones; it is sent with the next snapshot.
    pub(super) fn emit(&mut self, kind: EventKind) {
        let event = Arc::new(Event::now(kind));
        if self.status.events.len() == RECENT_EVENTS {
            self.status.events.pop_front();
        }
        self.status.events.push_back(event.clone());
        self.unsent.push(event);
    }

    /// Stores the one snapshot (answers and status together), then sends the events it holds.
    pub(super) fn publish_status(&mut self) {
        let snapshot = Snapshot::new(self.answers.clone(), self.status.clone());
        self.published.store(Arc::new(snapshot));
        self.status_dirty = false;
        self.last_status_publish = Instant::now();
        for event in self.unsent.drain(..) {
            // No subscriber is fine: nobody is listening for notifications.
            let _ = self.events.send(event);
        }
    }

    /// Applies one result; true if a pair's confirmed state changed.
    pub(super) fn observe(&mut self, observation: PairResult) -> bool {
        let PairResult {
            pair,
            result,
            extra,
        } = observation;
        self.status_dirty = true;
        let (n, c) = self.config.pair(pair);
        let config = self.config.clone();
        let (node, check) = (&config.nodes[n], &config.checks[c]);
        if let Some(error) = &result.error {
            debug!(node = %node.id, check = %check.id, %error, "probe failed");
        }
        let timing = check.timing;
        let health = &mut self.status.pairs[pair];
        let was_changing = changing(health);
        let transition = health.observe(result, timing.rise, timing.fall, SystemTime::now());
        health.extra_probes_total += u64::from(extra);
        // A suspicion or a recovery starting or ending, or a transition: the others hear now.
        if config.cluster.is_some() && (transition.is_some() || was_changing != changing(health)) {
            self.push_wanted = true;
        }
        // The vote changes with every fresh result in a cluster (ages), with transitions alone.
        if config.cluster.is_some() || transition.is_some() {
            self.dirty.push(pair);
        }
        let Some(t) = transition else {
            return false;
        };
        if t.from == State::Unknown {
            self.unknown -= 1;
        }
        // Without a cluster the effective state is this one, logged once by `recompute`.
        if config.cluster.is_some() {
            info!(
                node = %node.id,
                check = %check.id,
                from = t.from.label(),
                to = t.to.label(),
                error = t.error.as_deref(),
                "local check state changed (this agent's vote)"
            );
            self.pull_now.notify_one();
        }
        true
    }
}

#[cfg(test)]
mod tests;
