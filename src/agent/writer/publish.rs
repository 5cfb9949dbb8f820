//! From pair health to answers: the effective state of each pair (`effective`), the decision
//! (`decide`), the zone and its SOA serial (`serial::Keeper`), and the answers saved for a
//! restart. The snapshot itself is stored by the loop (`mod.rs`), once per round.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;
use tracing::{error, info, warn};

use super::Writer;
use crate::cluster::freshness;
use crate::decide::{Decision, decide};
use crate::dns::{Answers, saved, zone};
use crate::effective;
use crate::events::EventKind;
use crate::health::State;
use crate::overrides;
use crate::serial::{Claim, Fingerprint, Outcome};
use crate::status::Vote;

impl Writer {
    /// Recomputes the effective state of the dirty pairs (own state, or the vote); logs and
    /// reports every change. True if one changed.
    pub(super) fn recompute(&mut self) -> bool {
        let config = self.config.clone();
        let pairs: Vec<usize> = if self.dirty_all {
            self.dirty.clear();
            (0..config.pair_count()).collect()
        } else {
            std::mem::take(&mut self.dirty)
        };
        self.dirty_all = false;
        let (now, wall) = (Instant::now(), SystemTime::now());
        let me = config.self_id().unwrap_or_default().to_string();
        let rule = config
            .cluster
            .as_ref()
            .map(|c| effective::Rule::of(c, config.nodes.len()));
        let mut changed = false;
        for p in pairs {
            let (n, c) = config.pair(p);
            let (node, check) = (&config.nodes[n], &config.checks[c]);
            let own = &self.status.pairs[p];
            let votes = match &config.cluster {
                None => Vec::new(),
                Some(cluster) => {
                    let age = own
                        .last_checked
                        .and_then(|t| wall.duration_since(t).ok())
                        .unwrap_or_default();
                    let key = (node.id.clone(), check.id.clone());
                    let theirs = self
                        .peers
                        .iter()
                        .filter_map(|(agent, view)| {
                            let vote = view.votes.get(&key)?;
                            Some(Vote {
                                agent: agent.clone(),
                                up: vote.up,
                                age: now.duration_since(vote.observed_at),
                                error: vote.error.clone(),
                            })
                        })
                        .collect();
                    let fresh = freshness(&check.timing, cluster.period);
                    effective::counted(effective::own_vote(&me, own, age), theirs, fresh)
                }
            };
            let previous = self.status.effective[p].state;
            let state = effective::state(rule, own.state, previous, &votes);
            let split = effective::split(&votes);
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
            let error =
                (state == State::Down).then(|| effective::fall_error(own, &effective.votes));
            let latency_ms = own
                .last_result
                .as_ref()
                .map(|r| r.latency.as_secs_f64() * 1000.0)
                .unwrap_or_default();
            // Left out of the line when there is nothing to say (no error, no cluster).
            let tally_text = config.cluster.as_ref().map(|_| {
                let up = effective.votes.iter().filter(|v| v.up).count();
                match rule.and_then(|r| r.of_all) {
                    Some(agents) => format!("{up}/{} up of {agents} agents", effective.votes.len()),
                    None => format!("{up}/{} up", effective.votes.len()),
                }
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
        let since = now.duration_since(self.split_changed);
        if let Some(cluster) = &config.cluster
            && effective::pull_sooner(self.split_count, since, cluster.period)
        {
            self.pull_now.notify_one();
        }
        changed
    }

    /// Notes what a serial store did: the status follows the keeper; a failure is reported
    /// once per streak (it is retried every aging tick), and its end too.
    pub(super) fn serial_outcome(&mut self, outcome: Outcome, recovered: &str) {
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
    pub(super) fn follow_peer_serials(&mut self, tick: bool) {
        let Some(cluster) = &self.config.cluster else {
            return;
        };
        if !self.status.ready || self.unknown > 0 || (self.serial_failing && !tick) {
            return;
        }
        let now = Instant::now();
        let claims: Vec<Claim> = self
            .peers
            .values()
            .filter(|v| {
                effective::reachable(v.last_ok.map(|t| now.duration_since(t)), cluster.period)
            })
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
    pub(super) fn republish_serial(&mut self, before: u32) {
        let serial = self.serial.serial();
        if serial == before || !self.status.ready || self.unknown > 0 {
            return;
        }
        let zone = zone::build(&self.config, &self.status.decisions, serial);
        self.answers = Arc::new(Answers::new(zone));
        self.publish_status();
    }

    /// Decides, and publishes a new zone if the answers changed (or on the first round). The
    /// serial moves exactly when the zone's content does.
    pub(super) fn decide_and_publish(&mut self) {
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
        let zone_changed = first || !self.answers.zone().same_answers(&candidate);
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
                    reason: new.reason,
                    cause: causes.clone(),
                });
            }
        }
        // Published with the status by the caller, in one snapshot.
        if zone_changed {
            self.answers = Arc::new(Answers::new(candidate));
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
    pub(super) fn save_answers(&self) {
        let decisions = &self.status.decisions;
        if let Err(error) = saved::store(&self.state, &self.config, decisions, SystemTime::now()) {
            warn!(%error, "cannot save the answers; after a restart, hostnames get SERVFAIL until the first round of checks is done");
        }
    }
}
