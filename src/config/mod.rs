//! The validated, immutable configuration, and the only way to get one: `load` (parse, then validate).
//!
//! Every error names the file, line, column, key path and bad value, and says what to do.

mod duration;
mod file;
mod notify;
mod publish;
mod secondaries;
mod summary;
mod tsig;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;
use serde_saphyr::Spanned;

pub use duration::{HumanDuration, format_duration};
use file::{CheckEntry, ConfigFile, HostnameEntry, NodeEntry, StatusSpec, TimingSection};
pub use notify::{
    CaFile, EmailConfig, EventFilter, NotifyConfig, Secret, SecretKind, SecretSource, SmtpConfig,
    SmtpTls, WebhookConfig, redacted_url,
};
pub use publish::{
    DEFAULT_PUBLISH_TIMEOUT, DEFAULT_VERIFY_INTERVAL, PublishConfig, PublishSection,
};
pub use secondaries::{SecondariesConfig, SoaTimers, canonical_ip};
pub use tsig::{TSIG_FUDGE, TsigAlgo, TsigKey, TsigKeyConfig, TsigSection, decode_secret};

/// Default place of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/failoverd/config.yaml";
/// Default UDP and TCP listen addresses of the DNS server.
pub const DEFAULT_DNS_LISTEN: [&str; 2] = ["0.0.0.0:53", "[::]:53"];
/// Default address of the peer API.
pub const DEFAULT_CLUSTER_LISTEN: &str = "0.0.0.0:8053";
/// Default environment variable of the cluster secret.
pub const DEFAULT_CLUSTER_SECRET_ENV: &str = "FAILOVERD_CLUSTER_SECRET";
/// Default HTTP body limit of checks: enough for a login page, small enough that a huge
/// response cannot eat memory.
pub const DEFAULT_BODY_LIMIT: u64 = 64 * 1024;
/// The longest `interval` and `retry_interval`: a check probed less than daily is not a health
/// check, and every sum of durations the agent computes stays far from overflow.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The longest probe `timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The shortest `interval`, `retry_interval` and `timeout`.
pub const MIN_TIMING: Duration = Duration::from_millis(10);
/// The longest TTL a resolver honours (RFC 2181 §8: 2^31 − 1 seconds).
pub const MAX_TTL: Duration = Duration::from_secs((1 << 31) - 1);
/// The range of `dashboard.refresh`: the page's `<meta refresh>` counts whole seconds.
pub const REFRESH_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 3600));
/// The most of a body an HTTP check reads (a health page is small; more is a misconfiguration,
/// and every byte read is held against the probe's timeout).
pub const MAX_BODY_LIMIT: u64 = 16 * 1024 * 1024;

/// A fully validated configuration. Built once by [`load`]; never changed afterwards.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from, for messages.
    pub path: PathBuf,
    /// The delegated zone, lower case, fully qualified.
    pub zone: Name,
    /// This node, when configured or found among the machine's own addresses.
    pub self_node: Option<usize>,
    /// How `self_node` was found, for `check-config`.
    pub self_source: SelfSource,
    pub dns: DnsConfig,
    pub dashboard: DashboardConfig,
    pub nodes: Vec<Node>,
    pub checks: Vec<Check>,
    pub hostnames: Vec<Hostname>,
    /// Where state changes are sent (email, webhook); empty without a `notify:` section.
    pub notify: NotifyConfig,
    /// Agreement with the other agents; `None`: this agent decides alone.
    pub cluster: Option<ClusterConfig>,
    /// Secondaries fed by zone transfer and NOTIFY (`secondaries:`); `None`: transfers REFUSED.
    pub secondaries: Option<SecondariesConfig>,
    /// RFC 2136 updates of the answers into existing DNS servers (`publish:`).
    pub publish: Option<PublishConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfSource {
    Configured,
    /// Exactly one node's address is assigned to this machine.
    LocalAddress,
    /// Several nodes' addresses are local (typical on a single test host using 127.0.0.x).
    Ambiguous(Vec<String>),
    NotFound,
}

/// How agents share observations and vote (`cluster:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Where this agent serves its observations to the others (the peer API).
    pub listen: SocketAddr,
    /// Environment variable holding the shared secret (never the secret itself).
    pub secret_env: String,
    pub quorum: Quorum,
    /// How often each agent pulls every other agent's observations.
    pub period: Duration,
}

impl ClusterConfig {
    /// Where agent `node` serves the peer API: its probe address, on this config's port.
    pub fn peer_addr(&self, node: &Node) -> SocketAddr {
        SocketAddr::new(node.probe_address, self.listen.port())
    }
}

/// How many of the agents with a fresh observation must say "up" for a pair to be up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// More than half.
    Majority,
    /// At least one.
    Any,
    /// Every one.
    All,
}

#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// False (`dns.serve: false`): no embedded DNS server; `listen` is empty.
    pub serve: bool,
    pub listen: Vec<SocketAddr>,
    /// TTL of hostname answers, and of the SOA (and so of negative answers).
    pub ttl: Duration,
    /// TTL of apex NS records and their glue.
    pub ns_ttl: Duration,
    /// SOA RNAME, as a domain name (`hostmaster.<parent of the zone>` by default).
    pub hostmaster: Name,
}

#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub listen: SocketAddr,
    pub refresh: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// Published addresses (A and AAAA records), in the order written.
    pub addresses: Vec<IpAddr>,
    /// Address the checks connect to: `probe_address`, or the first published address.
    pub probe_address: IpAddr,
    /// Higher wins.
    pub priority: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub id: String,
    pub kind: CheckKind,
    pub timing: Timing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Http(HttpCheck),
    Tcp(TcpCheck),
}

impl CheckKind {
    /// The word the dashboard and logs use: http, https or tcp.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Http(h) if h.https => "https",
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub https: bool,
    /// URL with `{address}` still in it; filled per node.
    pub url_template: String,
    /// Inclusive range of accepted status codes.
    pub expect_status: (u16, u16),
    pub expect_body: Option<String>,
    pub host_header: Option<String>,
    pub headers: Vec<(String, String)>,
    pub tls_verify: bool,
    pub body_limit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpCheck {
    pub port: u16,
    /// A line sent after connecting (`\r\n` is appended).
    pub send: Option<String>,
    /// A substring the first bytes from the server must contain.
    pub expect: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between probes while the check passes.
    pub interval: Duration,
    /// Between probes while it fails or is not yet confirmed.
    pub retry_interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before an up check goes down.
    pub fall: u32,
    /// Consecutive passes before a down check comes back up.
    pub rise: u32,
}

#[derive(Debug, Clone)]
pub struct Hostname {
    /// As written, relative to the zone (`ias`).
    pub name: String,
    pub fqdn: Name,
    /// Indexes into `Config::checks`: a node serves the name while all of them are up.
    pub checks: Vec<usize>,
    /// Indexes into `Config::nodes` that may serve the name.
    pub nodes: Vec<usize>,
    pub mode: Mode,
    pub when_all_down: WhenAllDown,
    pub family: Family,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The best eligible node only.
    Failover,
    /// Every eligible node, best first.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenAllDown {
    /// Every node of the hostname (fail open).
    All,
    /// No address: NOERROR with no answer.
    None,
    /// Keep the last answer that had nodes.
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn allows(self, ip: &IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::Ipv4 => ip.is_ipv4(),
            Family::Ipv6 => ip.is_ipv6(),
        }
    }
}

impl Config {
    /// Index of the (node, check) pair in every per-pair table.
    pub fn pair_index(&self, node: usize, check: usize) -> usize {
        node * self.checks.len() + check
    }

    pub fn pair_count(&self) -> usize {
        self.nodes.len() * self.checks.len()
    }

    /// The (node, check) of a pair index.
    pub fn pair(&self, index: usize) -> (usize, usize) {
        (index / self.checks.len(), index % self.checks.len())
    }

    /// The longest check timeout: the first full round cannot take longer.
    pub fn longest_timeout(&self) -> Duration {
        self.checks
            .iter()
            .map(|c| c.timing.timeout)
            .max()
            .unwrap_or_default()
    }
}

/// A configuration problem, located in the file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column, when the problem sits at a place in the file.
    pub location: Option<(u64, u64)>,
    /// Key path such as `hostnames[0].checks[1]`; empty for file-level problems.
    pub key: String,
    pub message: String,
    /// The offending line(s) with a caret, when known.
    pub snippet: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": {}: {}", self.key, self.message)?;
        }
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        location: None,
        key: String::new(),
        message: format!("cannot read the configuration file: {e} (pass --config FILE)"),
        snippet: None,
    })?;
    parse(path, &text)
}

/// Parses and validates configuration text; `path` is used in messages only.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let file_name = path.display().to_string();
    let mut key = String::new();
    let parsed: Result<ConfigFile, _> = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            key = e.path().to_string();
            e.into_inner()
        })
    });
    let raw = parsed.map_err(|e| {
        let location = e.location().map(|l| (l.line(), l.column()));
        let rendered = e.to_string();
        // serde-saphyr renders "error: line L column C: message\n --> <input>:L:C\n snippet".
        let mut lines = rendered.lines();
        let first = lines.next().unwrap_or_default();
        let message = first
            .split_once(": ")
            .and_then(|(_, rest)| rest.split_once(": ").map(|(_, m)| m))
            .unwrap_or(first)
            .to_string();
        let snippet: Vec<&str> = lines
            .filter(|l| !l.trim_start().starts_with("-->"))
            .collect();
        // `Spanned` fields add a `.value` step that is not in the file; `?` and `.` mean "the top".
        let key = key.replace(".value", "");
        let key = if key == "." || key == "?" {
            String::new()
        } else {
            key
        };
        let message = match message.split_once(", set DuplicateKeyPolicy") {
            Some((head, _)) => format!("{head} (each key may appear once)"),
            None => message,
        };
        // A required top-level key is missing: no line in the file is to blame.
        let top_level_missing = key.is_empty() && message.starts_with("missing field");
        ConfigError {
            file: file_name.clone(),
            location: if top_level_missing { None } else { location },
            key,
            message,
            snippet: if top_level_missing || snippet.is_empty() {
                None
            } else {
                Some(snippet.join("\n"))
            },
        }
    })?;
    Validator {
        file: file_name,
        text,
        errors: Vec::new(),
    }
    .validate(path, raw)
}

/// Cross-checks the parsed file and builds the `Config`.
struct Validator<'a> {
    file: String,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> Validator<'a> {
    fn error<T>(
        &self,
        span: &Spanned<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = (span.referenced.line(), span.referenced.column());
        let location = (line > 0).then_some((line, column));
        ConfigError {
            file: self.file.clone(),
            location,
            key: key.into(),
            message: message.into(),
            snippet: location.and_then(|(l, c)| snippet(self.text, l, c)),
        }
    }

    fn plain_error(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            location: None,
            key: key.into(),
            message: message.into(),
            snippet: None,
        }
    }

    fn validate(mut self, path: &Path, raw: ConfigFile) -> Result<Config, ConfigError> {
        let ConfigFile {
            zone,
            self_id,
            dns,
            dashboard,
            defaults,
            nodes,
            checks,
            hostnames,
            notify,
            cluster,
            secondaries,
            publish,
        } = raw;

        let zone_name = self.zone(&zone)?;
        let serve_span = dns.serve.clone();
        for (value, key) in [(&dns.ttl, "dns.ttl"), (&dns.ns_ttl, "dns.ns_ttl")] {
            self.bounded(value.as_ref(), key, (Duration::ZERO, MAX_TTL), ttl_text)?;
        }
        let refresh = dashboard.refresh.as_ref();
        self.bounded(refresh, "dashboard.refresh", REFRESH_RANGE, format_duration)?;
        let dns = self.dns(dns, &zone_name)?;
        let dashboard = self.dashboard(dashboard)?;
        let defaults = self.timing_defaults(&defaults)?;

        if nodes.is_empty() {
            return Err(self.plain_error("nodes", "at least one node is needed"));
        }
        let mut node_ids: HashMap<String, usize> = HashMap::new();
        let mut folded_node_ids = HashMap::new();
        let mut built_nodes = Vec::new();
        for (i, entry) in nodes.into_iter().enumerate() {
            self.unique_ignoring_case(
                &entry.id,
                &format!("nodes[{i}].id"),
                "node",
                &mut folded_node_ids,
            )?;
            let node = self.node(i, entry, &mut node_ids)?;
            built_nodes.push(node);
        }

        if checks.is_empty() {
            return Err(self.plain_error("checks", "at least one check is needed"));
        }
        let mut check_ids: HashMap<String, usize> = HashMap::new();
        let mut folded_check_ids = HashMap::new();
        let mut built_checks = Vec::new();
        for (i, entry) in checks.into_iter().enumerate() {
            self.unique_ignoring_case(
                &entry.id,
                &format!("checks[{i}].id"),
                "check",
                &mut folded_check_ids,
            )?;
            let check = self.check(i, entry, &defaults, &mut check_ids)?;
            built_checks.push(check);
        }

        if hostnames.is_empty() {
            return Err(self.plain_error("hostnames", "at least one hostname is needed"));
        }
        let mut built_hostnames: Vec<Hostname> = Vec::new();
        for (i, entry) in hostnames.into_iter().enumerate() {
            let hostname =
                self.hostname(i, entry, &zone_name, &built_nodes, &node_ids, &check_ids)?;
            if let Some(other) = built_hostnames.iter().find(|h| h.fqdn == hostname.fqdn) {
                return Err(self.plain_error(
                    format!("hostnames[{i}].name"),
                    format!(
                        "`{}` is listed twice; each hostname may appear once",
                        other.name
                    ),
                ));
            }
            built_hostnames.push(hostname);
        }
        let (self_node, self_source) = match &self_id {
            Some(id) => match node_ids.get(id.value.as_str()) {
                Some(&i) => (Some(i), SelfSource::Configured),
                None => {
                    let known: Vec<&str> = built_nodes.iter().map(|n| n.id.as_str()).collect();
                    return Err(self.error(
                        id,
                        "self",
                        format!(
                            "`{}` is not a node id (nodes: {})",
                            id.value,
                            known.join(", ")
                        ),
                    ));
                }
            },
            None => detect_self(&built_nodes),
        };

        let config_dir = path.parent().unwrap_or(Path::new("."));
        let notify = self.notify(notify, config_dir)?;
        let cluster = match cluster {
            None => None,
            Some(section) => Some(self.cluster(section, self_node, &self_source)?),
        };
        let secondaries = match secondaries {
            None => None,
            Some(section) => Some(self.secondaries(section)?),
        };

        let publish = match publish {
            None => None,
            Some(section) => Some(self.publish(section, &zone_name, dns.ttl)?),
        };
        if let Some(serve) = serve_span.as_ref().filter(|s| !s.value)
            && secondaries.is_some()
        {
            return Err(self.error(
                serve,
                "dns.serve",
                "with `serve: false` no DNS server answers the secondaries' transfers: remove `secondaries:` (the secondaries can be fed by `publish:` instead) or `serve: false`",
            ));
        }
        if let Some(serve) = serve_span.filter(|s| !s.value)
            && publish.is_none()
        {
            return Err(self.error(
                &serve,
                "dns.serve",
                "with `serve: false` nothing would answer for the hostnames: add a `publish:` section (the servers that get the records by dynamic update), or remove `serve: false`",
            ));
        }

        if let Some(first) = self.errors.drain(..).next() {
            return Err(first);
        }

        Ok(Config {
            path: path.to_path_buf(),
            zone: zone_name,
            self_node,
            self_source,
            dns,
            dashboard,
            nodes: built_nodes,
            checks: built_checks,
            hostnames: built_hostnames,
            notify,
            cluster,
            secondaries,
            publish,
        })
    }

    fn cluster(
        &self,
        section: file::ClusterSection,
        self_node: Option<usize>,
        self_source: &SelfSource,
    ) -> Result<ClusterConfig, ConfigError> {
        let file::ClusterSection {
            listen,
            secret_env,
            quorum,
            period,
        } = section;
        let listen = match &listen {
            Some(l) => self.socket_addr(l, "cluster.listen")?,
            None => DEFAULT_CLUSTER_LISTEN.parse().expect("valid default"),
        };
        let quorum = match quorum.as_ref().map(|q| q.value.as_str()) {
            None | Some("majority") => Quorum::Majority,
            Some("any") => Quorum::Any,
            Some("all") => Quorum::All,
            Some(other) => {
                return Err(self.error(
                    quorum.as_ref().expect("present"),
                    "cluster.quorum",
                    format!("`{other}` is not one of majority, any, all"),
                ));
            }
        };
        let secret_env = match secret_env {
            None => DEFAULT_CLUSTER_SECRET_ENV.to_string(),
            Some(name) => {
                let valid = !name.value.is_empty()
                    && name
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.value.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    return Err(self.error(
                        &name,
                        "cluster.secret_env",
                        format!("`{}` is not an environment variable name (example: FAILOVERD_CLUSTER_SECRET); the secret itself never goes in the file", name.value),
                    ));
                }
                name.value
            }
        };
        let period_value = period
            .as_ref()
            .map(|p| p.value.0)
            .unwrap_or(Duration::from_secs(2));
        if let Some(span) = &period
            && !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&period_value)
        {
            let message = format!("{} is outside 100ms–60s", format_duration(period_value));
            return Err(self.error(span, "cluster.period", message));
        }
        let period = period_value;
        if self_node.is_none() {
            let why = match self_source {
                SelfSource::Ambiguous(ids) => format!(
                    "several nodes' addresses are on this machine ({})",
                    ids.join(", ")
                ),
                _ => "no node's address is on this machine".to_string(),
            };
            return Err(self.plain_error(
                "self",
                format!("agents of a cluster must know which node they are, and {why}: set `self: <node id>`"),
            ));
        }
        Ok(ClusterConfig {
            listen,
            secret_env,
            quorum,
            period,
        })
    }

    fn zone(&self, zone: &Spanned<String>) -> Result<Name, ConfigError> {
        let text = zone.value.trim().trim_end_matches('.');
        let name = Name::from_ascii(text)
            .ok()
            .filter(|n| n.num_labels() >= 1 && !text.is_empty() && !text.contains(' '))
            .ok_or_else(|| {
                self.error(
                    zone,
                    "zone",
                    format!(
                        "`{}` is not a domain name (example: ha.example.com)",
                        zone.value
                    ),
                )
            })?;
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        Ok(name)
    }

    fn dns(&self, dns: file::DnsSection, zone: &Name) -> Result<DnsConfig, ConfigError> {
        let file::DnsSection {
            serve,
            listen,
            ttl,
            ns_ttl,
            nameservers,
            hostmaster,
        } = dns;
        let serve = serve.is_none_or(|s| s.value);
        let listen = match listen {
            // Nothing is bound: `dns.listen` is left unused.
            _ if !serve => Vec::new(),
            Some(list) => {
                if list.is_empty() {
                    return Err(self
                        .plain_error("dns.listen", "give at least one address:port to answer on"));
                }
                let mut out = Vec::new();
                for (i, item) in list.iter().enumerate() {
                    out.push(self.socket_addr(item, &format!("dns.listen[{i}]"))?);
                }
                out
            }
            None => DEFAULT_DNS_LISTEN
                .iter()
                .map(|s| s.parse().expect("valid default"))
                .collect(),
        };
        if let Some(ns) = nameservers
            && ns.value != "auto"
        {
            return Err(self.error(
                &ns,
                "dns.nameservers",
                format!("`{}` is not supported; the only value is `auto` (ns-<node id>.<zone> for every node, with glue)", ns.value),
            ));
        }
        // Bounded by `validate` (at most MAX_TTL): whole seconds fit a u32.
        let ttl = ttl.map(|d| d.value.0).unwrap_or(Duration::from_secs(10));
        let hostmaster = match hostmaster {
            // Outside the zone: the agent serves no MX or address for `hostmaster.<zone>`, so
            // mail to it could never be delivered. The parent domain is where mail for the
            // organization is received; a zone right below a TLD keeps its own name (set
            // `dns.hostmaster` then).
            None => {
                let domain = if zone.num_labels() >= 3 {
                    zone.base_name()
                } else {
                    zone.clone()
                };
                Name::from_ascii("hostmaster")
                    .expect("valid")
                    .append_domain(&domain)
                    .expect("short")
            }
            Some(mail) => {
                let as_name = mail.replacen('@', ".", 1);
                let mut name = Name::from_ascii(as_name.trim_end_matches('.')).map_err(|e| {
                    self.plain_error(
                        "dns.hostmaster",
                        format!("`{mail}` is not a mailbox such as hostmaster@example.com: {e}"),
                    )
                })?;
                name.set_fqdn(true);
                name
            }
        };
        Ok(DnsConfig {
            serve,
            listen,
            ttl,
            ns_ttl: ns_ttl
                .map(|d| d.value.0)
                .unwrap_or(Duration::from_secs(3600)),
            hostmaster,
        })
    }

    fn dashboard(&self, dashboard: file::DashboardSection) -> Result<DashboardConfig, ConfigError> {
        let file::DashboardSection { listen, refresh } = dashboard;
        let listen = match listen {
            Some(l) => self.socket_addr(&l, "dashboard.listen")?,
            None => "127.0.0.1:81".parse().expect("valid default"),
        };
        Ok(DashboardConfig {
            listen,
            refresh: refresh
                .map(|d| d.value.0)
                .unwrap_or(Duration::from_secs(60)),
        })
    }

    fn socket_addr(&self, item: &Spanned<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        item.value.trim().parse::<SocketAddr>().map_err(|_| {
            self.error(
                item,
                key,
                format!(
                    "`{}` is not an address:port (examples: 0.0.0.0:53, [::]:53, 127.0.0.1:5353)",
                    item.value
                ),
            )
        })
    }

    /// Refuses a written duration outside `min..=max`, naming the key to change.
    fn bounded(
        &self,
        value: Option<&Spanned<HumanDuration>>,
        key: &str,
        (min, max): (Duration, Duration),
        show: fn(Duration) -> String,
    ) -> Result<(), ConfigError> {
        let Some(span) = value else { return Ok(()) };
        let v = span.value.0;
        if v < min {
            let message = format!("{} is too short; use at least {}", show(v), show(min));
            return Err(self.error(span, key, message));
        }
        if v > max {
            let message = format!("{} is too long; use at most {}", show(v), show(max));
            return Err(self.error(span, key, message));
        }
        Ok(())
    }

    /// Refuses an id that differs from an earlier one only in letter case: ids become DNS names
    /// (`ns-<node id>`), labels and metric values, where `n1` and `N1` read as one. An exact
    /// repeat is left to the caller's own "used twice" message.
    fn unique_ignoring_case(
        &self,
        id: &Spanned<String>,
        key: &str,
        what: &str,
        seen: &mut HashMap<String, String>,
    ) -> Result<(), ConfigError> {
        match seen.get(&id.value.to_ascii_lowercase()) {
            Some(earlier) if *earlier != id.value => Err(self.error(
                id,
                key,
                format!(
                    "{what} id `{}` differs from `{earlier}` only in case; ids are compared ignoring case (DNS names are), so rename one",
                    id.value
                ),
            )),
            Some(_) => Ok(()),
            None => {
                seen.insert(id.value.to_ascii_lowercase(), id.value.clone());
                Ok(())
            }
        }
    }

    fn timing_defaults(&self, d: &TimingSection) -> Result<Timing, ConfigError> {
        let base = Timing {
            interval: Duration::from_secs(30),
            retry_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            fall: 2,
            rise: 2,
        };
        self.timing(&base, d, "defaults")
    }

    fn timing(
        &self,
        base: &Timing,
        t: &TimingSection,
        prefix: &str,
    ) -> Result<Timing, ConfigError> {
        let pick = |v: &Option<Spanned<HumanDuration>>, d: Duration| {
            v.as_ref().map(|s| s.value.0).unwrap_or(d)
        };
        let interval = pick(&t.interval, base.interval);
        // Unset here while the interval is set here, the retry interval and the timeout are the
        // inherited values, but no longer than this interval: probing a failing check less often
        // than a passing one would only delay failback, and `interval: 1s` alone must not meet
        // the built-in 5 s timeout.
        let follow =
            |v: &Option<Spanned<HumanDuration>>, inherited: Duration| match (v, &t.interval) {
                (Some(written), _) => written.value.0,
                (None, Some(_)) => inherited.min(interval),
                (None, None) => inherited,
            };
        let timing = Timing {
            interval,
            retry_interval: follow(&t.retry_interval, base.retry_interval),
            timeout: follow(&t.timeout, base.timeout),
            fall: t.fall.as_ref().map(|s| s.value).unwrap_or(base.fall),
            rise: t.rise.as_ref().map(|s| s.value).unwrap_or(base.rise),
        };
        // Inherited values were bounded where they were written; written ones are bounded here.
        for (name, span, max) in [
            ("interval", &t.interval, MAX_INTERVAL),
            ("retry_interval", &t.retry_interval, MAX_INTERVAL),
            ("timeout", &t.timeout, MAX_TIMEOUT),
        ] {
            let key = format!("{prefix}.{name}");
            self.bounded(span.as_ref(), &key, (MIN_TIMING, max), format_duration)?;
        }
        for (name, value, span) in [
            ("fall", timing.fall, &t.fall),
            ("rise", timing.rise, &t.rise),
        ] {
            if value == 0 {
                let message = "must be at least 1".to_string();
                return Err(match span {
                    Some(s) => self.error(s, format!("{prefix}.{name}"), message),
                    None => self.plain_error(format!("{prefix}.{name}"), message),
                });
            }
        }
        // A retry_interval shorter than the timeout is fine: probes of a pair run one after the
        // other, so the next one starts when the previous ends. A timeout longer than the
        // interval is not: a passing check could not keep its period. Only a timeout written
        // here can get there (an inherited one follows the interval, see above).
        if timing.timeout > timing.interval
            && let Some(span) = &t.timeout
        {
            let message = format!(
                "timeout {} is longer than interval {}; lower `{prefix}.timeout` or set a longer `{prefix}.interval`",
                format_duration(timing.timeout),
                format_duration(timing.interval)
            );
            return Err(self.error(span, format!("{prefix}.timeout"), message));
        }
        Ok(timing)
    }

    fn node(
        &self,
        i: usize,
        entry: NodeEntry,
        ids: &mut HashMap<String, usize>,
    ) -> Result<Node, ConfigError> {
        let NodeEntry {
            id,
            address,
            addresses,
            probe_address,
            priority,
        } = entry;
        let key = format!("nodes[{i}]");
        if !is_label(&id.value) {
            return Err(self.error(
                &id,
                format!("{key}.id"),
                format!("`{}` is not usable as a node id: use letters, digits and '-' (it becomes ns-<id>.<zone>)", id.value),
            ));
        }
        if ids.insert(id.value.clone(), i).is_some() {
            return Err(self.error(
                &id,
                format!("{key}.id"),
                format!(
                    "node id `{}` is used twice; node ids must be unique",
                    id.value
                ),
            ));
        }
        let mut published = Vec::new();
        match (address, addresses) {
            (Some(_), Some(_)) => {
                return Err(self.error(&id, key, "give either `address` or `addresses`, not both"));
            }
            (None, None) => {
                return Err(self.error(
                    &id,
                    key,
                    format!(
                        "node `{}` has no `address` (or `addresses: [IPv4, IPv6]`)",
                        id.value
                    ),
                ));
            }
            (Some(a), None) => published.push(self.ip(&a, &format!("{key}.address"))?),
            (None, Some(list)) => {
                if list.is_empty() {
                    return Err(self.error(
                        &id,
                        format!("{key}.addresses"),
                        "is empty; give at least one address",
                    ));
                }
                for (j, a) in list.iter().enumerate() {
                    let ip = self.ip(a, &format!("{key}.addresses[{j}]"))?;
                    if published.contains(&ip) {
                        return Err(self.error(
                            a,
                            format!("{key}.addresses[{j}]"),
                            format!("{ip} is listed twice"),
                        ));
                    }
                    published.push(ip);
                }
            }
        }
        let probe = match probe_address {
            Some(p) => self.ip(&p, &format!("{key}.probe_address"))?,
            None => published[0],
        };
        Ok(Node {
            id: id.value,
            addresses: published,
            probe_address: probe,
            priority: priority.unwrap_or(0),
        })
    }

    fn ip(&self, item: &Spanned<String>, key: &str) -> Result<IpAddr, ConfigError> {
        item.value
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| {
                self.error(
                    item,
                    key,
                    format!(
                        "`{}` is not an IPv4 or IPv6 address (names are not resolved)",
                        item.value
                    ),
                )
            })
    }

    fn check(
        &self,
        i: usize,
        entry: CheckEntry,
        defaults: &Timing,
        ids: &mut HashMap<String, usize>,
    ) -> Result<Check, ConfigError> {
        let CheckEntry {
            id,
            kind,
            url,
            expect_status,
            expect_body,
            host,
            headers,
            tls_verify,
            body_limit,
            port,
            send,
            expect,
            interval,
            retry_interval,
            timeout,
            fall,
            rise,
        } = entry;
        let key = format!("checks[{i}]");
        if id.value.trim().is_empty() || id.value.contains(char::is_whitespace) {
            return Err(self.error(
                &id,
                format!("{key}.id"),
                format!("`{}` is not a usable check id (no spaces)", id.value),
            ));
        }
        if ids.insert(id.value.clone(), i).is_some() {
            return Err(self.error(
                &id,
                format!("{key}.id"),
                format!(
                    "check id `{}` is used twice; check ids must be unique",
                    id.value
                ),
            ));
        }
        let timing_section = TimingSection {
            interval,
            retry_interval,
            timeout,
            fall,
            rise,
        };
        let timing = self.timing(defaults, &timing_section, &key)?;

        let type_name = kind.value.to_ascii_lowercase();
        let checks_kind = match type_name.as_str() {
            "http" | "https" => {
                let https = type_name == "https";
                for (name, present) in [
                    ("port", port.is_some()),
                    ("send", send.is_some()),
                    ("expect", expect.is_some()),
                ] {
                    if present {
                        return Err(self.error(&kind, format!("{key}.{name}"), format!("`{name}` applies to tcp checks only; http checks put the port in `url`")));
                    }
                }
                let url = url.ok_or_else(|| {
                    self.error(
                        &kind,
                        format!("{key}.url"),
                        "http checks need `url`, for example \"http://{address}/health\"",
                    )
                })?;
                let scheme = if https { "https://" } else { "http://" };
                if !url.value.starts_with(scheme) {
                    return Err(self.error(
                        &url,
                        format!("{key}.url"),
                        format!(
                            "`{}` must start with {scheme} for a {type_name} check",
                            url.value
                        ),
                    ));
                }
                if !url.value.contains("{address}") {
                    return Err(self.error(
                        &url,
                        format!("{key}.url"),
                        format!("`{}` has no {{address}}: the check would probe the same place for every node", url.value),
                    ));
                }
                let sample = url.value.replace("{address}", "192.0.2.1");
                if reqwest::Url::parse(&sample).is_err() {
                    return Err(self.error(
                        &url,
                        format!("{key}.url"),
                        format!("`{}` is not a valid URL", url.value),
                    ));
                }
                let expect_status = match expect_status {
                    None => (200, 399),
                    Some(spec) => self.status_range(&spec, &format!("{key}.expect_status"))?,
                };
                let mut header_list = Vec::new();
                for (name, value) in headers {
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                        || reqwest::header::HeaderValue::from_str(&value).is_err()
                    {
                        return Err(self.error(
                            &id,
                            format!("{key}.headers.{name}"),
                            "is not a valid HTTP header name and value",
                        ));
                    }
                    header_list.push((name, value));
                }
                if let Some(h) = &host
                    && reqwest::header::HeaderValue::from_str(h).is_err()
                {
                    return Err(self.error(
                        &id,
                        format!("{key}.host"),
                        format!("`{h}` is not a valid Host header"),
                    ));
                }
                if let Some(limit) = &body_limit
                    && !(1..=MAX_BODY_LIMIT).contains(&limit.value)
                {
                    return Err(self.error(
                        limit,
                        format!("{key}.body_limit"),
                        format!(
                            "{} bytes is outside 1..={MAX_BODY_LIMIT} (16 MiB); a health page needs far less, the default is {DEFAULT_BODY_LIMIT}",
                            limit.value
                        ),
                    ));
                }
                CheckKind::Http(HttpCheck {
                    https,
                    url_template: url.value,
                    expect_status,
                    expect_body,
                    host_header: host,
                    headers: header_list,
                    tls_verify: tls_verify.unwrap_or(true),
                    body_limit: body_limit.map(|b| b.value).unwrap_or(DEFAULT_BODY_LIMIT),
                })
            }
            "tcp" | "telnet" => {
                for (name, present) in [
                    ("url", url.is_some()),
                    ("expect_status", expect_status.is_some()),
                    ("expect_body", expect_body.is_some()),
                    ("host", host.is_some()),
                    ("headers", !headers.is_empty()),
                    ("tls_verify", tls_verify.is_some()),
                    ("body_limit", body_limit.is_some()),
                ] {
                    if present {
                        return Err(self.error(
                            &kind,
                            format!("{key}.{name}"),
                            format!("`{name}` applies to http/https checks only"),
                        ));
                    }
                }
                let port = port.ok_or_else(|| {
                    self.error(&kind, format!("{key}.port"), "tcp checks need `port`")
                })?;
                if port.value == 0 {
                    return Err(self.error(
                        &port,
                        format!("{key}.port"),
                        "port 0 cannot be probed",
                    ));
                }
                CheckKind::Tcp(TcpCheck {
                    port: port.value,
                    send,
                    expect,
                })
            }
            other => {
                return Err(self.error(&kind, format!("{key}.type"), format!("`{other}` is not a check type; use http, https or tcp (telnet is an alias of tcp)")));
            }
        };
        Ok(Check {
            id: id.value,
            kind: checks_kind,
            timing,
        })
    }

    fn status_range(
        &self,
        spec: &Spanned<StatusSpec>,
        key: &str,
    ) -> Result<(u16, u16), ConfigError> {
        let bad = |text: String| {
            self.error(
                spec,
                key,
                format!(
                    "`{text}` is not a status or range of statuses (examples: 200, \"200-399\")"
                ),
            )
        };
        let (lo, hi) = match &spec.value {
            StatusSpec::Code(c) => (*c, *c),
            StatusSpec::Text(t) => match t.split_once('-') {
                Some((a, b)) => (
                    a.trim().parse().map_err(|_| bad(t.clone()))?,
                    b.trim().parse().map_err(|_| bad(t.clone()))?,
                ),
                None => {
                    let c = t.trim().parse().map_err(|_| bad(t.clone()))?;
                    (c, c)
                }
            },
        };
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(bad(format!("{lo}-{hi}")));
        }
        Ok((lo, hi))
    }

    fn hostname(
        &self,
        i: usize,
        entry: HostnameEntry,
        zone: &Name,
        nodes: &[Node],
        node_ids: &HashMap<String, usize>,
        check_ids: &HashMap<String, usize>,
    ) -> Result<Hostname, ConfigError> {
        let HostnameEntry {
            name,
            checks,
            nodes: only_nodes,
            mode,
            when_all_down,
            family,
        } = entry;
        let key = format!("hostnames[{i}]");
        let relative = name.value.trim().trim_end_matches('.').to_ascii_lowercase();
        let zone_text = zone.to_ascii().trim_end_matches('.').to_string();
        let relative = relative
            .strip_suffix(&format!(".{zone_text}"))
            .map(str::to_string)
            .unwrap_or(relative);
        let valid = !relative.is_empty() && relative != "@" && relative.split('.').all(is_label);
        let fqdn = valid
            .then(|| {
                Name::from_ascii(&relative)
                    .ok()
                    .and_then(|n| n.append_domain(zone).ok())
            })
            .flatten()
            .ok_or_else(|| {
                self.error(
                    &name,
                    format!("{key}.name"),
                    format!(
                        "`{}` is not a name inside the zone (example: ias, for ias.{zone_text})",
                        name.value
                    ),
                )
            })?;

        // `ns-<node id>` is the nameserver name of that node (ids compare ignoring case, as DNS does).
        if let Some(node) = relative
            .strip_prefix("ns-")
            .and_then(|id| nodes.iter().find(|n| n.id.eq_ignore_ascii_case(id)))
        {
            return Err(self.error(
                &name,
                format!("{key}.name"),
                format!(
                    "`{relative}` is the nameserver name of node `{}`; pick another name",
                    node.id
                ),
            ));
        }
        if checks.is_empty() {
            return Err(self.error(
                &name,
                format!("{key}.checks"),
                "list at least one check id; a node serves the name while all of them are up",
            ));
        }
        let mut check_idx = Vec::new();
        for (j, c) in checks.iter().enumerate() {
            let Some(&idx) = check_ids.get(c.value.as_str()) else {
                let mut known: Vec<&String> = check_ids.keys().collect();
                known.sort();
                let known: Vec<&str> = known.into_iter().map(String::as_str).collect();
                return Err(self.error(
                    c,
                    format!("{key}.checks[{j}]"),
                    format!(
                        "unknown check `{}` (checks defined: {})",
                        c.value,
                        known.join(", ")
                    ),
                ));
            };
            if !check_idx.contains(&idx) {
                check_idx.push(idx);
            }
        }

        let node_idx: Vec<usize> = match &only_nodes {
            None => (0..nodes.len()).collect(),
            Some(list) => {
                if list.is_empty() {
                    return Err(self.error(
                        &name,
                        format!("{key}.nodes"),
                        "is empty; leave it out to use every node",
                    ));
                }
                let mut out = BTreeSet::new();
                for (j, n) in list.iter().enumerate() {
                    let Some(&idx) = node_ids.get(n.value.as_str()) else {
                        let known: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
                        return Err(self.error(
                            n,
                            format!("{key}.nodes[{j}]"),
                            format!("unknown node `{}` (nodes: {})", n.value, known.join(", ")),
                        ));
                    };
                    out.insert(idx);
                }
                out.into_iter().collect()
            }
        };

        let mode = match mode.as_ref().map(|m| m.value.as_str()) {
            None | Some("failover") => Mode::Failover,
            Some("all") => Mode::All,
            Some(other) => {
                return Err(self.error(
                    mode.as_ref().expect("present"),
                    format!("{key}.mode"),
                    format!("`{other}` is not a mode; use failover or all"),
                ));
            }
        };
        let when_all_down = match when_all_down.as_ref().map(|m| m.value.as_str()) {
            None | Some("all") => WhenAllDown::All,
            Some("none") => WhenAllDown::None,
            Some("last") => WhenAllDown::Last,
            Some(other) => {
                return Err(self.error(
                    when_all_down.as_ref().expect("present"),
                    format!("{key}.when_all_down"),
                    format!("`{other}` is not one of all, none, last"),
                ));
            }
        };
        let family_value = match family.as_ref().map(|m| m.value.as_str()) {
            None | Some("any") => Family::Any,
            Some("ipv4") => Family::Ipv4,
            Some("ipv6") => Family::Ipv6,
            Some(other) => {
                return Err(self.error(
                    family.as_ref().expect("present"),
                    format!("{key}.family"),
                    format!("`{other}` is not one of any, ipv4, ipv6"),
                ));
            }
        };
        let without: Vec<&str> = node_idx
            .iter()
            .map(|&n| &nodes[n])
            .filter(|n| !n.addresses.iter().any(|a| family_value.allows(a)))
            .map(|n| n.id.as_str())
            .collect();
        if !without.is_empty() {
            let wanted = match family_value {
                Family::Ipv4 => "an IPv4",
                Family::Ipv6 => "an IPv6",
                Family::Any => "an",
            };
            return Err(self.error(
                family.as_ref().unwrap_or(&name),
                format!("{key}.family"),
                format!(
                    "`{relative}` can only publish {} addresses, but node(s) {} have no such address; give them {wanted} address or change `family`",
                    match family_value { Family::Ipv6 => "IPv6", _ => "IPv4" },
                    without.join(", ")
                ),
            ));
        }

        Ok(Hostname {
            name: relative,
            fqdn,
            checks: check_idx,
            nodes: node_idx,
            mode,
            when_all_down,
            family: family_value,
        })
    }
}

/// A TTL as RFC 2181 counts it: whole seconds.
fn ttl_text(d: Duration) -> String {
    if d == MAX_TTL {
        format!("{}s (2^31 − 1, RFC 2181)", d.as_secs())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// A DNS label usable for node ids and hostnames: letters, digits, '-', not at the ends.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Finds which node this machine is by trying to bind each node's addresses locally.
fn detect_self(nodes: &[Node]) -> (Option<usize>, SelfSource) {
    let local: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            n.addresses
                .iter()
                .any(|ip| std::net::UdpSocket::bind((*ip, 0)).is_ok())
        })
        .map(|(i, _)| i)
        .collect();
    match local.as_slice() {
        [] => (None, SelfSource::NotFound),
        [one] => (Some(*one), SelfSource::LocalAddress),
        many => (
            None,
            SelfSource::Ambiguous(many.iter().map(|&i| nodes[i].id.clone()).collect()),
        ),
    }
}

/// The source line at `line` with a caret under `column`, as the YAML errors show it.
fn snippet(text: &str, line: u64, column: u64) -> Option<String> {
    let source = text.lines().nth(line.checked_sub(1)? as usize)?;
    let width = line.to_string().len();
    Some(format!(
        "{:>width$} | {source}\n{:>width$} | {}^",
        line,
        "",
        " ".repeat(column.saturating_sub(1) as usize)
    ))
}

#[cfg(test)]
mod tests;
