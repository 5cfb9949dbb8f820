//! `hostnames:`: the names served, which checks and nodes decide each, and how it answers.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use hickory_proto::rr::Name;

use super::ConfigError;
use super::Validator;
use super::cluster::Witness;
use super::file::HostnameEntry;
use super::nodes::Node;
use super::validate::is_label;

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

named!(Mode {
    Failover => "failover",
    All => "all",
});

named!(WhenAllDown {
    All => "all",
    None => "none",
    Last => "last",
});

named!(Family {
    Any => "any",
    Ipv4 => "ipv4",
    Ipv6 => "ipv6",
});

impl Family {
    pub fn allows(self, ip: &IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::Ipv4 => ip.is_ipv4(),
            Family::Ipv6 => ip.is_ipv6(),
        }
    }
}

impl Validator<'_> {
    /// The hostnames in the order written; each may appear once.
    pub(super) fn hostnames(
        &self,
        hostnames: Vec<HostnameEntry>,
        zone: &Name,
        nodes: &[Node],
        node_ids: &HashMap<String, usize>,
        check_ids: &HashMap<String, usize>,
        witnesses: &[Witness],
    ) -> Result<Vec<Hostname>, ConfigError> {
        if hostnames.is_empty() {
            return Err(self.plain_error("hostnames", "at least one hostname is needed"));
        }
        let mut built_hostnames: Vec<Hostname> = Vec::new();
        for (i, entry) in hostnames.into_iter().enumerate() {
            // A witness is an agent, not a node: say so rather than "unknown node".
            for (j, n) in entry.nodes.iter().flatten().enumerate() {
                if witnesses.iter().any(|w| w.id == n.value) {
                    return Err(self.error(
                        n,
                        format!("hostnames[{i}].nodes[{j}]"),
                        format!("`{}` is a witness (cluster.witnesses): it votes but serves no hostname and is never in an answer; list only nodes here", n.value),
                    ));
                }
            }
            let hostname = self.hostname(i, entry, zone, nodes, node_ids, check_ids)?;
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
        Ok(built_hostnames)
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

        let mode = self.word_or(mode.as_ref(), &format!("{key}.mode"), Mode::Failover, |w| {
            format!("`{w}` is not a mode; use {}", Mode::NAMES.join(" or "))
        })?;
        let when_all_down = self.word(
            when_all_down.as_ref(),
            &format!("{key}.when_all_down"),
            WhenAllDown::All,
        )?;
        let family_value = self.word(family.as_ref(), &format!("{key}.family"), Family::Any)?;
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
