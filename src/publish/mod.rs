//! Publishing into DNS servers the site already runs (RFC 2136): keeps `<hostname>.<zone>` on
//! every `publish.servers` entry equal to what the embedded server answers.
//!
//! A reader of the published state: it loads the zone and the status (never waits on the
//! writer) and, per server, sends one UPDATE per name whose A/AAAA RRsets differ from the answer
//! (delete both RRsets, add the addresses: applied atomically). Only the agent that sends the
//! cluster's notifications (`Status::notifying`) sends updates; every agent reads the records
//! back every `publish.verify_interval`, and the sender puts drift right. A failed update is
//! retried with backoff and reported once per failure as a `publish_failed` event, through the
//! writer (`Command::PublishFailed`).

pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Name, RData, RecordType, TSigner};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::command::Command;
use crate::config::{Config, PublishConfig};
use crate::dns::Zone;
use crate::events::Event;
use crate::status::Status;
use wire::{Addresses, Failure};

/// How often the published state is looked at for a change (an `Arc` comparison), besides
/// being woken by events.
const POLL: Duration = Duration::from_millis(100);
/// Failed attempts in a row before a failure is reported: one lost datagram or one slow answer
/// is retried (after the first backoff) before anyone is told.
const REPORT_AFTER: u32 = 2;
/// First and longest wait before a failed update is tried again.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(10));

/// What the publisher did, for `/metrics` and the measurements.
#[derive(Debug, Default)]
pub struct PublishCounters {
    /// UPDATE messages answered NOERROR.
    pub updates: AtomicU64,
    /// UPDATE messages that failed (timeout, refusal, bad answer).
    pub update_failures: AtomicU64,
    /// Read-back queries sent.
    pub queries: AtomicU64,
    /// Names found different from the answer by a read-back (someone else's change, a server
    /// that lost an update).
    pub drift: AtomicU64,
}

/// The parts of the published state the publisher reads, and where it reports.
#[derive(Clone)]
pub struct Handles {
    pub zone: Arc<ArcSwap<Zone>>,
    pub status: Arc<ArcSwap<Status>>,
    pub commands: mpsc::Sender<Command>,
    pub counters: Arc<PublishCounters>,
    /// Wakes the publisher at once when something happened (an answer changed); it also
    /// looks every `POLL`, so a missed or lagging event only delays, never loses, a change.
    pub events: broadcast::Sender<Arc<Event>>,
}

/// Reads the key now (at start): a missing or bad secret stops the agent with the reason.
pub fn signer(config: &Config) -> Result<Option<TSigner>, crate::config::ConfigError> {
    match config.publish.as_ref().and_then(|p| p.tsig.as_ref()) {
        Some(key) => Ok(Some(key.signer()?)),
        None => Ok(None),
    }
}

/// Runs until `shutdown`: one task per configured server, following reloads.
pub async fn run(signer: Option<TSigner>, handles: Handles, shutdown: CancellationToken) {
    let mut running: HashMap<SocketAddr, CancellationToken> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let servers: Vec<SocketAddr> = handles
            .status
            .load()
            .config
            .publish
            .as_ref()
            .map(|p| p.servers.clone())
            .unwrap_or_default();
        running.retain(|server, stop| {
            let keep = servers.contains(server);
            if !keep {
                info!(%server, "no longer in publish.servers; not updated any more");
                stop.cancel();
            }
            keep
        });
        for server in servers {
            if running.contains_key(&server) {
                continue;
            }
            let stop = shutdown.child_token();
            running.insert(server, stop.clone());
            let publisher = ServerPublisher::new(server, signer.clone(), handles.clone());
            tasks.spawn(publisher.run(stop));
        }
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                warn!(error = %e, "a publishing task failed");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    tasks.shutdown().await;
}

/// The addresses every name should have, from the zone the embedded server answers with;
/// `None` before the first round of checks (nothing is published from a guess).
pub fn desired(
    config: &Config,
    publish: &PublishConfig,
    zone: &Zone,
) -> Option<Vec<(Name, Addresses)>> {
    if !zone.ready {
        return None;
    }
    let ttl = publish.ttl.as_secs() as u32;
    let mut out = Vec::new();
    for hostname in &config.hostnames {
        let Some(records) = zone.names.get(&LowerName::from(&hostname.fqdn)) else {
            out.push((hostname.fqdn.clone(), Addresses::default()));
            continue;
        };
        if records.pending {
            continue;
        }
        let ips = records
            .a
            .iter()
            .chain(&records.aaaa)
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(std::net::IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(std::net::IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect();
        out.push((hostname.fqdn.clone(), Addresses::new(ips, ttl)));
    }
    Some(out)
}

/// Whether this agent writes: it sends the cluster's notifications, and (in a cluster) it has
/// heard from the others or waited the three pull periods after which a silent agent counts as
/// unreachable. Until then every agent believes it is the lowest reachable one, so without the
/// wait each would write at start.
fn sends(status: &Status) -> bool {
    let Some(cluster) = &status.config.cluster else {
        return status.notifying;
    };
    let heard = status.peers.iter().any(|p| p.last_seen.is_some());
    let waited = status
        .started_at
        .elapsed()
        .is_ok_and(|e| e >= cluster.period * 3);
    status.notifying && (heard || waited)
}

/// The publishing of one server.
struct ServerPublisher {
    server: SocketAddr,
    signer: Option<TSigner>,
    handles: Handles,
    /// What the server holds, as far as this agent knows (from its updates and read-backs).
    known: HashMap<Name, Addresses>,
    /// Names that differ on the server and are not ours to correct (this agent does not send).
    differing: Vec<Name>,
    next_verify: Instant,
    backoff: Option<Duration>,
    retry_at: Option<Instant>,
    /// Failed attempts since the last success.
    failures: u32,
    /// The failure last reported, so a retry failing the same way is not reported again.
    reported: Option<String>,
    /// Why the last read-back failed, logged once per cause.
    read_error: Option<String>,
}

impl ServerPublisher {
    fn new(server: SocketAddr, signer: Option<TSigner>, handles: Handles) -> Self {
        Self {
            server,
            signer,
            handles,
            known: HashMap::new(),
            differing: Vec::new(),
            next_verify: Instant::now(),
            backoff: None,
            retry_at: None,
            failures: 0,
            reported: None,
            read_error: None,
        }
    }

    async fn run(mut self, stop: CancellationToken) {
        let mut seen: Option<(usize, usize)> = None;
        let mut events = self.handles.events.subscribe();
        loop {
            let status = self.handles.status.load_full();
            let zone = self.handles.zone.load_full();
            let Some(publish) = status.config.publish.clone() else {
                return;
            };
            let now = Instant::now();
            // Compared by address only: a new value was stored.
            let current = (Arc::as_ptr(&zone) as usize, Arc::as_ptr(&status) as usize);
            let changed = seen != Some(current);
            let due = now >= self.next_verify || self.retry_at.is_some_and(|t| now >= t);
            if changed || due {
                seen = Some(current);
                if let Some(desired) = desired(&status.config, &publish, &zone) {
                    self.round(&publish, &desired, sends(&status), changed)
                        .await;
                }
            }
            let wake = self
                .retry_at
                .map_or(self.next_verify, |r| r.min(self.next_verify))
                .min(Instant::now() + POLL);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(wake) => {}
                // An event is emitted as the zone is swapped: look again now (a lagged or
                // closed channel is the same as a wake-up; `POLL` bounds the rest).
                _ = events.recv() => {
                    // The writer emits the event just before it stores the zone (two values
                    // stored apart, issue 14): give it that moment.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }

    /// Reads back when due, then (as the sender) brings every differing name up to date.
    async fn round(
        &mut self,
        publish: &PublishConfig,
        desired: &[(Name, Addresses)],
        sender: bool,
        changed: bool,
    ) {
        let now = Instant::now();
        if now >= self.next_verify {
            self.next_verify = now + publish.verify_interval;
            self.read_back(publish, desired, sender).await;
        }
        if !sender {
            return;
        }
        // A change of the answers is tried at once; a failure again only after the backoff.
        if !changed && self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        for (name, addresses) in desired {
            if self.known.get(name) == Some(addresses) {
                continue;
            }
            let message = wire::replace_addresses(&publish.zone, name, addresses);
            let started = Instant::now();
            match wire::exchange(self.server, message, self.signer.as_ref(), publish.timeout).await
            {
                Ok(_) => {
                    self.handles
                        .counters
                        .updates
                        .fetch_add(1, Ordering::Relaxed);
                    info!(server = %self.server, name = %name, addresses = %addresses.describe(),
                        took_ms = started.elapsed().as_millis() as u64, "published by dynamic update");
                    self.known.insert(name.clone(), addresses.clone());
                }
                Err(failure) => {
                    self.handles
                        .counters
                        .update_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.failed(publish, name, &failure);
                    return;
                }
            }
        }
        if let Some(error) = self.reported.take() {
            info!(server = %self.server, previous_error = %error, "dynamic updates work again; the server is up to date");
        }
        self.backoff = None;
        self.retry_at = None;
        self.failures = 0;
    }

    fn failed(&mut self, publish: &PublishConfig, name: &Name, failure: &Failure) {
        let backoff = self.backoff.map_or(BACKOFF.0, |b| (b * 2).min(BACKOFF.1));
        self.backoff = Some(backoff);
        self.retry_at = Some(Instant::now() + backoff);
        self.failures += 1;
        let zone = publish.zone.to_ascii();
        let why = failure.explain(&publish.zone, self.signer.as_ref());
        let error = format!(
            "dynamic update of {} on {} (zone {}) failed: {why}; retrying",
            name.to_ascii().trim_end_matches('.'),
            self.server,
            zone.trim_end_matches('.'),
        );
        // Reported once per failure, from the second attempt in a row; the retries that fail
        // the same way stay quiet (debug).
        if self.failures < REPORT_AFTER || self.reported.as_deref() == Some(why.as_str()) {
            debug!(server = %self.server, name = %name, error = %why, retry_in_ms = backoff.as_millis() as u64, "dynamic update still failing");
            return;
        }
        warn!(server = %self.server, name = %name, zone = %publish.zone, error = %why, retry_in_ms = backoff.as_millis() as u64, "dynamic update failed");
        self.reported = Some(why);
        let _ = self
            .handles
            .commands
            .try_send(Command::PublishFailed { error });
    }

    /// Queries A and AAAA of every name; what the server holds replaces what was assumed.
    async fn read_back(
        &mut self,
        publish: &PublishConfig,
        desired: &[(Name, Addresses)],
        sender: bool,
    ) {
        let mut differing = Vec::new();
        for (name, wanted) in desired {
            let mut ips = Vec::new();
            let mut ttl: Option<u32> = None;
            for kind in [RecordType::A, RecordType::AAAA] {
                self.handles
                    .counters
                    .queries
                    .fetch_add(1, Ordering::Relaxed);
                let answer = match wire::exchange(
                    self.server,
                    wire::query(name, kind),
                    None,
                    publish.timeout,
                )
                .await
                {
                    Ok(answer) => answer,
                    Err(failure) => {
                        // An unreachable server is reported by the update path; a server that
                        // refuses our queries is logged once (others' changes go unseen).
                        let why = failure.explain(&publish.zone, None);
                        if self.read_error.as_deref() != Some(why.as_str()) {
                            warn!(server = %self.server, name = %name, error = %why,
                                "cannot read the records back; changes made by others are not seen until it works");
                            self.read_error = Some(why);
                        }
                        return;
                    }
                };
                let (found, found_ttl) = wire::addresses_in(&answer, name);
                ips.extend(found);
                if let Some(t) = found_ttl {
                    ttl = Some(ttl.map_or(t, |old| old.min(t)));
                }
            }
            let held = Addresses::new(ips, ttl.unwrap_or(0));
            if held != *wanted {
                differing.push(name.clone());
                // After an update was confirmed, a difference is someone else's change.
                if self.known.get(name) == Some(wanted) {
                    self.handles.counters.drift.fetch_add(1, Ordering::Relaxed);
                    warn!(server = %self.server, name = %name, found = %held.describe(), wanted = %wanted.describe(),
                        "the records on the server were changed by someone else; putting them right");
                }
            }
            self.known.insert(name.clone(), held);
        }
        if let Some(why) = self.read_error.take() {
            info!(server = %self.server, previous_error = %why, "reading the records back works again");
        }
        if !sender && differing != self.differing && !differing.is_empty() {
            let names: Vec<String> = differing.iter().map(|n| n.to_ascii()).collect();
            info!(server = %self.server, names = %names.join(", "),
                "records on the server differ from this agent's answers; the agent that sends notifications updates them");
        }
        self.differing = differing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Decision, Reason};
    use crate::status::PeerStatus;

    const YAML: &str = "zone: app.example.com\nself: n1\ndns: { serve: false, ttl: 7s }\n\
        nodes:\n  - { id: n1, addresses: [192.0.2.1, \"2001:db8::1\"] }\n  - { id: n2, address: 192.0.2.2 }\n\
        checks:\n  - { id: web, type: http, url: \"http://{address}/\" }\n\
        hostnames:\n  - { name: www, checks: [web] }\n  - { name: none, checks: [web], when_all_down: none }\n\
        publish: { servers: [\"192.0.2.53\"], zone: example.com, ttl: 20s }\n";

    fn config(extra: &str) -> Arc<Config> {
        let text = format!("{YAML}{extra}");
        Arc::new(crate::config::parse(std::path::Path::new("t.yaml"), &text).unwrap())
    }

    #[test]
    fn desired_is_what_the_embedded_server_answers_with_the_publish_ttl() {
        let config = config("");
        let publish = config.publish.clone().unwrap();
        let decisions = [
            Decision {
                nodes: vec![0],
                reason: Reason::Healthy,
            },
            Decision {
                nodes: vec![],
                reason: Reason::AllDownEmpty,
            },
        ];
        let zone = crate::dns::zone::build(&config, &decisions, 1);
        let wanted = desired(&config, &publish, &zone).unwrap();
        assert_eq!(wanted.len(), 2);
        assert_eq!(wanted[0].0.to_ascii(), "www.app.example.com.");
        assert_eq!(
            wanted[0].1,
            Addresses::new(
                vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
                20
            )
        );
        // No address: both RRsets are deleted on the server.
        assert_eq!(wanted[1].1, Addresses::default());
        // Nothing before the first round.
        let not_ready = Zone::not_ready(&config, 1, &[]);
        assert!(desired(&config, &publish, &not_ready).is_none());
    }

    #[test]
    fn in_a_cluster_the_notifier_writes_once_it_has_heard_the_others() {
        let alone = Status::new(config(""), 1);
        assert!(sends(&alone), "without a cluster the agent always writes");
        let cluster = config("cluster: { listen: \"192.0.2.1:8053\", period: 60s }\n");
        let mut status = Status::new(cluster, 1);
        assert!(status.notifying);
        assert!(
            !sends(&status),
            "not before a peer was heard or 3 periods passed"
        );
        status.peers = vec![PeerStatus {
            agent: "n2".into(),
            address: "192.0.2.2:8053".parse().unwrap(),
            reachable: true,
            last_seen: Some(std::time::SystemTime::now()),
            error: None,
        }];
        assert!(sends(&status));
        status.notifying = false;
        assert!(!sends(&status), "the others only check");
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let mut b = None;
        let mut seen = Vec::new();
        for _ in 0..8 {
            let next = b.map_or(BACKOFF.0, |b: Duration| (b * 2).min(BACKOFF.1));
            seen.push(next.as_millis());
            b = Some(next);
        }
        assert_eq!(seen, [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
    }
}
