//! The `failoverd` command line: parses the arguments, calls the subcommand (`failoverd::cli`),
//! and turns its outcome into a message and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use failoverd::cli::{self, EXIT_CONFIG, OverrideArgs};
use failoverd::config::DEFAULT_CONFIG_PATH;
use failoverd::state_dir::DEFAULT_STATE_DIR;

/// `eprintln!` that never panics: with stderr gone too (`2>&1 | head -0`), there is nowhere left
/// to say anything, and a panic would only turn the exit code into 101.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

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
    let args = match Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_CONFIG } else { 0 });
        }
    };
    let outcome = match args.command {
        Command::Run { config, state_dir } => cli::run(&config, &state_dir),
        Command::CheckConfig { config } => cli::check_config(&config),
        Command::Status {
            config,
            url,
            json,
            history,
        } => cli::status(&config, url, json, history),
        Command::NotifyTest { config } => cli::notify_test(&config),
        Command::Maintenance {
            node,
            state,
            reason,
            duration,
            config,
            url,
        } => cli::maintenance(
            node,
            state == "on",
            OverrideArgs {
                reason,
                duration,
                config,
                url,
            },
        ),
        Command::Force {
            hostname,
            node,
            reason,
            duration,
            config,
            url,
        } => cli::force(
            hostname,
            node,
            OverrideArgs {
                reason,
                duration,
                config,
                url,
            },
        ),
        Command::Delegation { config } => cli::delegation(&config),
        Command::Verify { config, server } => cli::verify(&config, server.as_deref()),
        Command::Demo => cli::demo(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message {
                eprintln!("error: {message}");
            }
            ExitCode::from(failure.code)
        }
    }
}
