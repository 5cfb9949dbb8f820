//! Wiring of one agent: `build` binds and prepares everything, `run` serves until shutdown and
//! applies reloads.
//!
//! ```text
//! probe tasks ──PairResult──► writer (agent/writer/) ──► Snapshot { answers, status } ──► DNS,
//!                                    one ArcSwap store, then the events ──►   dashboard, notifier,
//!                                                                             peers, history
//! ```

mod reload;
mod secondaries;
mod tasks;
mod writer;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::check::schedule::{Nudges, PairResult, run_pair};
use crate::check::{HttpClients, Probe};
use crate::cluster::auth::Secret;
use crate::cluster::pull;
use crate::cluster::server::{PeerContext, PeerServer};
use crate::command::Command;
use crate::config::{self, Config, ConfigError};
use crate::connections::Limits;
use crate::dashboard::Dashboard;
use crate::dns::{Answers, DnsSockets, Zone, saved};
use crate::events::{Event, EventKind};
use crate::health::PairHealth;
use crate::notify::Notifier;
use crate::overrides::Overrides;
use crate::published::Published;
use crate::serial::{Keeper, Stored};
use crate::snapshot::Snapshot;
use crate::state_dir::StateDir;
use crate::status::Status;
pub use tasks::TaskFailure;
use tasks::Tasks;
use writer::{Reconfigure, Writer, carried_pairs};

/// How long shutdown waits for in-flight work before giving up on it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown waits for queued notifications to go out: brief, a stop must stay quick.
const NOTIFY_FLUSH_GRACE: Duration = Duration::from_secs(3);
/// How often the status view (latencies, last results) is republished at most, when only
/// results changed and no state did. State changes are published at once.
pub(crate) const STATUS_PUBLISH_PERIOD: Duration = Duration::from_millis(250);
/// Events kept for a notifier that falls behind.
const EVENT_BACKLOG: usize = 1024;

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
        "cannot start the thread that answers DNS over UDP: {source} (the system is out of threads or memory)"
    )]
    DnsThread { source: std::io::Error },
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
    #[error("{0}")]
    ClusterSecret(String),
    #[error(
        "cannot listen for the other agents on {addr}: {source} (set cluster.listen to a free address:port reachable by the other nodes)"
    )]
    ClusterBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the DNS server stopped: {0}")]
    Dns(String),
    /// A task that must run as long as the agent panicked, failed or stopped.
    #[error(
        "the {} task failed: {}; the agent stops so that its supervisor (systemd Restart=on-failure) starts it again",
        .0.task,
        .0.why
    )]
    Task(TaskFailure),
    /// A notification channel cannot be set up (a password variable not set, say): a
    /// configuration problem, located in the file.
    #[error("{0}")]
    Notify(ConfigError),
    /// The `secondaries.tsig` key cannot be read (its variable not set, not base64).
    #[error("{0}")]
    Secondaries(ConfigError),
    /// The `publish.tsig` secret cannot be read: a configuration problem, located in the file.
    #[error("{0}")]
    PublishKey(ConfigError),
}

/// An agent that has bound its sockets and is ready to run.
pub struct Agent {
    config: Arc<Config>,
    sockets: DnsSockets,
    state: StateDir,
    /// The SOA serial, from the state directory (see `serial`).
    serial: Keeper,
    probes: Vec<Probe>,
    /// Kept to build the probes of a reloaded configuration.
    clients: HttpClients,
    published: Published,
    dashboard: Dashboard,
    /// Manual overrides as stored in the state directory at start.
    overrides: Overrides,
    /// Where operators' requests arrive (the sender is in `published`).
    commands: mpsc::Receiver<Command>,
    /// The peer API and the shared secret, when a cluster is configured.
    cluster: Option<(PeerServer, Secret)>,
    /// The notification channels and their subscription, taken before any event is emitted.
    notifier: Option<(Notifier, broadcast::Receiver<Arc<Event>>)>,
    /// Transfers and NOTIFY (`secondaries:`), read by the DNS server; replaced at reload.
    secondaries: Arc<ArcSwapOption<crate::dns::Secondaries>>,
    /// The key of `publish.tsig`, read at start (`None` inside: unsigned updates).
    publisher: Option<Option<hickory_proto::rr::TSigner>>,
}

impl Agent {
    /// Prepares everything that can fail before serving: state directory, probes, sockets.
    pub fn build(config: Config, state_dir: &Path) -> Result<Self, AgentError> {
        // First: a missing SMTP password is a configuration error, reported before anything else.
        let notifier = Notifier::build(&config).map_err(AgentError::Notify)?;
        let secondary_counters = Arc::new(crate::dns::SecondaryCounters::default());
        let secondaries = Arc::new(ArcSwapOption::new(
            secondaries::resolve(&config, &secondary_counters).map_err(AgentError::Secondaries)?,
        ));
        let publisher = match &config.publish {
            Some(_) => Some(crate::publish::signer(&config).map_err(AgentError::PublishKey)?),
            None => None,
        };
        let secret = match &config.cluster {
            Some(c) => Some(Secret::from_env(&c.secret_env).map_err(AgentError::ClusterSecret)?),
            None => None,
        };
        let state_error = |message: String| AgentError::StateDir {
            dir: state_dir.display().to_string(),
            message,
        };
        let state = StateDir::open(state_dir).map_err(|e| state_error(e.to_string()))?;
        let stored = match state.load_serial().map_err(state_error)? {
            // Written back at once: an unwritable directory is seen now rather than at the
            // first change. It is not fatal: the stored serial stays the highest ever served
            // (the serial does not move until a store works again), and answering DNS matters
            // more than the serial.
            Some(stored) => {
                if let Err(e) = state.store_serial(&stored) {
                    error!(error = %e, state_dir = %state.path().display(), serial = stored.serial,
                        "cannot write the state directory; the SOA serial stays where it is until it can be stored");
                }
                stored
            }
            // A fresh state directory starts from the clock, so a lost directory still never
            // goes back; without a stored serial there is no bound, so this one must be stored.
            None => {
                let stored = Stored {
                    serial: (crate::overrides::unix_now() as u32).max(1),
                    content: None,
                };
                state
                    .store_serial(&stored)
                    .map_err(|e| state_error(format!("cannot write the serial: {e}")))?;
                stored
            }
        };
        let serial = Keeper::new(stored);
        let overrides = Overrides::load(state.path()).map_err(state_error)?;
        // Hostnames are answered from the last published answers while these are recent;
        // otherwise SERVFAIL until the first round (the apex and nameservers always are).
        let saved = match saved::load(&state, &config, SystemTime::now()) {
            Ok(saved) => saved,
            Err(reason) => {
                info!(%reason, "not serving the saved answers before the first round");
                vec![None; config.hostnames.len()]
            }
        };
        let restored = saved.iter().filter(|s| s.is_some()).count();
        if restored > 0 {
            info!(
                hostnames = restored,
                "serving the answers saved at the last stop until the first round of checks is done"
            );
        }

        let clients = HttpClients::new().map_err(|message| AgentError::Probe {
            node: "-".into(),
            check: "-".into(),
            message,
        })?;
        let probes = build_probes(&config, &clients)?;

        let mut sockets = DnsSockets::bind(&config.dns.listen)
            .map_err(|(addr, source)| AgentError::Bind { addr, source })?;
        sockets.feed_secondaries(secondaries.clone());
        let cluster = match (&config.cluster, secret) {
            (Some(c), Some(secret)) => Some((
                PeerServer::bind(c.listen).map_err(|source| AgentError::ClusterBind {
                    addr: c.listen,
                    source,
                })?,
                secret,
            )),
            _ => None,
        };
        let (history, damaged) = crate::history::History::load(&state, SystemTime::now());
        if let Some(reason) = damaged {
            warn!(%reason, file = crate::history::FILE, "the saved history cannot be read; starting an empty one (the file is replaced at the next write)");
        }
        let config = Arc::new(config);
        let (command_tx, commands) = mpsc::channel(16);
        let published = Published {
            commands: command_tx,
            pull_now: Arc::default(),
            push_now: Arc::default(),
            pushes: Arc::default(),
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::new(
                Arc::new(Answers::new(Zone::not_ready(
                    &config,
                    serial.serial(),
                    &saved,
                ))),
                Status::new(config.clone(), serial.serial()),
            ))),
            events: broadcast::channel(EVENT_BACKLOG).0,
            dns_queries: Arc::default(),
            notifications: Arc::default(),
            publishing: Arc::default(),
            secondaries: secondary_counters,
            history: history.shared(),
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
            clients,
            cluster,
            overrides,
            commands,
            notifier: notifier.map(|n| (n, published.events.subscribe())),
            publisher,
            published,
            dashboard,
            secondaries,
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
        let (_never, reloads) = mpsc::channel(1);
        self.run_with_reloads(shutdown, reloads).await
    }

    /// Like `run`; each message on `reloads` (SIGHUP) re-reads the configuration file. A file
    /// that does not validate is refused with the error logged, and the agent goes on as it was.
    pub async fn run_with_reloads(
        self,
        shutdown: CancellationToken,
        mut reloads: mpsc::Receiver<()>,
    ) -> Result<(), AgentError> {
        let Agent {
            config,
            sockets,
            state,
            serial,
            probes,
            clients,
            published,
            dashboard,
            cluster,
            overrides,
            commands,
            notifier,
            secondaries,
            publisher,
        } = self;
        let addrs = sockets.local_addrs();
        // Client connections get what the probes and the rest leave of the descriptor limit.
        let limits = Limits::for_process(&config);
        let mut server = sockets
            .serve_capped(
                published.snapshot.clone(),
                published.dns_queries.clone(),
                limits.dns_tcp.clone(),
            )
            .map_err(|source| AgentError::DnsThread { source })?;
        let server_token = server.shutdown_token().clone();
        let (serving, stopped) = (config.dns.serve, server_token.clone());
        let mut server_task = tokio::spawn(async move {
            if !serving {
                // `dns.serve: false`: no socket; "done" only at shutdown.
                stopped.cancelled().await;
            }
            server.block_until_done().await
        });
        info!(
            zone = %config.zone,
            dns = ?addrs,
            pairs = config.pair_count(),
            serial = serial.serial(),
            state_dir = %state.path().display(),
            "agent started; hostnames without a saved answer get SERVFAIL until the first round of checks is done"
        );

        let channel_size = |c: &Config| c.pair_count().clamp(16, 65_536);
        let (tx, rx) = mpsc::channel(channel_size(&config));
        // Probes, dashboard and peer tasks: any of them failing stops the agent (see `Tasks`).
        let mut tasks = Tasks::default();
        // Each configuration's probes stop with their own token (a reload) or with shutdown.
        let mut generation = shutdown.child_token();
        let fresh = vec![PairHealth::new(); config.pair_count()];
        let nudges = Nudges::new(config.pair_count());
        spawn_probes(
            &mut tasks,
            &config,
            probes,
            fresh,
            &tx,
            &nudges,
            &generation,
        );
        drop(tx);
        let (stop, limit) = (shutdown.clone(), limits.dashboard.clone());
        tasks.spawn("dashboard", async move {
            dashboard
                .serve(stop.clone(), limit)
                .await
                .map_err(|e| e.to_string())?;
            until_shutdown(&stop)
        });

        let secondary_counters = published.secondaries.clone();
        // NOTIFY to the secondaries on every serial change (idle without `secondaries:`).
        let notify_secondaries = crate::dns::notify_secondaries::run(
            published.snapshot.clone(),
            secondaries.clone(),
            config.dns.listen.clone(),
            shutdown.clone(),
        );
        let stop = shutdown.clone();
        tasks.spawn("secondaries NOTIFY", async move {
            notify_secondaries.await;
            until_shutdown(&stop)
        });

        // Before the writer: it must not emit an event nobody is subscribed to yet.
        let mut notify_task = notifier.map(|(notifier, events)| {
            notifier.start(
                config.clone(),
                events,
                published.snapshot.clone(),
                published.notifications.clone(),
                published.commands.clone(),
                shutdown.clone(),
            )
        });
        let events = published.events.clone();

        // Agreement: serve our observations, pull the others'.
        let (report_tx, peer_reports) = mpsc::channel(64);
        if let Some((server, secret)) = cluster {
            let context = PeerContext::new(
                published.snapshot.clone(),
                secret.clone(),
                report_tx.clone(),
            );
            let (stop, limit) = (shutdown.clone(), limits.peer_api.clone());
            tasks.spawn("peer API", async move {
                server
                    .serve(context, stop.clone(), limit)
                    .await
                    .map_err(|e| {
                        format!("{e} (the other agents no longer get this agent's votes)")
                    })?;
                until_shutdown(&stop)
            });
            let secret_for_push = secret.clone();
            let pulls = pull::run(
                published.snapshot.clone(),
                secret,
                report_tx,
                published.pull_now.clone(),
                shutdown.clone(),
            );
            tasks.spawn("peer pull", async move {
                pulls.await;
                Ok(())
            });
            let pushes = crate::cluster::push::run(
                published.snapshot.clone(),
                secret_for_push,
                published.push_now.clone(),
                published.pushes.clone(),
                shutdown.clone(),
            );
            tasks.spawn("peer push", async move {
                pushes.await;
                Ok(())
            });
        } else {
            drop(report_tx);
        }

        // RFC 2136 updates into the site's DNS servers: a reader of the zone and the status.
        if let Some(signer) = publisher {
            let handles = crate::publish::Handles {
                snapshot: published.snapshot.clone(),
                commands: published.commands.clone(),
                counters: published.publishing.clone(),
                events: published.events.clone(),
            };
            let run = crate::publish::run(signer, handles, shutdown.clone());
            let stop = shutdown.clone();
            tasks.spawn("publisher", async move {
                run.await;
                until_shutdown(&stop)
            });
        }

        // Subscribed before the writer starts, so no transition is missed.
        let recorder = crate::history::recorder::run(
            published.history.clone(),
            state.clone(),
            published.snapshot.clone(),
            published.events.subscribe(),
            shutdown.clone(),
        );
        let stop = shutdown.clone();
        tasks.spawn("history", async move {
            recorder.await?;
            until_shutdown(&stop)
        });

        // The reload below seeds the new probes with the published pair states.
        let snapshot = published.snapshot.clone();
        let (reconfigure, reconfigurations) = mpsc::channel(4);
        let writer =
            Writer::new(config.clone(), published, state, serial, overrides).nudging(nudges);
        let mut writer_task = tokio::spawn(writer.run(
            rx,
            reconfigurations,
            peer_reports,
            commands,
            shutdown.clone(),
        ));
        let mut current = config;
        // A JoinHandle must not be awaited again once it has completed.
        let (mut writer_done, mut notify_done) = (false, false);
        let failed = |task: &str, why: String| {
            error!(task, error = %why, "a task failed; shutting down");
            Err(AgentError::Task(TaskFailure {
                task: task.into(),
                why,
            }))
        };
        let outcome = loop {
            tokio::select! {
                // Shutdown first: a task that ends because of it must not read as a failure.
                biased;
                () = shutdown.cancelled() => break Ok(()),
                result = &mut writer_task => {
                    writer_done = true;
                    // It returns only at shutdown; anything else leaves DNS frozen.
                    break match result {
                        Ok(()) if shutdown.is_cancelled() => Ok(()),
                        Ok(()) => failed("writer", "stopped before shutdown".into()),
                        Err(e) => failed("writer", tasks::describe(e)),
                    };
                }
                Some(done) = tasks.next() => {
                    if let Err(failure) = done {
                        break failed(&failure.task, failure.why);
                    }
                }
                result = async { notify_task.as_mut().expect("checked").await }, if notify_task.is_some() && !notify_done => {
                    notify_done = true;
                    let why = match result {
                        // The notifier also ends on the shutdown token; that is no failure.
                        Ok(()) if shutdown.is_cancelled() => break Ok(()),
                        Ok(()) => "stopped before shutdown".to_string(),
                        Err(e) => tasks::describe(e),
                    };
                    break failed("notifier", why);
                }
                Some(()) = reloads.recv() => {
                    match load_for_reload(&current, &clients, &secondary_counters) {
                        Err(error) => error!(%error, file = %current.path.display(), "reload refused; still running on the previous configuration"),
                        Ok((new, probes, fed)) => {
                            // A pair the writer carries over keeps its pace: its probe starts
                            // from the state published for it (see `carried_pairs`).
                            let known = {
                                let before = snapshot.load();
                                let status = &before.status;
                                carried_pairs(&status.config, &new)
                                    .into_iter()
                                    .map(|p| p.and_then(|p| status.pairs.get(p).cloned()).unwrap_or_default())
                                    .collect()
                            };
                            let (tx, rx) = mpsc::channel(channel_size(&new));
                            let nudges = Nudges::new(new.pair_count());
                            if reconfigure.send(Reconfigure { config: new.clone(), results: rx, nudges: nudges.clone() }).await.is_err() {
                                break Ok(());
                            }
                            generation.cancel();
                            generation = shutdown.child_token();
                            spawn_probes(&mut tasks, &new, probes, known, &tx, &nudges, &generation);
                            limits.resize(&new);
                            secondaries.store(fed);
                            current = new;
                        }
                    }
                }
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
                    break Err(AgentError::Dns(message));
                }
            }
        };

        shutdown.cancel();
        server_token.cancel();
        let notify_deadline = Instant::now() + NOTIFY_FLUSH_GRACE;
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(done) = tasks.next().await {
                if let Err(f) = done {
                    warn!(task = %f.task, error = %f.why, "a task failed while shutting down");
                }
            }
            if !writer_done && let Err(e) = (&mut writer_task).await {
                warn!(task = "writer", error = %tasks::describe(e), "a task failed while shutting down");
            }
            if !server_task.is_finished() {
                let _ = server_task.await;
            }
        })
        .await;
        if drained.is_err() {
            warn!(grace = ?SHUTDOWN_GRACE, "shutdown grace period over; abandoning unfinished tasks");
        }
        if let Some(task) = notify_task.as_mut().filter(|_| !notify_done)
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

/// What a server task that returned is: fine at shutdown, a failure before it.
fn until_shutdown(shutdown: &CancellationToken) -> Result<(), String> {
    if shutdown.is_cancelled() {
        Ok(())
    } else {
        Err("stopped before shutdown".into())
    }
}

/// One probe per (node, check) pair, in `Config::pair_index` order.
fn build_probes(config: &Config, clients: &HttpClients) -> Result<Vec<Probe>, AgentError> {
    (0..config.pair_count())
        .map(|pair| {
            let (n, c) = config.pair(pair);
            Probe::new(&config.nodes[n], &config.checks[c], clients).map_err(|message| {
                AgentError::Probe {
                    node: config.nodes[n].id.clone(),
                    check: config.checks[c].id.clone(),
                    message,
                }
            })
        })
        .collect()
}

/// Starts one probe task per pair, all stopped by `generation`.
fn spawn_probes(
    tasks: &mut Tasks,
    config: &Config,
    probes: Vec<Probe>,
    known: Vec<PairHealth>,
    results: &mpsc::Sender<PairResult>,
    nudges: &Arc<Nudges>,
    generation: &CancellationToken,
) {
    for ((pair, probe), known) in probes.into_iter().enumerate().zip(known) {
        let (n, c) = config.pair(pair);
        let name = format!("probe {}/{}", config.nodes[n].id, config.checks[c].id);
        let run = run_pair(
            pair,
            probe,
            config.checks[c].timing,
            known,
            results.clone(),
            nudges.clone(),
            generation.clone(),
        );
        tasks.spawn(name, async move {
            run.await;
            Ok(())
        });
    }
}

/// A configuration read for a reload: the config, its probes, and its secondaries' key.
type Reloaded = (
    Arc<Config>,
    Vec<Probe>,
    Option<Arc<crate::dns::Secondaries>>,
);

/// Reads the configuration file again for a reload. Settings bound at start (listen addresses,
/// notification channels, the cluster's peer API and secret) are reported as needing a restart
/// and stay as they are (`reload`); everything else applies.
fn load_for_reload(
    current: &Config,
    clients: &HttpClients,
    counters: &Arc<crate::dns::SecondaryCounters>,
) -> Result<Reloaded, String> {
    let mut new = config::load(&current.path).map_err(|e| e.to_string())?;
    for key in reload::keep_restart_only(current, &mut new) {
        warn!(
            key,
            "changed in the configuration file; it takes effect at the next restart"
        );
    }
    let probes = build_probes(&new, clients).map_err(|e| e.to_string())?;
    let fed = secondaries::resolve(&new, counters).map_err(|e| e.to_string())?;
    Ok((Arc::new(new), probes, fed))
}
