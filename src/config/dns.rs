//! `dns:` and `zone:`: the zone served, where DNS is answered, TTLs and the SOA mailbox.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::rr::Name;
use serde_saphyr::Spanned;

use super::ConfigError;
use super::Validator;
use super::file::DnsSection;

/// Default UDP and TCP listen addresses of the DNS server.
pub const DEFAULT_DNS_LISTEN: [&str; 2] = ["0.0.0.0:53", "[::]:53"];
/// The longest TTL a resolver honours (RFC 2181 §8: 2^31 − 1 seconds).
pub const MAX_TTL: Duration = Duration::from_secs((1 << 31) - 1);

#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// False (`dns.serve: false`): no embedded DNS server; `listen` is empty.
    pub serve: bool,
    pub listen: Vec<SocketAddr>,
    /// Whether `dns.listen` is written in the file: a witness binds a DNS port only then.
    pub listen_written: bool,
    /// TTL of hostname answers, and of the SOA (and so of negative answers).
    pub ttl: Duration,
    /// TTL of apex NS records and their glue.
    pub ns_ttl: Duration,
    /// SOA RNAME, as a domain name (`hostmaster.<parent of the zone>` by default).
    pub hostmaster: Name,
}

impl Validator<'_> {
    pub(super) fn zone(&self, zone: &Spanned<String>) -> Result<Name, ConfigError> {
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

    pub(super) fn dns(&self, dns: DnsSection, zone: &Name) -> Result<DnsConfig, ConfigError> {
        let DnsSection {
            serve,
            listen,
            ttl,
            ns_ttl,
            nameservers,
            hostmaster,
        } = dns;
        let serve = serve.is_none_or(|s| s.value);
        let listen_written = listen.is_some();
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
            listen_written,
            ttl,
            ns_ttl: ns_ttl
                .map(|d| d.value.0)
                .unwrap_or(Duration::from_secs(3600)),
            hostmaster,
        })
    }
}

/// A TTL as RFC 2181 counts it: whole seconds.
pub(super) fn ttl_text(d: Duration) -> String {
    if d == MAX_TTL {
        format!("{}s (2^31 − 1, RFC 2181)", d.as_secs())
    } else {
        format!("{}s", d.as_secs())
    }
}
