//! Wiring of one agent: `build` binds and prepares everything, `run` serves until shutdown.
//!
//! ```text
//! probe tasks ──Observation──► health task (the one writer) ──decide()──► Zone ──ArcSwap──► DNS
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::check::schedule::{Observation, run_pair};
use crate::check::{HttpClients, Probe};
use crate::config::Config;
use crate::decide::{Decision, decide};
use crate::dns::{DnsSockets, Zone, zone};
use crate::health::{PairHealth, State};
use crate::state_dir::{StateDir, next_serial};

/// How long shutdown waits for in-flight work before giving up on it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    #[error("check {check} on node {node}: {message}")]
    Probe {
        node: String,
        check: String,
        message: String,
    },
    #[error("the DNS server stopped: {0}")]
    Dns(String),
}

/// An agent that has bound its sockets and is ready to run.
pub struct Agent {
    config: Arc<Config>,
    sockets: DnsSockets,
    state: StateDir,
    /// Serial of the first answers this run publishes (stored serial + 1).
    serial: u32,
    probes: Vec<Probe>,
    zone: Arc<ArcSwap<Zone>>,
}

impl Agent {
    /// Prepares everything that can fail before serving: state directory, probes, sockets.
    pub fn build(config: Config, state_dir: &Path) -> Result<Self, AgentError> {
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
        let zone = Arc::new(ArcSwap::from_pointee(Zone::not_ready(&config)));
        Ok(Self {
            config: Arc::new(config),
            sockets,
            state,
            serial,
            probes,
            zone,
        })
    }

    /// The DNS addresses really bound (with the ports chosen when 0 was configured).
    pub fn dns_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.local_addrs()
    }

    /// The zone as DNS serves it now, for in-process readers.
    pub fn zone(&self) -> Arc<ArcSwap<Zone>> {
        self.zone.clone()
    }

    /// Serves DNS and runs the checks until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let Agent {
            config,
            sockets,
            state,
            serial,
            probes,
            zone,
        } = self;
        let addrs = sockets.local_addrs();
        let mut server = sockets.serve(zone.clone());
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

        let health = HealthTask::new(config.clone(), state, serial, zone);
        let outcome = tokio::select! {
            () = health.run(rx, shutdown.clone()) => Ok(()),
            result = &mut server_task => {
                let message = match result {
                    Ok(Ok(())) => "all DNS sockets closed".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                error!(%message, "DNS server stopped; shutting down");
                Err(AgentError::Dns(message))
            }
        };

        shutdown.cancel();
        server_token.cancel();
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while probe_tasks.join_next().await.is_some() {}
            if !server_task.is_finished() {
                let _ = server_task.await;
            }
        })
        .await;
        if drained.is_err() {
            warn!(grace = ?SHUTDOWN_GRACE, "shutdown grace period over; abandoning unfinished tasks");
        }
        info!("agent stopped");
        outcome
    }
}

/// The one writer: folds probe results into pair health, decides, publishes the zone.
struct HealthTask {
    config: Arc<Config>,
    pairs: Vec<PairHealth>,
    /// Pairs still waiting for their first result; DNS answers once this reaches 0.
    unknown: usize,
    decisions: Vec<Decision>,
    serial: u32,
    state: StateDir,
    zone: Arc<ArcSwap<Zone>>,
}

impl HealthTask {
    fn new(config: Arc<Config>, state: StateDir, serial: u32, zone: Arc<ArcSwap<Zone>>) -> Self {
        let count = config.pair_count();
        Self {
            pairs: vec![PairHealth::new(); count],
            unknown: count,
            decisions: Vec::new(),
            serial,
            state,
            zone,
            config,
        }
    }

    async fn run(mut self, mut results: mpsc::Receiver<Observation>, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                o = results.recv() => match o { Some(o) => o, None => return },
                () = shutdown.cancelled() => return,
            };
            // Fold everything already waiting, then decide once.
            let mut changed = self.observe(first);
            while let Ok(more) = results.try_recv() {
                changed |= self.observe(more);
            }
            if changed && self.unknown == 0 {
                self.publish();
            }
        }
    }

    /// Applies one result; true if a pair's confirmed state changed.
    fn observe(&mut self, observation: Observation) -> bool {
        let Observation {
            pair,
            result,
            reply,
        } = observation;
        let (n, c) = self.config.pair(pair);
        let (node, check) = (&self.config.nodes[n], &self.config.checks[c]);
        if let Some(error) = &result.error {
            tracing::debug!(node = %node.id, check = %check.id, %error, "probe failed");
        }
        let timing = check.timing;
        let health = &mut self.pairs[pair];
        let transition = health.observe(result, timing.rise, timing.fall, SystemTime::now());
        let _ = reply.send(health.cadence());
        let Some(t) = transition else {
            return false;
        };
        if t.from == State::Unknown {
            self.unknown -= 1;
        }
        let latency_ms = health
            .last_result
            .as_ref()
            .map(|r| r.latency.as_secs_f64() * 1000.0)
            .unwrap_or_default();
        info!(
            node = %node.id,
            check = %check.id,
            from = t.from.label(),
            to = t.to.label(),
            error = t.error.as_deref().unwrap_or(""),
            latency_ms = format!("{latency_ms:.1}"),
            "check state changed"
        );
        true
    }

    /// Decides, and publishes a new zone if the answers changed (or on the first round).
    fn publish(&mut self) {
        let up: Vec<bool> = self.pairs.iter().map(PairHealth::is_up).collect();
        let decisions = decide(&self.config, &up, &self.decisions);
        let first = self.decisions.is_empty();
        if !first && decisions == self.decisions {
            return;
        }
        if !first {
            let next = next_serial(self.serial);
            // Stored before it is served: a crash must not let a later start reuse it.
            if let Err(e) = self.state.store_serial(next) {
                error!(error = %e, state_dir = %self.state.path().display(), "cannot store the SOA serial; publishing the change anyway");
            }
            self.serial = next;
        }
        for (h, hostname) in self.config.hostnames.iter().enumerate() {
            let new = &decisions[h];
            let old = self.decisions.get(h);
            if old.map(|o| &o.nodes) == Some(&new.nodes)
                && old.map(|o| o.reason) == Some(new.reason)
            {
                continue;
            }
            let names = |d: Option<&Decision>| match d {
                None => "-".to_string(),
                Some(d) if d.nodes.is_empty() => "(no address)".to_string(),
                Some(d) => d
                    .nodes
                    .iter()
                    .map(|&n| self.config.nodes[n].id.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            };
            info!(
                hostname = %hostname.fqdn,
                answer = %names(Some(new)),
                previous = %names(old),
                reason = new.reason.describe(),
                serial = self.serial,
                "answer changed"
            );
        }
        self.zone
            .store(Arc::new(zone::build(&self.config, &decisions, self.serial)));
        if first {
            info!(
                serial = self.serial,
                "first round of checks done; answering DNS"
            );
        }
        self.decisions = decisions;
    }
}
