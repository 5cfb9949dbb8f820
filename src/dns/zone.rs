//! The zone as DNS records, built whole from the configuration and the current decisions.
//!
//! A `Zone` is an immutable value: the writer builds a new one on every change and publishes it
//! (in `dns::Answers`, within the snapshot); queries only read it. Every RRset a query can ask for is prebuilt here, so answering is a
//! hash lookup and a slice.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, HINFO, NS, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record};

use crate::config::Config;
use crate::decide::Decision;

/// Records owned by one name of the zone.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NameRecords {
    pub a: Vec<Record>,
    pub aaaa: Vec<Record>,
    /// The answer to ANY: one synthesized HINFO "RFC8482" when the name has addresses (RFC 8482
    /// §4.2), never the RRsets themselves, so ANY is no lever for amplification.
    pub any: Vec<Record>,
    /// A hostname whose answer is not known yet (before the first round, with no recent saved
    /// answer): A, AAAA and ANY get SERVFAIL, so resolvers ask another agent.
    pub pending: bool,
}

/// Everything the DNS server needs to answer, for one moment.
#[derive(Debug, Clone)]
pub struct Zone {
    pub origin: LowerName,
    /// False until the first full round of checks is done: queries in the zone get SERVFAIL.
    pub ready: bool,
    pub serial: u32,
    /// The SOA RRset (one record), also used in the authority section of negative answers.
    pub soa: Vec<Record>,
    pub ns: Vec<Record>,
    /// A/AAAA records of in-zone nameserver names, for the additional section.
    pub glue: Vec<Record>,
    /// Every existing name below the apex, including empty non-terminals (no records).
    pub names: HashMap<LowerName, NameRecords>,
}

impl Zone {
    /// Whether the two zones answer every question the same way, the SOA serial aside.
    pub fn same_answers(&self, other: &Zone) -> bool {
        let soa_without_serial = |z: &Zone| -> Vec<Record> {
            z.soa
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    if let RData::SOA(soa) = &mut r.data {
                        soa.serial = 0;
                    }
                    r
                })
                .collect()
        };
        self.ready == other.ready
            && self.origin == other.origin
            && self.names == other.names
            && self.ns == other.ns
            && self.glue == other.glue
            && soa_without_serial(self) == soa_without_serial(other)
    }

    /// The zone before the first round of checks: the static data (SOA, NS, glue, `ns-<id>`,
    /// empty non-terminals, NXDOMAIN) as always, each hostname with its entry of `saved` (one
    /// per hostname, in config order; the last answers published, when recent) or SERVFAIL.
    pub fn not_ready(config: &Config, serial: u32, saved: &[Option<Decision>]) -> Self {
        let mut zone = build_with(config, |h| saved.get(h).and_then(Option::as_ref), serial);
        zone.ready = false;
        zone
    }
}

/// The nameserver name of a node: `ns-<id>.<zone>`.
pub fn nameserver_name(config: &Config, node: usize) -> Name {
    Name::from_ascii(format!("ns-{}", config.nodes[node].id))
        .and_then(|n| n.append_domain(&config.zone))
        .expect("node ids are validated DNS labels")
        .to_lowercase()
}

fn address_record(name: &Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), ttl, data)
}

fn add_addresses(
    entry: &mut NameRecords,
    name: &Name,
    ttl: u32,
    ips: impl IntoIterator<Item = IpAddr>,
) {
    for ip in ips {
        let record = address_record(name, ttl, ip);
        if ip.is_ipv4() {
            entry.a.push(record);
        } else {
            entry.aaaa.push(record);
        }
    }
    entry.any.clear();
    if !(entry.a.is_empty() && entry.aaaa.is_empty()) {
        let hinfo = HINFO::new("RFC8482".into(), String::new());
        entry
            .any
            .push(Record::from_rdata(name.clone(), ttl, RData::HINFO(hinfo)));
    }
}

/// Builds the zone for the given decisions (one per hostname, in config order) and serial.
pub fn build(config: &Config, decisions: &[Decision], serial: u32) -> Zone {
    build_with(config, |h| decisions.get(h), serial)
}

/// Builds the zone with `decision(h)` for hostname `h`; a hostname without one is pending.
fn build_with<'d>(
    config: &Config,
    decision: impl Fn(usize) -> Option<&'d Decision>,
    serial: u32,
) -> Zone {
    let origin = &config.zone;
    let ttl = config.dns.ttl.as_secs() as u32;
    let ns_ttl = config.dns.ns_ttl.as_secs() as u32;
    let mut names: HashMap<LowerName, NameRecords> = HashMap::new();

    let ns_names: Vec<Name> = (0..config.nodes.len())
        .map(|n| nameserver_name(config, n))
        .collect();
    let ns: Vec<Record> = ns_names
        .iter()
        .map(|ns| Record::from_rdata(origin.clone(), ns_ttl, RData::NS(NS(ns.clone()))))
        .collect();
    let mut glue = Vec::new();
    for (n, ns_name) in ns_names.iter().enumerate() {
        let entry = names.entry(LowerName::new(ns_name)).or_default();
        add_addresses(
            entry,
            ns_name,
            ns_ttl,
            config.nodes[n].addresses.iter().copied(),
        );
        glue.extend(entry.a.iter().chain(entry.aaaa.iter()).cloned());
    }

    // The timers matter to secondaries (`secondaries.soa`); MINIMUM to resolvers too.
    let timers = config.soa_timers();
    let secs = |d: std::time::Duration| i32::try_from(d.as_secs()).unwrap_or(i32::MAX);
    let soa = SOA::new(
        ns_names[0].clone(),
        config.dns.hostmaster.clone(),
        serial,
        secs(timers.refresh),
        secs(timers.retry),
        secs(timers.expire),
        timers.minimum.map_or(ttl, |m| m.as_secs() as u32),
    );
    let soa = vec![Record::from_rdata(origin.clone(), ttl, RData::SOA(soa))];

    for (h, hostname) in config.hostnames.iter().enumerate() {
        let entry = names.entry(LowerName::new(&hostname.fqdn)).or_default();
        if let Some(decision) = decision(h) {
            let ips = decision
                .nodes
                .iter()
                .flat_map(|&n| config.nodes[n].addresses.iter().copied())
                .filter(|ip| hostname.family.allows(ip));
            add_addresses(entry, &hostname.fqdn, ttl, ips);
        } else {
            entry.pending = true;
        }
        // Names between the hostname and the apex exist without records (empty non-terminals).
        let mut parent = hostname.fqdn.base_name();
        while parent.num_labels() > origin.num_labels() {
            names.entry(LowerName::new(&parent)).or_default();
            parent = parent.base_name();
        }
    }

    Zone {
        origin: LowerName::new(origin),
        ready: true,
        serial,
        soa,
        ns,
        glue,
        names,
    }
}
