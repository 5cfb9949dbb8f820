//! Wiring of one agent: `build` binds and prepares everything, `run` serves until shutdown.
//!
//! ```text
//! probe tasks ──Observation──► health task (the one writer) ──decide()──► Zone ──ArcSwap──► DNS
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::check::schedule::{Observation, run_pair};
use crate::check::{HttpClients, Probe};
use crate::config::{Config, ConfigError};
use crate::dashboard::{Dashboard, NotifyCounters};
use crate::decide::{Decision, decide};
use crate::dns::{DnsSockets, QueryCounters, Zone, zone};
use crate::events::{Event, EventKind};
use crate::health::{PairHealth, State};
use crate::notify::Notifier;
use crate::state_dir::{StateDir, next_serial};
use crate::status::{RECENT_EVENTS, Status};

/// How long shutdown waits for in-flight work before giving up on it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown waits for queued notifications to go out: brief, a stop must stay quick.
const NOTIFY_FLUSH_GRACE: Duration = Duration::from_secs(3);
/// How often the status view (latencies, last results) is republished at most, when only
/// results changed and no state did. State changes are published at once.
const STATUS_PUBLISH_PERIOD: Duration = Duration::from_millis(250);
/// Events kept for a notifier that falls behind.
const EVENT_BACKLOG: usize = 1024;

/// What the agent publishes for readers; cheap to clone, never blocks the writer.
#[derive(Clone)]
pub struct Published {
    pub config: Arc<Config>,
    /// What DNS serves.
    pub zone: Arc<ArcSwap<Zone>>,
    /// What the dashboard, API and notifiers read.
    pub status: Arc<ArcSwap<Status>>,
    /// State changes as they happen; `subscribe()` to receive them.
    pub events: broadcast::Sender<Arc<Event>>,
    /// DNS responses by code, counted by the DNS handler, read by `/metrics`.
    pub dns_queries: Arc<QueryCounters>,
    /// Notifications sent and failed, counted by the notifier, read by `/metrics`.
    pub notifications: Arc<NotifyCounters>,
}

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "state directory {dir}: {message} (create it with write access for this user, or pass --state-dir DIR)"
    )]
    StateDir { dir: String, message: String },
    #[error(
        "cannot listen for DNS on {addr}: {source} (is another DNS server on this port? ports below 1024 need CAP_NET_BIND_SERVICE)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "cannot listen for the dashboard on {addr}: {source} (set dashboard.listen to a free loopback address such as 127.0.0.1:8081; ports below 1024 need CAP_NET_BIND_SERVICE)"
    )]
    DashboardBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("check {check} on node {node}: {message}")]
    Probe {
        node: String,
        check: String,
        message: String,
    },
    #[error("the DNS server stopped: {0}")]
    Dns(String),
    /// A notification channel cannot be set up (a password variable not set, say): a
    /// configuration problem, located in the file.
    #[error("{0}")]
    Notify(ConfigError),
}

/// An agent that has bound its sockets and is ready to run.
pub struct Agent {
    config: Arc<Config>,
    sockets: DnsSockets,
    state: StateDir,
    /// Serial of the first answers this run publishes (stored serial + 1).
    serial: u32,
    probes: Vec<Probe>,
    published: Published,
    dashboard: Dashboard,
    /// The notification channels and their subscription, taken before any event is emitted.
    notifier: Option<(Notifier, broadcast::Receiver<Arc<Event>>)>,
}

impl Agent {
    /// Prepares everything that can fail before serving: state directory, probes, sockets.
    pub fn build(config: Config, state_dir: &Path) -> Result<Self, AgentError> {
        // First: a missing SMTP password is a configuration error, reported before anything else.
        let notifier = Notifier::build(&config).map_err(AgentError::Notify)?;
        let state_error = |message: String| AgentError::StateDir {
            dir: state_dir.display().to_string(),
            message,
        };
        let state = StateDir::open(state_dir).map_err(|e| state_error(e.to_string()))?;
        let stored = state.load_serial().map_err(state_error)?;
        // A fresh state directory starts from the clock, so a lost directory still never goes back.
        let serial = match stored {
            Some(s) => next_serial(s),
            None => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(1),
        };
        state
            .store_serial(serial)
            .map_err(|e| state_error(format!("cannot write the serial: {e}")))?;

        let clients = HttpClients::new().map_err(|message| AgentError::Probe {
            node: "-".into(),
            check: "-".into(),
            message,
        })?;
        let mut probes = Vec::with_capacity(config.pair_count());
        for pair in 0..config.pair_count() {
            let (n, c) = config.pair(pair);
            let probe =
                Probe::new(&config.nodes[n], &config.checks[c], &clients).map_err(|message| {
                    AgentError::Probe {
                        node: config.nodes[n].id.clone(),
                        check: config.checks[c].id.clone(),
                        message,
                    }
                })?;
            probes.push(probe);
        }

        let sockets = DnsSockets::bind(&config.dns.listen)
            .map_err(|(addr, source)| AgentError::Bind { addr, source })?;
        let config = Arc::new(config);
        let published = Published {
            zone: Arc::new(ArcSwap::from_pointee(Zone::not_ready(&config))),
            status: Arc::new(ArcSwap::from_pointee(Status::new(config.clone(), serial))),
            events: broadcast::channel(EVENT_BACKLOG).0,
            dns_queries: Arc::default(),
            notifications: Arc::default(),
            config: config.clone(),
        };
        let dashboard =
            Dashboard::bind(&config.dashboard, published.clone()).map_err(|source| {
                AgentError::DashboardBind {
                    addr: config.dashboard.listen,
                    source,
                }
            })?;
        Ok(Self {
            config,
            sockets,
            state,
            serial,
            probes,
            notifier: notifier.map(|n| (n, published.events.subscribe())),
            published,
            dashboard,
        })
    }

    /// The dashboard address really bound (with the port chosen when 0 was configured).
    pub fn dashboard_addr(&self) -> SocketAddr {
        self.dashboard.local_addr()
    }

    /// The DNS addresses really bound (with the ports chosen when 0 was configured).
    pub fn dns_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.local_addrs()
    }

    /// What the agent publishes (zone, status, events), for in-process readers.
    pub fn published(&self) -> Published {
        self.published.clone()
    }

    /// Serves DNS and runs the checks until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let Agent {
            config,
            sockets,
            state,
            serial,
            probes,
            published,
            dashboard,
            notifier,
        } = self;
        let addrs = sockets.local_addrs();
        let mut server = sockets.serve(published.zone.clone(), published.dns_queries.clone());
        let server_token = server.shutdown_token().clone();
        let mut server_task = tokio::spawn(async move { server.block_until_done().await });
        info!(
            zone = %config.zone,
            dns = ?addrs,
            pairs = config.pair_count(),
            serial,
            state_dir = %state.path().display(),
            "agent started; answering SERVFAIL until the first round of checks is done"
        );

        let (tx, rx) = mpsc::channel(config.pair_count().clamp(16, 65_536));
        let mut probe_tasks = JoinSet::new();
        for (pair, probe) in probes.into_iter().enumerate() {
            let (_, c) = config.pair(pair);
            probe_tasks.spawn(run_pair(
                pair,
                probe,
                config.checks[c].timing,
                tx.clone(),
                shutdown.clone(),
            ));
        }
        drop(tx);
        let dashboard_task = tokio::spawn(dashboard.serve(shutdown.clone()));

        // Before the health task: it must not emit an event nobody is subscribed to yet.
        let mut notify_task = notifier.map(|(notifier, events)| {
            notifier.start(
                config.clone(),
                events,
                published.status.clone(),
                published.notifications.clone(),
                shutdown.clone(),
            )
        });
        let events = published.events.clone();

        let health = HealthTask::new(published, state, serial);
        let outcome = tokio::select! {
            () = health.run(rx, shutdown.clone()) => Ok(()),
            result = &mut server_task => {
                let message = match result {
                    Ok(Ok(())) => "all DNS sockets closed".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                error!(%message, "DNS server stopped; shutting down");
                // Operators hear of it by mail too: the agent no longer answers for the zone.
                let _ = events.send(Arc::new(Event::now(EventKind::PublishFailed {
                    error: format!("the DNS server stopped ({message}); this agent no longer answers and is shutting down"),
                })));
                Err(AgentError::Dns(message))
            }
        };

        shutdown.cancel();
        server_token.cancel();
        let notify_deadline = Instant::now() + NOTIFY_FLUSH_GRACE;
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while probe_tasks.join_next().await.is_some() {}
            if !server_task.is_finished() {
                let _ = server_task.await;
            }
            match dashboard_task.await {
                Ok(Err(e)) => warn!(error = %e, "the dashboard stopped with an error"),
                Err(e) => warn!(error = %e, "the dashboard task failed"),
                Ok(Ok(())) => {}
            }
        })
        .await;
        if drained.is_err() {
            warn!(grace = ?SHUTDOWN_GRACE, "shutdown grace period over; abandoning unfinished tasks");
        }
        if let Some(task) = notify_task.as_mut()
            && tokio::time::timeout_at(notify_deadline, task)
                .await
                .is_err()
        {
            warn!(grace = ?NOTIFY_FLUSH_GRACE, "notifications still queued at shutdown were not sent");
        }
        if let Some(task) = notify_task {
            task.abort();
        }
        info!("agent stopped");
        outcome
    }
}

/// The one writer: folds probe results into pair health, decides, publishes zone and status.
struct HealthTask {
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
    fn new(parts: Published, state: StateDir, serial: u32) -> Self {
        let Published {
            config,
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

    async fn run(mut self, mut results: mpsc::Receiver<Observation>, shutdown: CancellationToken) {
        loop {
            let flush_at = self.last_status_publish + STATUS_PUBLISH_PERIOD;
            let first = tokio::select! {
                o = results.recv() => match o { Some(o) => o, None => return },
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

    /// Decides, and publishes a new zone if the answers changed (or on the first round).
    fn decide_and_publish(&mut self) {
        let up: Vec<bool> = self.status.pairs.iter().map(PairHealth::is_up).collect();
        let decisions = decide(&self.config, &up, &self.status.decisions);
        let first = !self.status.ready;
        let causes = std::mem::take(&mut self.causes);
        if !first && decisions == self.status.decisions {
            return;
        }
        if !first {
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
        self.zone.store(Arc::new(zone::build(
            &self.config,
            &decisions,
            self.status.serial,
        )));
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
