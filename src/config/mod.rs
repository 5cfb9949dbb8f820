//! The validated, immutable configuration, and the only way to get one: `load` (parse, then validate).
//!
//! Every error names the file, line, column, key path and bad value, and says what to do.
//!
//! Read in this order: `file.rs` (the YAML as written), `load.rs` (read, parse, validate),
//! `validate.rs` (the order of the sections and the helpers they share), then one file per
//! section, holding that section's validated types and the `impl Validator` that builds them:
//! `dns.rs` (with `zone:`), `dashboard.rs`, `timing.rs` (`defaults:`), `nodes.rs`, `checks.rs`,
//! `hostnames.rs`, `notify.rs` (with `secret.rs`: where a password is kept), `cluster.rs`,
//! `publish.rs` (with `tsig.rs`: TSIG keys).
//! `model.rs` holds `Config`, the whole; `error.rs` the error type; `names.rs` the words of the
//! one-word keys; `summary.rs` what `check-config` prints.
//!
//! `parse` is a function of its text alone: it reads no file and binds no socket. `load` then
//! reads the files the text names (`read_files`: a `ca_file`) and finds which node this machine
//! is (`this_node.rs`, which binds sockets).
//!
//! A new section is a new file of that shape, its raw form in `file.rs`, one call in
//! `Validator::validate` and one field in `Config`.

#[macro_use]
mod names;

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
mod publish;
mod secondaries;
mod secret;
mod summary;
mod this_node;
mod timing;
mod tsig;
mod validate;

pub use checks::{Check, CheckKind, DEFAULT_BODY_LIMIT, HttpCheck, MAX_BODY_LIMIT, TcpCheck};
pub use cluster::{
    ClusterConfig, DEFAULT_CLUSTER_LISTEN, DEFAULT_CLUSTER_SECRET_ENV, Quorum, Witness,
};
pub use dashboard::{DashboardConfig, REFRESH_RANGE};
pub use dns::{DEFAULT_DNS_LISTEN, DnsConfig, MAX_TTL};
pub use duration::{HumanDuration, format_duration};
pub use error::ConfigError;
pub use error::Place;
pub use hostnames::{Family, Hostname, Mode, WhenAllDown};
pub use load::{DEFAULT_CONFIG_PATH, load, parse, read_files};
pub use model::{Agent, Config};
pub use nodes::Node;
pub use notify::{
    CaFile, EmailConfig, EventFilter, EventName, NotifyConfig, SmtpConfig, SmtpTls, WebhookConfig,
    redacted_url,
};
pub use publish::{
    DEFAULT_PUBLISH_TIMEOUT, DEFAULT_VERIFY_INTERVAL, PublishConfig, PublishSection,
};
pub use secondaries::{SecondariesConfig, SoaTimers, canonical_ip};
pub use secret::{Password, SecretKind, SecretSource};
pub use this_node::{SelfSource, find_self};
pub use timing::{MAX_INTERVAL, MAX_TIMEOUT, MIN_TIMING, Timing};
pub use tsig::{TSIG_FUDGE, TsigAlgo, TsigKey, TsigKeyConfig, TsigSection, decode_secret};
// The section files (and new ones) `use super::Validator`.
use validate::Validator;

#[cfg(test)]
mod tests;
