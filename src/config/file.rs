//! The YAML file exactly as written: serde types with defaults and `deny_unknown_fields`.
//!
//! Nothing here is trusted yet; `config::validate` turns these into the immutable `Config`.
//! Fields that cross-checks point back to are `Spanned`, so an error can name their line.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::duration::HumanDuration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub zone: Spanned<String>,
    #[serde(rename = "self", default)]
    pub self_id: Option<Spanned<String>>,
    #[serde(default)]
    pub dns: DnsSection,
    #[serde(default)]
    pub dashboard: DashboardSection,
    #[serde(default)]
    pub defaults: TimingSection,
    pub nodes: Vec<NodeEntry>,
    pub checks: Vec<CheckEntry>,
    pub hostnames: Vec<HostnameEntry>,
    #[serde(default)]
    pub notify: Option<NotifySection>,
    #[serde(default)]
    pub cluster: Option<ClusterSection>,
    #[serde(default)]
    pub secondaries: Option<Spanned<super::secondaries::SecondariesSection>>,
    pub publish: Option<super::PublishSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// `false`: no embedded DNS server (publish by dynamic update only).
    pub serve: Option<Spanned<bool>>,
    pub listen: Option<Vec<Spanned<String>>>,
    pub ttl: Option<Spanned<HumanDuration>>,
    /// TTL of the apex NS records and their glue, which change only with the configuration.
    pub ns_ttl: Option<Spanned<HumanDuration>>,
    pub nameservers: Option<Spanned<String>>,
    /// Mailbox written into the SOA record (`hostmaster@<parent of the zone>` by default).
    pub hostmaster: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSection {
    pub listen: Option<Spanned<String>>,
    pub refresh: Option<Spanned<HumanDuration>>,
}

/// Timing keys, used both under `defaults:` and inside each check.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingSection {
    pub interval: Option<Spanned<HumanDuration>>,
    pub retry_interval: Option<Spanned<HumanDuration>>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub fall: Option<Spanned<u32>>,
    pub rise: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub id: Spanned<String>,
    pub address: Option<Spanned<String>>,
    pub addresses: Option<Vec<Spanned<String>>>,
    /// Where the agents reach the node when that differs from the published address (NAT).
    pub probe_address: Option<Spanned<String>>,
    pub priority: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckEntry {
    pub id: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    // http / https
    pub url: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<StatusSpec>>,
    pub expect_body: Option<String>,
    pub host: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub tls_verify: Option<bool>,
    pub body_limit: Option<Spanned<u64>>,
    // tcp
    pub port: Option<Spanned<u16>>,
    pub send: Option<String>,
    pub expect: Option<String>,
    // timing overrides
    pub interval: Option<Spanned<HumanDuration>>,
    pub retry_interval: Option<Spanned<HumanDuration>>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub fall: Option<Spanned<u32>>,
    pub rise: Option<Spanned<u32>>,
}

/// `expect_status` may be written as a number (`200`) or a range string (`"200-399"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(u16),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostnameEntry {
    pub name: Spanned<String>,
    pub checks: Vec<Spanned<String>>,
    /// Restricts the name to these nodes; every node by default.
    pub nodes: Option<Vec<Spanned<String>>>,
    pub mode: Option<Spanned<String>>,
    pub when_all_down: Option<Spanned<String>>,
    /// `any` (default), `ipv4` or `ipv6`: which address families the name publishes.
    pub family: Option<Spanned<String>>,
}

/// `notify:` — where state changes are sent; validated by `config::notify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    pub email: Option<EmailSection>,
    pub webhook: Option<WebhookSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    pub smtp: SmtpSection,
    pub from: Spanned<String>,
    pub to: Spanned<Vec<Spanned<String>>>,
    /// Which events are mailed; every kind when absent.
    pub events: Option<Spanned<Vec<Spanned<String>>>>,
    pub digest_window: Option<Spanned<HumanDuration>>,
    pub retry_for: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    pub host: Spanned<String>,
    pub port: Option<Spanned<u16>>,
    pub tls: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    /// Accepted only to refuse it with a helpful message: a password never sits in this file.
    pub password: Option<Spanned<serde::de::IgnoredAny>>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub url: Spanned<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub events: Option<Spanned<Vec<Spanned<String>>>>,
    pub retry_for: Option<Spanned<HumanDuration>>,
    pub timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub listen: Option<Spanned<String>>,
    pub secret_env: Option<Spanned<String>>,
    pub quorum: Option<Spanned<String>>,
    /// How often each agent pulls the others' observations.
    pub period: Option<Spanned<HumanDuration>>,
    /// Agents that probe and vote but serve no hostname and are no nameserver of the zone.
    #[serde(default)]
    pub witnesses: Vec<WitnessEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEntry {
    pub id: Spanned<String>,
    /// Where the other agents reach its peer API (on the port of `cluster.listen`).
    pub address: Spanned<String>,
}
