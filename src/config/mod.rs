//! The validated, immutable configuration, and the only way to get one: `load` (parse, then validate).
//!
//! Every error names the file, line, column, key path and bad value, and says what to do.
//!
//! Read in this order: `file.rs` (the YAML as written), `load.rs` (read and parse), `validate.rs`
//! (the order of the checks and their shared helpers), then one file per section, holding that
//! section's validated types and the `impl Validator` that builds them: `dns.rs` (with `zone:`),
//! `dashboard.rs`, `timing.rs` (`defaults:`), `nodes.rs`, `checks.rs`, `hostnames.rs`,
//! `notify.rs`, `cluster.rs`; `this_node.rs` finds which node this machine is, after parsing (it
//! binds sockets; `parse` binds none, and the only file it reads is a `ca_file` the text names). `model.rs` holds `Config`, the whole; `error.rs` the error type;
//! `summary.rs` what `check-config` prints. A new section is a new file of that shape, its raw
//! form in `file.rs`, one line in `Validator::validate` and one field in `Config`.

mod checks;
mod cluster;
mod dashboard;
mod dns;
mod duration;
mod error;
mod file;
mod hostnames;
mod load;
mod model;
mod nodes;
mod notify;
mod summary;
mod this_node;
mod timing;
mod validate;

pub use checks::{Check, CheckKind, DEFAULT_BODY_LIMIT, HttpCheck, MAX_BODY_LIMIT, TcpCheck};
pub use cluster::{ClusterConfig, DEFAULT_CLUSTER_LISTEN, DEFAULT_CLUSTER_SECRET_ENV, Quorum};
pub use dashboard::{DashboardConfig, REFRESH_RANGE};
pub use dns::{DEFAULT_DNS_LISTEN, DnsConfig, MAX_TTL};
pub use duration::{HumanDuration, format_duration};
pub use error::ConfigError;
pub use hostnames::{Family, Hostname, Mode, WhenAllDown};
pub use load::{DEFAULT_CONFIG_PATH, load, parse};
pub use model::Config;
pub use nodes::Node;
pub use notify::{
    CaFile, EmailConfig, EventFilter, NotifyConfig, Secret, SecretKind, SecretSource, SmtpConfig,
    SmtpTls, WebhookConfig, redacted_url,
};
pub use this_node::{SelfSource, find_self};
pub use timing::{MAX_INTERVAL, MAX_TIMEOUT, MIN_TIMING, Timing};

#[cfg(test)]
mod tests;
