//! The validated `publish:` section: the DNS servers that get RFC 2136 updates of the answers,
//! the zone the names live in there, the TSIG key (or none: unsigned updates) and the TTL.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::Name;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::tsig::{TsigKeyConfig, TsigSection};
use super::{ConfigError, HumanDuration, MAX_TTL, Validator, format_duration};

/// Default time between two read-backs of the records on each server (drift detection).
pub const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(30);
/// The range of `publish.verify_interval`.
pub const VERIFY_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(200), Duration::from_secs(24 * 3600));
/// Default limit of one exchange (update or query) with a server.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// `publish:` exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSection {
    pub servers: Spanned<Vec<Spanned<String>>>,
    pub zone: Option<Spanned<String>>,
    pub tsig: Option<TsigSection>,
    pub ttl: Option<Spanned<HumanDuration>>,
    /// How often the records are read back from each server (extension of the spec).
    pub verify_interval: Option<Spanned<HumanDuration>>,
    /// Limit of one exchange with a server (extension of the spec).
    pub timeout: Option<Spanned<HumanDuration>>,
}

/// Where and how the answers are published by dynamic update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishConfig {
    /// Primaries that accept updates, each given every change (port 53 unless written).
    pub servers: Vec<SocketAddr>,
    /// The zone the names live in on those servers: the agent's zone or a parent of it.
    pub zone: Name,
    /// The key updates are signed with; `None`: unsigned updates.
    pub tsig: Option<TsigKeyConfig>,
    /// TTL of the published A and AAAA records.
    pub ttl: Duration,
    /// Time between two read-backs of every name on every server.
    pub verify_interval: Duration,
    /// Limit of one update or query.
    pub timeout: Duration,
}

impl Validator<'_> {
    pub(super) fn publish(
        &self,
        section: PublishSection,
        agent_zone: &Name,
        dns_ttl: Duration,
    ) -> Result<PublishConfig, ConfigError> {
        let PublishSection {
            servers,
            zone,
            tsig,
            ttl,
            verify_interval,
            timeout,
        } = section;
        if servers.value.is_empty() {
            return Err(self.error(
                &servers,
                "publish.servers",
                "give at least one DNS server that accepts updates (address or address:port)",
            ));
        }
        let mut addrs = Vec::new();
        for (i, item) in servers.value.iter().enumerate() {
            let text = item.value.trim();
            let addr = text
                .parse::<SocketAddr>()
                .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    self.error(
                        item,
                        format!("publish.servers[{i}]"),
                        format!(
                            "`{}` is not an address or address:port (examples: 192.0.2.53, 192.0.2.53:53, [2001:db8::53]:53); names are not resolved",
                            item.value
                        ),
                    )
                })?;
            if addrs.contains(&addr) {
                return Err(self.error(
                    item,
                    format!("publish.servers[{i}]"),
                    format!("{addr} is listed twice"),
                ));
            }
            addrs.push(addr);
        }
        let zone = match &zone {
            None => agent_zone.clone(),
            Some(span) => {
                let parsed = self.zone(span).map_err(|mut e| {
                    e.key = "publish.zone".to_string();
                    e
                })?;
                if !parsed.zone_of(agent_zone) {
                    return Err(self.error(
                        span,
                        "publish.zone",
                        format!(
                            "`{}` does not contain the agent's zone `{}`; use that zone or a parent of it (the names published are <hostname>.{})",
                            span.value,
                            agent_zone.to_ascii().trim_end_matches('.'),
                            agent_zone.to_ascii().trim_end_matches('.'),
                        ),
                    ));
                }
                parsed
            }
        };
        let tsig = match tsig {
            None => None,
            Some(section) => Some(self.tsig(section, "publish.tsig")?),
        };
        self.bounded(
            ttl.as_ref(),
            "publish.ttl",
            (Duration::ZERO, MAX_TTL),
            |d| format!("{}s", d.as_secs()),
        )?;
        self.bounded(
            verify_interval.as_ref(),
            "publish.verify_interval",
            VERIFY_INTERVAL_RANGE,
            format_duration,
        )?;
        let timeout_range = (Duration::from_millis(50), Duration::from_secs(60));
        self.bounded(
            timeout.as_ref(),
            "publish.timeout",
            timeout_range,
            format_duration,
        )?;
        Ok(PublishConfig {
            servers: addrs,
            zone,
            tsig,
            ttl: ttl.map_or(dns_ttl, |t| t.value.0),
            verify_interval: verify_interval.map_or(DEFAULT_VERIFY_INTERVAL, |v| v.value.0),
            timeout: timeout.map_or(DEFAULT_PUBLISH_TIMEOUT, |v| v.value.0),
        })
    }
}

impl PublishConfig {
    /// One line for `check-config`.
    pub fn describe(&self) -> String {
        let servers: Vec<String> = self.servers.iter().map(|s| s.to_string()).collect();
        let signing = match &self.tsig {
            Some(key) => format!("signed with {}", key.describe()),
            None => "UNSIGNED (no tsig: the server must accept nonsecure updates)".to_string(),
        };
        format!(
            "RFC 2136 updates to {} in zone {}, ttl {}s, {signing}; read back every {}",
            servers.join(", "),
            self.zone.to_ascii().trim_end_matches('.'),
            self.ttl.as_secs(),
            format_duration(self.verify_interval)
        )
    }
}
