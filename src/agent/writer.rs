//! The health task: the one writer. It folds probe results into pair health, decides, and
//! publishes the zone (for DNS) and the status (for everyone else); it also applies reloads.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::{Published, STATUS_PUBLISH_PERIOD};
use crate::check::schedule::Observation;
use crate::config::Config;
use crate::decide::{Decision, decide};
use crate::dns::{Zone, zone};
use crate::events::{Event, EventKind};
use crate::health::{PairHealth, State};
use crate::state_dir::{StateDir, next_serial};
use crate::status::{RECENT_EVENTS, Status};

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
    zone: Arc<ArcSwap<Zone>>,
}

impl HealthTask {
    pub(super) fn new(config: Arc<Config>, parts: Published, state: StateDir, serial: u32) -> Self {
        let Published {
            zone,
            status,
            events,
            ..
        } = parts;
        Self {
            status: Status::new(config.clone(), serial),
            status_out: status,
            status_dirty: false,
            last_status_publish: Instant::now(),
            events,
            unknown: config.pair_count(),
            causes: Vec::new(),
            state,
            zone,
            config,
        }
    }

    pub(super) async fn run(
        mut self,
        mut results: mpsc::Receiver<Observation>,
        mut reloads: mpsc::Receiver<Reconfigure>,
        shutdown: CancellationToken,
    ) {
        // The probes of a replaced configuration are stopped after their successor channel is
        // handed over; their closing channel must not end this loop.
        let mut results_open = true;
        loop {
            let flush_at = self.last_status_publish + STATUS_PUBLISH_PERIOD;
            let first = tokio::select! {
                o = results.recv(), if results_open => match o {
                    Some(o) => o,
                    None => {
                        results_open = false;
                        continue;
                    }
                },
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
                () = shutdown.cancelled() => return,
            };
            // Fold everything already waiting, then decide once.
            let mut changed = self.observe(first);
            while let Ok(more) = results.try_recv() {
                changed |= self.observe(more);
            }
            if changed && self.unknown == 0 {
                self.decide_and_publish();
            }
            if changed || Instant::now() >= flush_at {
                self.publish_status();
            }
        }
    }

    /// Switches to a new configuration. Pairs whose node and check are unchanged keep their
    /// state and history; new or changed ones start unconfirmed; removed ones disappear. The
    /// answers are republished (and the serial moved) only if they change.
    fn reconfigure(&mut self, config: Arc<Config>) {
        let old = self.config.clone();
        let mut pairs = Vec::with_capacity(config.pair_count());
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
                    self.status.pairs.get(old.pair_index(on, oc)).cloned()
                }
                _ => None,
            };
            kept += usize::from(carried.is_some());
            pairs.push(carried.unwrap_or_default());
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
        self.status.config = config.clone();
        self.status.pairs = pairs;
        self.status.decisions = decisions;
        self.config = config;
        self.causes.push("configuration reloaded".into());
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
        let down_since = (health.state == State::Down)
            .then_some(health.since)
            .flatten();
        let now = SystemTime::now();
        let transition = health.observe(result, timing.rise, timing.fall, now);
        let _ = reply.send(health.cadence());
        let Some(t) = transition else {
            return false;
        };
        let latency_ms = health
            .last_result
            .as_ref()
            .map(|r| r.latency.as_secs_f64() * 1000.0)
            .unwrap_or_default();
        if t.from == State::Unknown {
            self.unknown -= 1;
        }
        info!(
            node = %node.id,
            check = %check.id,
            from = t.from.label(),
            to = t.to.label(),
            error = t.error.as_deref().unwrap_or(""),
            latency_ms = format!("{latency_ms:.1}"),
            "check state changed"
        );
        match t.to {
            State::Down => {
                let error = t.error.unwrap_or_else(|| "failed".into());
                self.causes
                    .push(format!("{} {}: {error}", node.id, check.id));
                self.emit(EventKind::CheckDown {
                    node: node.id.clone(),
                    check: check.id.clone(),
                    error,
                });
            }
            // A pair that is simply up at start is not news.
            State::Up if t.from == State::Down => {
                self.causes.push(format!("{} {}: up", node.id, check.id));
                let down_for = down_since.and_then(|s| now.duration_since(s).ok());
                self.emit(EventKind::CheckUp {
                    node: node.id.clone(),
                    check: check.id.clone(),
                    down_for,
                });
            }
            _ => {}
        }
        true
    }

    /// Decides, and publishes a new zone if the answers changed (or on the first round). The
    /// serial moves exactly when the zone's content does.
    fn decide_and_publish(&mut self) {
        let up: Vec<bool> = self.status.pairs.iter().map(PairHealth::is_up).collect();
        let decisions = decide(&self.config, &up, &self.status.decisions);
        let first = !self.status.ready;
        let causes = std::mem::take(&mut self.causes);
        let mut candidate = zone::build(&self.config, &decisions, self.status.serial);
        let zone_changed = first || !self.zone.load().same_answers(&candidate);
        if !zone_changed && decisions == self.status.decisions {
            return;
        }
        if zone_changed && !first {
            let next = next_serial(self.status.serial);
            // Stored before it is served: a crash must not let a later start reuse it.
            if let Err(e) = self.state.store_serial(next) {
                error!(error = %e, state_dir = %self.state.path().display(), "cannot store the SOA serial; publishing the change anyway");
                let error = format!(
                    "cannot store the SOA serial in {}: {e}",
                    self.state.path().display()
                );
                self.emit(EventKind::PublishFailed { error });
            }
            self.status.serial = next;
            candidate = zone::build(&self.config, &decisions, next);
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
    }
}
