//! The `failoverd` subcommands, one function each: `main` parses the arguments and calls one of
//! them, which returns a [`Failure`] carrying its exit code; only `main` prints it and exits.
//!
//! | exit | meaning                                                               |
//! |------|-----------------------------------------------------------------------|
//! | 0    | done                                                                  |
//! | 1    | a runtime failure (the agent stopped, a peer did not answer, a mismatch) |
//! | 2    | bad usage or a bad configuration                                      |

pub mod delegation;
pub mod demo;
pub mod verify;

use std::fmt::Display;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, AgentError};
use crate::config::{self, Config, HumanDuration};
use crate::dashboard::client;
use crate::notify::Notifier;
use crate::overrides::{Kind, Request};

/// Exit code for a runtime failure.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code for bad usage or a bad configuration.
pub const EXIT_CONFIG: u8 = 2;

/// Why a subcommand failed: its exit code, and what `main` says on stderr (`error: …`), if
/// anything is left to say (the agent logs its own failures; `verify` prints its report).
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: Option<String>,
}

impl Failure {
    /// A bad configuration or argument (exit 2).
    fn config(message: impl Display) -> Self {
        Self {
            code: EXIT_CONFIG,
            message: Some(message.to_string()),
        }
    }

    /// A runtime failure (exit 1).
    fn runtime(message: impl Display) -> Self {
        Self {
            code: EXIT_RUNTIME,
            message: Some(message.to_string()),
        }
    }

    /// A failure already reported (exit `code`, nothing more to say).
    fn quiet(code: u8) -> Self {
        Self {
            code,
            message: None,
        }
    }
}

/// What a subcommand returns.
pub type Outcome = Result<(), Failure>;

/// `run`: serves until SIGTERM or SIGINT, re-reads the configuration on SIGHUP.
pub fn run(config: &Path, state_dir: &Path) -> Outcome {
    runtime().block_on(async move {
        // First of all: from here on, a SIGHUP or SIGTERM that arrives while the agent starts is
        // queued (a reload once it runs, a stop) instead of killing the process by the default
        // action.
        let signals = Signals::install()
            .map_err(|e| Failure::runtime(format!("cannot listen for signals: {e}")))?;
        let _log = crate::logging::init();
        let cfg = load(config)?;
        let agent = match Agent::build(cfg, state_dir) {
            Ok(agent) => agent,
            // A notification channel or cluster secret that cannot be set up is a configuration
            // error.
            Err(
                e @ (AgentError::Notify(_)
                | AgentError::ClusterSecret(_)
                | AgentError::Secondaries(_)
                | AgentError::PublishKey(_)),
            ) => {
                return Err(Failure::config(e));
            }
            Err(e) => {
                tracing::error!("{e}");
                return Err(Failure::quiet(EXIT_RUNTIME));
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on(signals.term, signals.int, shutdown.clone()));
        let (reload, reloads) = tokio::sync::mpsc::channel(1);
        tokio::spawn(reload_on_sighup(signals.hup, reload));
        agent
            .run_with_reloads(shutdown, reloads)
            .await
            .map_err(|e| {
                tracing::error!("{e}");
                Failure::quiet(EXIT_RUNTIME)
            })
    })
}

/// `check-config`: validates the file and prints what the agent would do with it.
pub fn check_config(config: &Path) -> Outcome {
    write_out(&load(config)?.summary())
}

/// `status`: the running agent's view, from its local dashboard API (`--history`: its last 24 h).
pub fn status(config: &Path, url: Option<String>, json: bool, history: bool) -> Outcome {
    let base = dashboard_url(config, url)?;
    if history {
        use crate::dashboard::history::{api, view};
        return match client_runtime().block_on(api::fetch(&base)) {
            Ok((_, body)) if json => write_out(&format!("{}\n", body.trim_end())),
            Ok((history, _)) => write_out(&view::render_text(&history, SystemTime::now(), 6)),
            Err(e) => Err(Failure::runtime(e)),
        };
    }
    match client_runtime().block_on(client::fetch(&base)) {
        Ok((_, body)) if json => write_out(&format!("{}\n", body.trim_end())),
        Ok((view, _)) => write_out(&client::render(&view, SystemTime::now())),
        Err(e) => Err(Failure::runtime(e)),
    }
}

/// `notify-test`: exit 0 if every channel delivered, 1 if one failed, 2 if none is configured
/// or the configuration (or a password it names) is wrong.
pub fn notify_test(config: &Path) -> Outcome {
    let cfg = load(config)?;
    let notifier = Notifier::build(&cfg)
        .map_err(Failure::config)?
        .ok_or_else(|| {
            Failure::config(format!(
                "{}: no notification channel is configured; add notify.email or notify.webhook",
                config.display()
            ))
        })?;
    let reports = runtime().block_on(notifier.send_test(&cfg));
    let mut failed = false;
    for report in &reports {
        let line = match &report.result {
            Ok(()) => format!("{:<8} {}: sent\n", report.channel, report.target),
            Err(e) => {
                failed = true;
                format!("{:<8} {}: FAILED: {e}\n", report.channel, report.target)
            }
        };
        write_out(&line)?;
    }
    if failed {
        return Err(Failure::runtime(
            "at least one notification channel failed (see above)",
        ));
    }
    Ok(())
}

/// How an override is asked for, beside what it is: `--reason`, `--for`, and which agent.
pub struct OverrideArgs {
    pub reason: String,
    pub duration: Option<String>,
    pub config: std::path::PathBuf,
    pub url: Option<String>,
}

/// `maintenance NODE on|off`.
pub fn maintenance(node: String, on: bool, args: OverrideArgs) -> Outcome {
    let request = Request {
        kind: Kind::Maintenance,
        target: node,
        node: None,
        on,
        reason: args.reason.clone(),
        for_seconds: None,
        by: String::new(),
    };
    send_override(request, args)
}

/// `force HOSTNAME NODE|off`.
pub fn force(hostname: String, node: String, args: OverrideArgs) -> Outcome {
    let off = node == "off";
    let request = Request {
        kind: Kind::Force,
        target: hostname,
        node: (!off).then_some(node),
        on: !off,
        reason: args.reason.clone(),
        for_seconds: None,
        by: String::new(),
    };
    send_override(request, args)
}

/// `maintenance` and `force`: fills in who asks and for how long, and sends it to the local agent.
fn send_override(mut request: Request, args: OverrideArgs) -> Outcome {
    if let Some(text) = args.duration {
        let d = HumanDuration::parse(&text).map_err(|e| Failure::config(format!("--for: {e}")))?;
        request.for_seconds = Some(d.0.as_secs().max(1));
    }
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    request.by = format!(
        "failoverd {} (user {user})",
        if request.kind == Kind::Force {
            "force"
        } else {
            "maintenance"
        }
    );
    let base = dashboard_url(&args.config, args.url)?;
    match client_runtime().block_on(client::apply_override(&base, &request)) {
        Ok(o) => write_out(&format!(
            "{} (version {}; every agent applies it within a few peer periods)\n",
            o.summary(),
            o.version
        )),
        Err(e) => Err(Failure::runtime(e)),
    }
}

/// `delegation`: the NS and glue records the parent zone needs.
pub fn delegation(config: &Path) -> Outcome {
    let cfg = load(config)?;
    not_serving(&cfg)?;
    write_out(&delegation::render(&cfg))
}

/// With `dns.serve: false` there is no server to delegate to or ask: say where the names are.
fn not_serving(cfg: &crate::config::Config) -> Outcome {
    if cfg.dns.serve {
        return Ok(());
    }
    let servers: Vec<String> = cfg
        .publish
        .iter()
        .flat_map(|p| p.servers.iter().map(|s| s.to_string()))
        .collect();
    Err(Failure::config(format!(
        "dns.serve is false: the agents answer no DNS and need no delegation; the names are published to {} (check them there, e.g. dig @SERVER -p PORT NAME A)",
        servers.join(", ")
    )))
}

/// `verify`: asks every agent (and a resolver); exit 1 unless all agree.
pub fn verify(config: &Path, server: Option<&str>) -> Outcome {
    let cfg = load(config)?;
    not_serving(&cfg)?;
    let resolver = server
        .map(verify::parse_server)
        .transpose()
        .map_err(|e| Failure::config(format!("--server: {e}")))?;
    let (report, ok) = runtime().block_on(verify::verify(&cfg, resolver));
    write_out(&report)?;
    if ok {
        Ok(())
    } else {
        Err(Failure::quiet(EXIT_RUNTIME))
    }
}

/// `demo`: a self-contained cluster on loopback, until SIGTERM or SIGINT.
pub fn demo() -> Outcome {
    let _log = crate::logging::init();
    runtime().block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        demo::run(shutdown).await.map_err(Failure::runtime)
    })
}

/// The configuration file, or exit 2 with what is wrong in it.
fn load(path: &Path) -> Result<Config, Failure> {
    config::load(path).map_err(Failure::config)
}

/// `--url`, else the dashboard the configuration names (the configuration is then read).
fn dashboard_url(config: &Path, url: Option<String>) -> Result<String, Failure> {
    match url {
        Some(url) => Ok(url),
        None => Ok(client::base_url(load(config)?.dashboard.listen)),
    }
}

/// Writes `text` to stdout. A stdout that cannot be written (its reader went away: `| head -1`,
/// a closed pipe) is exit 1, never a panic as `print!` would.
fn write_out(text: &str) -> Outcome {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::runtime(format!("cannot write to standard output: {e}")))
}

/// The runtime of the agent and of the commands that ask many servers at once.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
}

/// The runtime of the commands that make one request to the local dashboard.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
}

/// The signals `run` handles, listened for from its first moment: a signal that arrives before
/// its task reads it is kept (one pending delivery per kind).
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Asks the agent to re-read its configuration on every SIGHUP (`systemctl reload`).
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    reload: tokio::sync::mpsc::Sender<()>,
) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        // A reload already waiting covers this one too.
        if let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) = reload.try_send(()) {
            return;
        }
    }
}

async fn cancel_on_signal(token: CancellationToken) {
    match Signals::install() {
        Ok(s) => cancel_on(s.term, s.int, token).await,
        Err(e) => tracing::error!(error = %e, "cannot listen for SIGTERM; stop with SIGKILL"),
    }
}

async fn cancel_on(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
    token: CancellationToken,
) {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("interrupted: shutting down"),
    }
    token.cancel();
}
