//! The health task: the one writer. It folds probe results into pair health, decides, and
//! publishes the zone (for DNS) and the status (for everyone else); it also applies reloads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Published, STATUS_PUBLISH_PERIOD};
use crate::check::schedule::Observation;
use crate::cluster::{PeerReport, freshness, tally};
use crate::command::Command;
use crate::config::Config;
use crate::decide::{Decision, decide};
use crate::dns::{Zone, saved, zone};
use crate::events::{Event, EventKind};
use crate::health::State;
use crate::overrides::{self, Active, Overrides};
use crate::serial::{Claim, Fingerprint, Keeper, Outcome};
use crate::state_dir::StateDir;
use crate::status::{PeerStatus, RECENT_EVENTS, Status, Vote};

/// A new configuration, with the results channel of the probes started for it.
pub(super) struct Reconfigure {
    pub config: Arc<Config>,
    pub results: mpsc::Receiver<Observation>,
}

/// The one writer: folds probe results into pair health, decides, publishes zone and status.
pub(super) struct HealthTask {
    config: Arc<Config>,
    /// The working copy; readers get clones through `status_out`.
    status: Status,
    status_out: Arc<ArcSwap<Status>>,
    /// Whether `status` has changes not yet published to `status_out`.
    status_dirty: bool,
    last_status_publish: Instant,
    events: broadcast::Sender<Arc<Event>>,
    /// Pairs still waiting for their first result; DNS answers once this reaches 0.
    unknown: usize,
    /// Check transitions since the last decision, to explain answer changes.
    causes: Vec<String>,
    state: StateDir,
    /// The SOA serial: stored before it is served, agreed with the other agents.
    serial: Keeper,
    /// The last serial store failed (reported once, retried on the aging tick).
    serial_failing: bool,
    zone: Arc<ArcSwap<Zone>>,
    /// What each other agent said last, by node id.
    peers: HashMap<String, PeerView>,
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
}

/// The last answer of one other agent.
#[derive(Debug, Default)]
struct PeerView {
    /// When it last answered a pull.
    last_ok: Option<Instant>,
    last_seen: Option<SystemTime>,
    /// Why the last pull failed.
    error: Option<String>,
    /// Whether its last answer had overrides that were refused: logged when that starts, not
    /// on every pull (a peer can vary what it sends each time).
    refusing: bool,
    /// Its content and serial, as of its last answer.
    claim: Option<Claim>,
    /// (node id, check id) → its vote and when the result behind it was observed.
    votes: HashMap<(String, String), PeerVote>,
}

#[derive(Debug)]
struct PeerVote {
    up: bool,
    observed_at: Instant,
    error: Option<String>,
}

impl HealthTask {
    pub(super) fn new(
        config: Arc<Config>,
        parts: Published,
        state: StateDir,
        serial: Keeper,
        overrides: Overrides,
    ) -> Self {
        let Published {
            zone,
            status,
            events,
            pull_now,
            ..
        } = parts;
        Self {
            status: Status::new(config.clone(), serial.serial()),
            status_out: status,
            status_dirty: false,
            last_status_publish: Instant::now(),
            events,
            unknown: config.pair_count(),
            causes: Vec::new(),
            state,
            serial,
            serial_failing: false,
            zone,
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
            config,
        }
    }

    pub(super) async fn run(
        mut self,
        mut results: mpsc::Receiver<Observation>,
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
                Some(Reconfigure { config, results: fresh }) = reloads.recv() => {
                    // Results still queued from the old probes are dropped with their channel.
                    results = fresh;
                    results_open = true;
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
            if changed || Instant::now() >= flush_at {
                self.publish_status();
            }
        }
    }

    /// Folds one agent's pulled observations in (or notes why it did not answer).
    fn peer_report(&mut self, report: PeerReport) {
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
                view.votes = observations
                    .observations
                    .into_iter()
                    .map(|o| {
                        let age = Duration::from_millis(o.age_ms);
                        let observed_at = received_at.checked_sub(age).unwrap_or(received_at);
                        (
                            (o.node, o.check),
                            PeerVote {
                                up: o.up,
                                observed_at,
                                error: o.error,
                            },
                        )
                    })
                    .collect();
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

    fn command(&mut self, command: Command) {
        match command {
            Command::Override { request, reply } => {
                let config = self.config.clone();
                let origin = config
                    .self_node
                    .map(|n| config.nodes[n].id.clone())
                    .unwrap_or_else(|| overrides::LOCAL_ORIGIN.into());
                // Applied only once stored: an override that would not survive a restart is
                // refused, and the operator told why.
                let mut next = self.overrides.clone();
                let result = next
                    .apply(request, &config, &origin, overrides::unix_now())
                    .map_err(overrides::Refused::Invalid)
                    .and_then(|entry| match next.store(self.state.path()) {
                        Ok(()) => Ok(entry),
                        Err(e) => Err(overrides::Refused::NotStored(format!(
                            "cannot store the override in {}: {e}; not applied (free space or fix the permissions, then try again)",
                            self.state.path().display()
                        ))),
                    });
                match &result {
                    Ok(entry) => {
                        info!(change = %entry.summary(), version = entry.version, "override set");
                        self.overrides = next;
                        self.emit(EventKind::OverrideChanged {
                            summary: entry.summary(),
                        });
                        self.overrides_changed = true;
                        self.status.overrides = self.overrides.list();
                        self.status_dirty = true;
                    }
                    Err(overrides::Refused::NotStored(error)) => {
                        error!(%error, "override refused");
                        self.emit(EventKind::PublishFailed {
                            error: error.clone(),
                        });
                    }
                    Err(overrides::Refused::Invalid(_)) => {}
                }
                let _ = reply.send(result);
            }
            Command::NotificationFailed { summary } => {
                self.emit(EventKind::NotificationFailed { summary });
                self.status_dirty = true;
            }
            Command::PublishFailed { error } => {
                self.emit(EventKind::PublishFailed { error });
                self.status_dirty = true;
            }
        }
    }

    /// Persists the overrides after a change and shows them; a failure is reported, not fatal.
    fn overrides_stored(&mut self) {
        self.overrides_changed = true;
        self.status.overrides = self.overrides.list();
        self.status_dirty = true;
        if let Err(e) = self.overrides.store(self.state.path()) {
            error!(error = %e, state_dir = %self.state.path().display(), "cannot store the overrides; they hold until the agent stops");
            let error = format!(
                "cannot store the overrides in {}: {e}",
                self.state.path().display()
            );
            self.emit(EventKind::PublishFailed { error });
        }
    }

    /// Updates the peer list, whether this agent is alone, and whether it is the one that
    /// sends notifications (the reachable agent with the lowest node id).
    fn refresh_peers(&mut self) {
        let config = self.config.clone();
        let (Some(cluster), Some(me)) = (&config.cluster, config.self_node) else {
            return;
        };
        let now = Instant::now();
        let recent = cluster.period * 3 + Duration::from_secs(1);
        let peers: Vec<PeerStatus> = config
            .nodes
            .iter()
            .enumerate()
            .filter(|(n, _)| *n != me)
            .map(|(_, node)| {
                let view = self.peers.get(&node.id);
                PeerStatus {
                    agent: node.id.clone(),
                    address: cluster.peer_addr(node),
                    reachable: view
                        .and_then(|v| v.last_ok)
                        .is_some_and(|t| now.duration_since(t) <= recent),
                    last_seen: view.and_then(|v| v.last_seen),
                    error: view.and_then(|v| v.error.clone()),
                }
            })
            .collect();
        // Before the first pulls can have answered, nobody is "alone" yet.
        let alone = now.duration_since(self.started) > recent && !peers.iter().any(|p| p.reachable);
        if alone != self.status.alone && !peers.is_empty() {
            if alone {
                warn!("no other agent answers: this agent decides alone on its own observations");
            } else {
                let voting = peers.iter().filter(|p| p.reachable).count();
                info!(
                    peers = voting,
                    "other agents answer again: deciding by vote"
                );
            }
        }
        let me_id = &config.nodes[me].id;
        let notifying = peers
            .iter()
            .filter(|p| p.reachable)
            .all(|p| p.agent > *me_id);
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

    /// Recomputes the effective state of the dirty pairs (own state, or the vote); logs and
    /// reports every change. True if one changed.
    fn recompute(&mut self) -> bool {
        let config = self.config.clone();
        let pairs: Vec<usize> = if self.dirty_all {
            self.dirty.clear();
            (0..config.pair_count()).collect()
        } else {
            std::mem::take(&mut self.dirty)
        };
        self.dirty_all = false;
        let (now, wall) = (Instant::now(), SystemTime::now());
        let me = config
            .self_node
            .map(|n| config.nodes[n].id.clone())
            .unwrap_or_default();
        let mut changed = false;
        for p in pairs {
            let (n, c) = config.pair(p);
            let (node, check) = (&config.nodes[n], &config.checks[c]);
            let own = &self.status.pairs[p];
            let own_error = own.last_result.as_ref().and_then(|r| r.error.clone());
            let (state, votes) = match &config.cluster {
                None => (own.state, Vec::new()),
                Some(cluster) => {
                    let mut votes = Vec::new();
                    if own.state != State::Unknown {
                        let age = own
                            .last_checked
                            .and_then(|t| wall.duration_since(t).ok())
                            .unwrap_or_default();
                        let error = if own.is_up() { None } else { own_error.clone() };
                        votes.push(Vote {
                            agent: me.clone(),
                            up: own.is_up(),
                            age,
                            error,
                        });
                    }
                    let fresh = freshness(&check.timing, cluster.period);
                    let key = (node.id.clone(), check.id.clone());
                    let mut theirs: Vec<Vote> = self
                        .peers
                        .iter()
                        .filter_map(|(agent, view)| {
                            let vote = view.votes.get(&key)?;
                            let age = now.duration_since(vote.observed_at);
                            (age <= fresh).then(|| Vote {
                                agent: agent.clone(),
                                up: vote.up,
                                age,
                                error: vote.error.clone(),
                            })
                        })
                        .collect();
                    // A stable order, so every agent shows (and counts) the same list.
                    theirs.sort_by(|a, b| a.agent.cmp(&b.agent));
                    votes.extend(theirs);
                    (tally(cluster.quorum, votes.iter().map(|v| v.up)), votes)
                }
            };
            let split = votes.iter().any(|v| v.up) && votes.iter().any(|v| !v.up);
            if split != self.split[p] {
                self.split[p] = split;
                self.split_changed = now;
                if split {
                    self.split_count += 1;
                } else {
                    self.split_count -= 1;
                }
            }
            let effective = &mut self.status.effective[p];
            effective.votes = votes;
            if state == effective.state {
                continue;
            }
            changed = true;
            let from = effective.state;
            let down_since = (from == State::Down).then_some(effective.since).flatten();
            effective.state = state;
            effective.since = Some(wall);
            // The error of the transition: ours if we see it down, else a voter's.
            let error = match state {
                State::Down => Some(
                    (if own.state == State::Down {
                        own_error.clone()
                    } else {
                        None
                    })
                    .or_else(|| {
                        effective.votes.iter().find(|v| !v.up).and_then(|v| {
                            v.error
                                .clone()
                                .map(|e| format!("{e} (seen by {})", v.agent))
                        })
                    })
                    .unwrap_or_else(|| "failed".into()),
                ),
                _ => None,
            };
            let latency_ms = own
                .last_result
                .as_ref()
                .map(|r| r.latency.as_secs_f64() * 1000.0)
                .unwrap_or_default();
            // Left out of the line when there is nothing to say (no error, no cluster).
            let tally_text = config.cluster.as_ref().map(|_| {
                let up = effective.votes.iter().filter(|v| v.up).count();
                format!("{up}/{} up", effective.votes.len())
            });
            info!(
                node = %node.id,
                check = %check.id,
                from = from.label(),
                to = state.label(),
                error = error.as_deref(),
                latency_ms = format!("{latency_ms:.1}"),
                votes = tally_text.as_deref().map(tracing::field::display),
                "check state changed"
            );
            match state {
                State::Down => {
                    let error = error.unwrap_or_default();
                    self.causes
                        .push(format!("{} {}: {error}", node.id, check.id));
                    self.emit(EventKind::CheckDown {
                        node: node.id.clone(),
                        check: check.id.clone(),
                        error,
                    });
                }
                // A pair that is simply up at start is not news.
                State::Up if from == State::Down => {
                    self.causes.push(format!("{} {}: up", node.id, check.id));
                    let down_for = down_since.and_then(|s| wall.duration_since(s).ok());
                    self.emit(EventKind::CheckUp {
                        node: node.id.clone(),
                        check: check.id.clone(),
                        down_for,
                    });
                }
                _ => {}
            }
        }
        let settling = config
            .cluster
            .as_ref()
            .is_some_and(|c| now.duration_since(self.split_changed) < c.period * 3);
        if self.split_count > 0 && settling {
            self.pull_now.notify_one();
        }
        changed
    }

    /// Switches to a new configuration. Pairs whose node and check are unchanged keep their
    /// state and history; new or changed ones start unconfirmed; removed ones disappear. The
    /// answers are republished (and the serial moved) only if they change.
    fn reconfigure(&mut self, config: Arc<Config>) {
        let old = self.config.clone();
        let mut pairs = Vec::with_capacity(config.pair_count());
        let mut effective = Vec::with_capacity(config.pair_count());
        let mut kept = 0;
        for p in 0..config.pair_count() {
            let (n, c) = config.pair(p);
            let (node, check) = (&config.nodes[n], &config.checks[c]);
            let on = old.nodes.iter().position(|o| o.id == node.id);
            let oc = old.checks.iter().position(|o| o.id == check.id);
            let carried = match (on, oc) {
                (Some(on), Some(oc))
                    if old.nodes[on].probe_address == node.probe_address
                        && old.checks[oc] == *check =>
                {
                    let p = old.pair_index(on, oc);
                    self.status
                        .pairs
                        .get(p)
                        .cloned()
                        .zip(self.status.effective.get(p).cloned())
                }
                _ => None,
            };
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

    fn emit(&mut self, kind: EventKind) {
        let event = Arc::new(Event::now(kind));
        if self.status.events.len() == RECENT_EVENTS {
            self.status.events.pop_front();
        }
        self.status.events.push_back(event.clone());
        // No subscriber is fine: nobody is listening for notifications.
        let _ = self.events.send(event);
    }

    fn publish_status(&mut self) {
        self.status_out.store(Arc::new(self.status.clone()));
        self.status_dirty = false;
        self.last_status_publish = Instant::now();
    }

    /// Applies one result; true if a pair's confirmed state changed.
    fn observe(&mut self, observation: Observation) -> bool {
        let Observation {
            pair,
            result,
            reply,
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
        let transition = health.observe(result, timing.rise, timing.fall, SystemTime::now());
        let _ = reply.send(health.cadence());
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

    /// Notes what a serial store did: the status follows the keeper; a failure is reported
    /// once per streak (it is retried every aging tick), and its end too.
    fn serial_outcome(&mut self, outcome: Outcome, recovered: &str) {
        match outcome {
            Outcome::Unchanged => {}
            Outcome::Moved(serial) => {
                if std::mem::take(&mut self.serial_failing) {
                    info!(serial, state_dir = %self.state.path().display(), "the SOA serial is {recovered}");
                }
            }
            Outcome::StoreFailed(e) => {
                if !std::mem::replace(&mut self.serial_failing, true) {
                    let serial = self.serial.serial();
                    error!(error = %e, serial, state_dir = %self.state.path().display(),
                        "cannot store the SOA serial; the new answers are served, under the last stored serial until it can be stored");
                    let error = format!(
                        "cannot store the SOA serial in {}: {e} (the answers changed, the serial stays at {serial} until the directory is writable)",
                        self.state.path().display()
                    );
                    self.emit(EventKind::PublishFailed { error });
                }
            }
        }
        self.status.claim = self.serial.claim();
        if self.status.serial != self.serial.serial() {
            self.status.serial = self.serial.serial();
            self.status_dirty = true;
        }
    }

    /// Moves up to the highest serial a fresh peer serves for the content this agent serves
    /// (see `serial`). While stores fail, it tries on the aging tick only.
    fn follow_peer_serials(&mut self, tick: bool) {
        let Some(cluster) = &self.config.cluster else {
            return;
        };
        if !self.status.ready || self.unknown > 0 || (self.serial_failing && !tick) {
            return;
        }
        let now = Instant::now();
        let recent = cluster.period * 3 + Duration::from_secs(1);
        let claims: Vec<Claim> = self
            .peers
            .values()
            .filter(|v| v.last_ok.is_some_and(|t| now.duration_since(t) <= recent))
            .filter_map(|v| v.claim)
            .collect();
        let before = self.serial.serial();
        let outcome = self.serial.adopt(claims, overrides::unix_now(), |s| {
            self.state.store_serial(s)
        });
        self.serial_outcome(outcome, "stored again");
        if self.serial.serial() != before {
            info!(
                from = before,
                to = self.serial.serial(),
                "SOA serial moved up to the other agents' serial for the same answers"
            );
        }
        self.republish_serial(before);
    }

    /// Serves the same answers under the keeper's serial, if it moved from `before` without
    /// a change of content (a stored retry, another agent's serial).
    fn republish_serial(&mut self, before: u32) {
        let serial = self.serial.serial();
        if serial == before || !self.status.ready || self.unknown > 0 {
            return;
        }
        self.zone.store(Arc::new(zone::build(
            &self.config,
            &self.status.decisions,
            serial,
        )));
        self.publish_status();
    }

    /// Decides, and publishes a new zone if the answers changed (or on the first round). The
    /// serial moves exactly when the zone's content does.
    fn decide_and_publish(&mut self) {
        let up: Vec<bool> = self
            .status
            .effective
            .iter()
            .map(|e| e.state == State::Up)
            .collect();
        self.active = self.overrides.active(&self.config, overrides::unix_now());
        let decisions = decide(&self.config, &up, &self.status.decisions, &self.active);
        let first = !self.status.ready;
        let causes = std::mem::take(&mut self.causes);
        let mut candidate = zone::build(&self.config, &decisions, self.serial.serial());
        let zone_changed = first || !self.zone.load().same_answers(&candidate);
        if !zone_changed && decisions == self.status.decisions {
            return;
        }
        if zone_changed {
            // Stored before it is served: a crash must not let a later start reuse it. On the
            // first round, content equal to the stored content keeps the stored serial.
            let content = Fingerprint::of(&candidate);
            let now = overrides::unix_now();
            let outcome = self
                .serial
                .publish(content, now, |s| self.state.store_serial(s));
            self.serial_outcome(outcome, "stored again");
            if candidate.serial != self.serial.serial() {
                candidate = zone::build(&self.config, &decisions, self.serial.serial());
            }
        }
        let config = self.config.clone();
        for (h, hostname) in config.hostnames.iter().enumerate() {
            let new = &decisions[h];
            let old = self.status.decisions.get(h);
            if old.map(|o| (&o.nodes, o.reason)) == Some((&new.nodes, new.reason)) {
                continue;
            }
            let ids = |d: Option<&Decision>| -> Vec<String> {
                d.map(|d| {
                    d.nodes
                        .iter()
                        .map(|&n| config.nodes[n].id.clone())
                        .collect()
                })
                .unwrap_or_default()
            };
            let ips = |d: Option<&Decision>| -> Vec<IpAddr> {
                d.map(|d| {
                    d.nodes
                        .iter()
                        .flat_map(|&n| config.nodes[n].addresses.iter().copied())
                        .filter(|ip| hostname.family.allows(ip))
                        .collect()
                })
                .unwrap_or_default()
            };
            let show = |v: &[String]| {
                if v.is_empty() {
                    "(no address)".to_string()
                } else {
                    v.join(",")
                }
            };
            let (to_nodes, from_nodes) = (ids(Some(new)), ids(old));
            info!(
                hostname = %hostname.fqdn,
                answer = %show(&to_nodes),
                previous = %if first { "-".to_string() } else { show(&from_nodes) },
                reason = new.reason.describe(),
                serial = self.status.serial,
                "answer changed"
            );
            if !first && old.map(|o| &o.nodes) != Some(&new.nodes) {
                let fqdn = hostname.fqdn.to_ascii();
                self.emit(EventKind::AnswerChanged {
                    hostname: fqdn.trim_end_matches('.').to_string(),
                    from_nodes,
                    to_nodes,
                    from: ips(old),
                    to: ips(Some(new)),
                    reason: new.reason.describe().to_string(),
                    cause: causes.clone(),
                });
            }
        }
        if zone_changed {
            self.zone.store(Arc::new(candidate));
        }
        if first {
            info!(
                serial = self.status.serial,
                "first round of checks done; answering DNS"
            );
        }
        self.status.ready = true;
        self.status.decisions = decisions;
        if zone_changed {
            self.save_answers();
        }
    }

    /// Saves the answers in force, for a restart to serve before its first round.
    fn save_answers(&self) {
        let decisions = &self.status.decisions;
        if let Err(error) = saved::store(&self.state, &self.config, decisions, SystemTime::now()) {
            warn!(%error, "cannot save the answers; after a restart, hostnames get SERVFAIL until the first round of checks is done");
        }
    }
}
