//! The `failoverd` command line: parses arguments, sets up logging, and picks exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use failoverd::agent::Agent;
use failoverd::config::{self, DEFAULT_CONFIG_PATH};
use failoverd::state_dir::DEFAULT_STATE_DIR;

/// `eprintln!` that never panics: with stderr gone too (`2>&1 | head -0`), there is nowhere left
/// to say anything, and a panic would only turn the exit code into 101.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Exit code for a runtime failure.
const EXIT_RUNTIME: u8 = 1;
/// Exit code for bad usage or a bad configuration.
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "failoverd",
    version,
    about = "Health-polling DNS failover agent with an embedded authoritative DNS server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: poll every check on every node and answer DNS for the zone.
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Where the SOA serial is kept across restarts.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Validate a configuration file and print what the agent would do with it.
    CheckConfig {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// A self-contained cluster on loopback: simulated nodes, the agent, and a prompt to break things.
    Demo,
    /// Put a node in or out of maintenance on every agent (drained from every hostname).
    Maintenance {
        /// The node id.
        node: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// Why (shown on the dashboard, in logs and mails).
        #[arg(long, default_value = "")]
        reason: String,
        /// How long it lasts (e.g. 2h); until cleared when left out.
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// The local agent's configuration: its `dashboard.listen` says where to ask.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Ask this dashboard instead (e.g. http://127.0.0.1:8081).
        #[arg(long)]
        url: Option<String>,
    },
    /// Force a hostname to a node on every agent, whatever the health (`off` to stop).
    Force {
        /// The hostname (relative to the zone, or fully qualified).
        hostname: String,
        /// The node id, or `off`.
        node: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the NS and glue records the parent zone needs, and how to verify the delegation.
    Delegation {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Ask every agent (and a resolver) for SOA, NS and every hostname; exit 1 unless all agree.
    Verify {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// A resolver to ask too (ADDR or ADDR:PORT), to check the delegation end to end.
        #[arg(long)]
        server: Option<String>,
    },
    /// Send one test message through every configured notification channel (email, webhook).
    NotifyTest {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Show the running agent's view (answers, checks, events) from its local dashboard API.
    Status {
        /// The agent's configuration: its `dashboard.listen` says where to ask.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Ask this dashboard instead (e.g. http://127.0.0.1:8081); the config is then not read.
        #[arg(long)]
        url: Option<String>,
        /// Print the JSON of /api/v1/status as the agent sent it.
        #[arg(long)]
        json: bool,
        /// Print the last 24 h instead: transitions and availability per hostname and check
        /// (with --json, the JSON of /api/v1/history).
        #[arg(long)]
        history: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_CONFIG } else { 0 });
        }
    };
    match cli.command {
        Command::CheckConfig { config } => match config::load(&config) {
            Ok(cfg) => print_out(&cfg.summary()),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { config, state_dir } => runtime().block_on(async move {
            // First of all: from here on, a SIGHUP or SIGTERM that arrives while the agent
            // starts is queued (a reload once it runs, a stop) instead of killing the process
            // by the default action.
            let signals = match Signals::install() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: cannot listen for signals: {e}");
                    return ExitCode::from(EXIT_RUNTIME);
                }
            };
            let _log = failoverd::logging::init();
            let cfg = match config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            {
                let agent = match Agent::build(cfg, &state_dir) {
                    Ok(agent) => agent,
                    // A notification channel or cluster secret that cannot be set up is a
                    // configuration error.
                    Err(
                        e @ (failoverd::agent::AgentError::Notify(_)
                        | failoverd::agent::AgentError::ClusterSecret(_)),
                    ) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                    Err(e) => {
                        tracing::error!("{e}");
                        return ExitCode::from(EXIT_RUNTIME);
                    }
                };
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on(signals.term, signals.int, shutdown.clone()));
                let (reload, reloads) = tokio::sync::mpsc::channel(1);
                tokio::spawn(reload_on_sighup(signals.hup, reload));
                match agent.run_with_reloads(shutdown, reloads).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e}");
                        ExitCode::from(EXIT_RUNTIME)
                    }
                }
            }
        }),
        Command::Status {
            config,
            url,
            json,
            history,
        } => {
            let base = match url {
                Some(url) => url,
                None => match config::load(&config) {
                    Ok(cfg) => failoverd::dashboard::client::base_url(cfg.dashboard.listen),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                },
            };
            if history {
                return failoverd::history::api::print_history(&base, json);
            }
            let fetched = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot start the tokio runtime")
                .block_on(failoverd::dashboard::client::fetch(&base));
            match fetched {
                Ok((_, body)) if json => print_out(&format!("{}\n", body.trim_end())),
                Ok((view, _)) => print_out(&failoverd::dashboard::client::render(
                    &view,
                    std::time::SystemTime::now(),
                )),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        Command::NotifyTest { config } => notify_test(&config),
        Command::Maintenance {
            node,
            state,
            reason,
            duration,
            config,
            url,
        } => {
            let request = failoverd::overrides::Request {
                kind: failoverd::overrides::Kind::Maintenance,
                target: node,
                node: None,
                on: state == "on",
                reason,
                for_seconds: None,
                by: String::new(),
            };
            send_override(request, duration, &config, url)
        }
        Command::Force {
            hostname,
            node,
            reason,
            duration,
            config,
            url,
        } => {
            let off = node == "off";
            let request = failoverd::overrides::Request {
                kind: failoverd::overrides::Kind::Force,
                target: hostname,
                node: (!off).then_some(node),
                on: !off,
                reason,
                for_seconds: None,
                by: String::new(),
            };
            send_override(request, duration, &config, url)
        }
        Command::Delegation { config } => match config::load(&config) {
            Ok(cfg) => print_out(&failoverd::delegation::render(&cfg)),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Verify { config, server } => {
            let cfg = match config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let resolver = match server
                .as_deref()
                .map(failoverd::verify::parse_server)
                .transpose()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: --server: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let (report, ok) = runtime().block_on(failoverd::verify::verify(&cfg, resolver));
            if let Err(code) = write_out(&report) {
                return code;
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
        Command::Demo => {
            let _log = failoverd::logging::init();
            runtime().block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                match failoverd::demo::run(shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(EXIT_RUNTIME)
                    }
                }
            })
        }
    }
}

/// `notify-test`: exit 0 if every channel delivered, 1 if one failed, 2 if none is configured
/// or the configuration (or a password it names) is wrong.
fn notify_test(path: &std::path::Path) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let notifier = match failoverd::notify::Notifier::build(&cfg) {
        Ok(Some(n)) => n,
        Ok(None) => {
            eprintln!(
                "error: {}: no notification channel is configured; add notify.email or notify.webhook",
                path.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
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
        if let Err(code) = write_out(&line) {
            return code;
        }
    }
    if failed {
        eprintln!("error: at least one notification channel failed (see above)");
        ExitCode::from(EXIT_RUNTIME)
    } else {
        ExitCode::SUCCESS
    }
}

/// `maintenance` and `force`: fills in who asks and for how long, and sends it to the local agent.
fn send_override(
    mut request: failoverd::overrides::Request,
    duration: Option<String>,
    config: &std::path::Path,
    url: Option<String>,
) -> ExitCode {
    if let Some(text) = duration {
        match failoverd::config::HumanDuration::parse(&text) {
            Ok(d) => request.for_seconds = Some(d.0.as_secs().max(1)),
            Err(e) => {
                eprintln!("error: --for: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    request.by = format!(
        "failoverd {} (user {user})",
        if request.kind == failoverd::overrides::Kind::Force {
            "force"
        } else {
            "maintenance"
        }
    );
    let base = match url {
        Some(url) => url,
        None => match config::load(config) {
            Ok(cfg) => failoverd::dashboard::client::base_url(cfg.dashboard.listen),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
        .block_on(failoverd::dashboard::client::apply_override(
            &base, &request,
        ));
    match result {
        Ok(o) => print_out(&format!(
            "{} (version {}; every agent applies it within a few peer periods)\n",
            o.summary(),
            o.version
        )),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Writes `text` to stdout; see `write_out`.
fn print_out(text: &str) -> ExitCode {
    match write_out(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// Writes `text` to stdout. A stdout that cannot be written (its reader went away: `| head -1`,
/// a closed pipe) is reported on stderr with exit 1, never a panic as `print!` would.
fn write_out(text: &str) -> Result<(), ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            eprintln!("error: cannot write to standard output: {e}");
            ExitCode::from(EXIT_RUNTIME)
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
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
