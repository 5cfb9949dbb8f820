//! The `secondaries:` section (zone transfers to NSD, Knot, BIND… and NOTIFY to them) and the
//! SOA timers, which the zone carries whether or not secondaries are configured.
//!
//! ```yaml
//! secondaries:
//!   notify: ["192.0.2.60:53"]       # told of every serial change (port 53 when left out)
//!   allow_from: ["192.0.2.60"]      # who may transfer: addresses or prefixes (default: the notify addresses)
//!   tsig: { name: xfr, algorithm: hmac-sha256, secret_env: FAILOVERD_XFR_SECRET }   # required
//!   soa: { refresh: 1h, retry: 10m, expire: 1w, minimum: 10s }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::duration::{HumanDuration, format_duration};
use super::tsig::{TsigKeyConfig, TsigSection};
use super::{ConfigError, Validator};

/// SOA REFRESH when not configured: how often a secondary asks for the serial when no NOTIFY
/// came. NOTIFY is what moves secondaries (retried until acknowledged), so this is only the
/// safety net for a NOTIFY lost every time.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
/// SOA RETRY: how often a secondary tries again after a failed refresh.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(600);
/// SOA EXPIRE: how long a secondary that reaches no agent goes on serving the last answers.
///
/// One week. If every agent is unreachable, the last answers (the best node the agents knew)
/// are the best information there is, and an expired zone answers SERVFAIL for every name,
/// which is the outage the agents exist to prevent. What makes every agent unreachable is
/// rarely every application node dying at once; it is a bad upgrade or configuration pushed
/// everywhere, or a firewall change between the secondaries and the agents, which can go
/// unnoticed over a long weekend. A week covers that and an operator's reaction with margin;
/// a zone of a cluster that was really decommissioned stops answering a week later. (RFC 1912
/// suggests 2–4 weeks for ordinary zones; their data do not go stale the way health does.)
pub const DEFAULT_EXPIRE: Duration = Duration::from_secs(7 * 86400);

/// Bounds of the timers, as RFC 1912 and the secondaries themselves accept them.
const REFRESH_RANGE: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(86400));
const RETRY_RANGE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(86400));
const EXPIRE_RANGE: (Duration, Duration) =
    (Duration::from_secs(3600), Duration::from_secs(90 * 86400));
const MINIMUM_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(86400));

/// `secondaries:` exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondariesSection {
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
    pub allow_from: Option<Vec<Spanned<String>>>,
    pub tsig: Option<TsigSection>,
    #[serde(default)]
    pub soa: SoaSection,
}

/// `secondaries.soa` exactly as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoaSection {
    pub refresh: Option<Spanned<HumanDuration>>,
    pub retry: Option<Spanned<HumanDuration>>,
    pub expire: Option<Spanned<HumanDuration>>,
    /// The negative-caching TTL (RFC 2308); `dns.ttl` when left out.
    pub minimum: Option<Spanned<HumanDuration>>,
}

/// The SOA timers the zone is served with (whole seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoaTimers {
    pub refresh: Duration,
    pub retry: Duration,
    pub expire: Duration,
    /// `None`: the hostname TTL (`dns.ttl`), as before the timers were configurable.
    pub minimum: Option<Duration>,
}

impl Default for SoaTimers {
    fn default() -> Self {
        SoaTimers {
            refresh: DEFAULT_REFRESH,
            retry: DEFAULT_RETRY,
            expire: DEFAULT_EXPIRE,
            minimum: None,
        }
    }
}

/// Who is fed the zone, and with which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondariesConfig {
    /// Sent a NOTIFY on every serial change, over UDP, until each acknowledges.
    pub notify: Vec<SocketAddr>,
    /// May transfer the zone (AXFR/IXFR over TCP, with the key); the notify addresses unless set.
    pub allow_from: Vec<IpNet>,
    /// Signs NOTIFYs and transfers; a transfer request must be signed with it.
    pub tsig: TsigKeyConfig,
    pub soa: SoaTimers,
}

impl Validator<'_> {
    /// Validates `secondaries:`; the SOA timers are returned apart, as the zone always has them.
    pub(super) fn secondaries(
        &self,
        spanned: Spanned<SecondariesSection>,
    ) -> Result<SecondariesConfig, ConfigError> {
        let at = Spanned {
            value: (),
            referenced: spanned.referenced,
            defined: spanned.defined,
        };
        let SecondariesSection {
            notify,
            allow_from,
            tsig,
            soa,
        } = spanned.value;
        let mut targets = Vec::new();
        for (i, item) in notify.iter().enumerate() {
            let text = item.value.trim();
            let addr = text
                .parse::<SocketAddr>()
                .ok()
                .or_else(|| {
                    let ip = text.trim_start_matches('[').trim_end_matches(']');
                    ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
                })
                .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
                .ok_or_else(|| {
                    self.error(
                        item,
                        format!("secondaries.notify[{i}]"),
                        format!(
                            "`{}` is not a secondary's address (examples: 192.0.2.60, 192.0.2.60:53, [2001:db8::60]:53)",
                            item.value
                        ),
                    )
                })?;
            if targets.contains(&addr) {
                return Err(self.error(
                    item,
                    format!("secondaries.notify[{i}]"),
                    format!("{addr} is listed twice"),
                ));
            }
            targets.push(addr);
        }
        let allow_from = match allow_from {
            None => targets.iter().map(|a| IpNet::from(a.ip())).collect(),
            Some(list) => {
                let mut out = Vec::new();
                for (i, item) in list.iter().enumerate() {
                    let text = item.value.trim();
                    let net = text
                        .parse::<IpNet>()
                        .ok()
                        .or_else(|| {
                            let ip = text.trim_start_matches('[').trim_end_matches(']');
                            ip.parse::<IpAddr>().ok().map(IpNet::from)
                        })
                        .ok_or_else(|| {
                            self.error(
                                item,
                                format!("secondaries.allow_from[{i}]"),
                                format!(
                                    "`{}` is not an address or prefix (examples: 192.0.2.60, 192.0.2.0/28, 2001:db8::/64)",
                                    item.value
                                ),
                            )
                        })?;
                    out.push(net.trunc());
                }
                out
            }
        };
        if targets.is_empty() && allow_from.is_empty() {
            return Err(self.error(
                &at,
                "secondaries",
                "name the secondaries: `notify` (told of every change; they may also transfer) or `allow_from` (may transfer)",
            ));
        }
        let tsig = match tsig {
            Some(section) => self.tsig(section, "secondaries.tsig")?,
            None => {
                return Err(self.error(
                    &at,
                    "secondaries.tsig",
                    "a key is required: zone transfers are signed (make one with `tsig-keygen -a hmac-sha256 xfr`, give the same key to the secondaries, and set `tsig: { name: xfr, secret_env: FAILOVERD_XFR_SECRET }`)",
                ));
            }
        };
        Ok(SecondariesConfig {
            notify: targets,
            allow_from,
            tsig,
            soa: self.soa(soa)?,
        })
    }

    fn soa(&self, soa: SoaSection) -> Result<SoaTimers, ConfigError> {
        let SoaSection {
            refresh,
            retry,
            expire,
            minimum,
        } = soa;
        let pick = |value: &Option<Spanned<HumanDuration>>,
                    key: &str,
                    range: (Duration, Duration),
                    default: Duration|
         -> Result<Duration, ConfigError> {
            self.bounded(value.as_ref(), key, range, format_duration)?;
            Ok(value.as_ref().map_or(default, |v| v.value.0))
        };
        let timers = SoaTimers {
            refresh: pick(
                &refresh,
                "secondaries.soa.refresh",
                REFRESH_RANGE,
                DEFAULT_REFRESH,
            )?,
            retry: pick(&retry, "secondaries.soa.retry", RETRY_RANGE, DEFAULT_RETRY)?,
            expire: pick(
                &expire,
                "secondaries.soa.expire",
                EXPIRE_RANGE,
                DEFAULT_EXPIRE,
            )?,
            minimum: match &minimum {
                None => None,
                Some(_) => Some(pick(
                    &minimum,
                    "secondaries.soa.minimum",
                    MINIMUM_RANGE,
                    Duration::ZERO,
                )?),
            },
        };
        if timers.expire < timers.refresh + timers.retry {
            let span = expire.as_ref().or(refresh.as_ref()).or(retry.as_ref());
            let message = format!(
                "expire {} is shorter than refresh + retry ({} + {}): a secondary would drop the zone before it tried again; raise `secondaries.soa.expire`",
                format_duration(timers.expire),
                format_duration(timers.refresh),
                format_duration(timers.retry)
            );
            return Err(match span {
                Some(span) => self.error(span, "secondaries.soa.expire", message),
                None => self.plain_error("secondaries.soa.expire", message),
            });
        }
        Ok(timers)
    }
}

impl super::Config {
    /// The SOA timers served: `secondaries.soa`, or the defaults without a `secondaries:`.
    pub fn soa_timers(&self) -> SoaTimers {
        self.secondaries.as_ref().map(|s| s.soa).unwrap_or_default()
    }
}

impl SecondariesConfig {
    /// Whether `ip` may transfer the zone.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.allow_from.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.60`, from a dual-stack socket) as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `secondaries:` lines of `check-config`: who is told, who may transfer, the key (never
/// its secret), the SOA timers.
pub(super) fn summary(config: &super::Config) -> String {
    let timers = config.soa_timers();
    let minimum = match timers.minimum {
        Some(m) => format_duration(m),
        None => format!("{} (dns.ttl)", format_duration(config.dns.ttl)),
    };
    let soa = format!(
        "SOA refresh {}, retry {}, expire {}, minimum {minimum}",
        long_duration(timers.refresh),
        long_duration(timers.retry),
        long_duration(timers.expire)
    );
    let Some(s) = &config.secondaries else {
        return format!("secondaries: none (zone transfers refused); {soa}\n");
    };
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    let notify = list(s.notify.iter().map(|a| a.to_string()).collect());
    let allow = list(
        s.allow_from
            .iter()
            .map(|n| {
                if n.prefix_len() == n.max_prefix_len() {
                    n.addr().to_string()
                } else {
                    n.to_string()
                }
            })
            .collect(),
    );
    format!(
        "secondaries: NOTIFY to {notify}\n  transfers (AXFR/IXFR over TCP, signed) from {allow}\n  {}\n  {soa}\n",
        s.tsig.describe()
    )
}

/// `1w`, `2d`, `1h` when the duration is a whole number of them, else as elsewhere.
fn long_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && u128::from(secs) * 1000 == d.as_millis() {
        for (unit, len) in [("w", 7 * 86400), ("d", 86400)] {
            if secs.is_multiple_of(len) {
                return format!("{}{unit}", secs / len);
            }
        }
    }
    format_duration(d)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const BASE: &str = "zone: ha.example.com\nself: n1\n\
        nodes:\n  - { id: n1, address: 192.0.2.1 }\n\
        checks:\n  - { id: web, type: tcp, port: 80 }\n\
        hostnames:\n  - { name: app, checks: [web] }\n";
    const KEY: &str = "  tsig: { name: xfr, secret_env: FAILOVERD_XFR_SECRET }\n";

    fn parse(extra: &str) -> Result<super::super::Config, String> {
        super::super::parse(Path::new("t.yaml"), &format!("{BASE}{extra}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_allow_the_notify_addresses_and_serve_a_week_of_expire() {
        let config = parse(&format!(
            "secondaries:\n  notify: [\"192.0.2.60\", \"[2001:db8::60]:5353\"]\n{KEY}"
        ))
        .unwrap();
        let s = config.secondaries.as_ref().unwrap();
        assert_eq!(s.notify[0], "192.0.2.60:53".parse().unwrap());
        assert_eq!(s.notify[1], "[2001:db8::60]:5353".parse().unwrap());
        assert!(s.allows("192.0.2.60".parse().unwrap()));
        assert!(
            s.allows("::ffff:192.0.2.60".parse().unwrap()),
            "IPv4-mapped"
        );
        assert!(!s.allows("192.0.2.61".parse().unwrap()));
        assert_eq!(config.soa_timers(), super::SoaTimers::default());
        assert_eq!(super::DEFAULT_EXPIRE.as_secs(), 604_800);
        let summary = config.summary();
        assert!(
            summary.contains("NOTIFY to 192.0.2.60:53, [2001:db8::60]:5353"),
            "{summary}"
        );
        assert!(summary.contains("expire 1w"), "{summary}");
        assert!(
            summary.contains("secret from $FAILOVERD_XFR_SECRET"),
            "{summary}"
        );
        let none = parse("").unwrap().summary();
        assert!(
            none.contains("secondaries: none (zone transfers refused)"),
            "{none}"
        );
    }

    #[test]
    fn prefixes_and_timers() {
        let config = parse(&format!(
            "secondaries:\n  allow_from: [\"198.51.100.0/28\"]\n{KEY}  soa: {{ refresh: 30m, retry: 1m, expire: 2d, minimum: 5s }}\n"
        ))
        .unwrap();
        let s = config.secondaries.as_ref().unwrap();
        assert!(s.notify.is_empty());
        assert!(s.allows("198.51.100.15".parse().unwrap()));
        assert!(!s.allows("198.51.100.16".parse().unwrap()));
        let t = config.soa_timers();
        assert_eq!(
            (
                t.refresh.as_secs(),
                t.retry.as_secs(),
                t.expire.as_secs(),
                t.minimum.map(|m| m.as_secs())
            ),
            (1800, 60, 172_800, Some(5))
        );
    }

    #[test]
    fn mistakes_say_what_to_do() {
        let cases = [
            (
                "secondaries:\n  notify: [\"192.0.2.60\"]\n",
                "secondaries.tsig: a key is required",
            ),
            (
                &format!("secondaries:\n  notify: [\"ns2.example.com\"]\n{KEY}"),
                "secondaries.notify[0]",
            ),
            (
                &format!("secondaries:\n  allow_from: [\"192.0.2.0/33\"]\n{KEY}"),
                "secondaries.allow_from[0]",
            ),
            (&format!("secondaries:\n{KEY}"), "name the secondaries"),
            (
                &format!(
                    "secondaries:\n  notify: [\"192.0.2.60\"]\n{KEY}  soa: {{ expire: 1h }}\n"
                ),
                "shorter than refresh + retry",
            ),
            (
                &format!(
                    "secondaries:\n  notify: [\"192.0.2.60\"]\n{KEY}  soa: {{ refresh: 5s }}\n"
                ),
                "secondaries.soa.refresh: 5s is too short",
            ),
            (
                &format!("secondaries:\n  notify: [\"192.0.2.60\"]\n{KEY}  sao: {{}}\n"),
                "sao",
            ),
        ];
        for (extra, want) in cases {
            let error = parse(extra).unwrap_err();
            assert!(error.contains(want), "{extra}\n→ {error}\n(want {want})");
        }
    }
}
