//! Which node (or witness) this machine is: written as `self:`, or found among the machine's
//! own addresses.
//!
//! Finding it binds sockets, so it is a step of its own after parsing: [`parse`](super::parse)
//! binds nothing and reads no address of this machine, [`load`](super::load) (what the agent, reload and
//! `check-config` use) parses and then calls [`find_self`].

use std::net::IpAddr;

use super::{Config, ConfigError, Node, Witness};

/// How `Config::self_node` was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfSource {
    /// From `self:` in the file.
    Configured,
    /// Exactly one node's (or witness's) address is assigned to this machine.
    LocalAddress,
    /// Several agents' addresses are local (typical on a single test host using 127.0.0.x).
    Ambiguous(Vec<String>),
    NotFound,
    /// `self:` is not written and the machine's addresses were not looked at (yet): the file was
    /// only parsed, not loaded.
    NotLooked,
}

/// Finds this machine's node when the file does not name it, by trying to bind each node's
/// addresses, and refuses a cluster whose agent cannot tell which node it is.
pub fn find_self(config: Config) -> Result<Config, ConfigError> {
    find_self_among(config, |ip| std::net::UdpSocket::bind((*ip, 0)).is_ok())
}

/// [`find_self`], with `is_local` telling whether an address is this machine's.
fn find_self_among(
    mut config: Config,
    is_local: impl Fn(&IpAddr) -> bool,
) -> Result<Config, ConfigError> {
    if config.self_source == SelfSource::NotLooked {
        let (agent, source) = pick_self(&config.nodes, config.witnesses(), is_local);
        let nodes = config.nodes.len();
        config.self_node = agent.filter(|&i| i < nodes);
        config.self_witness = agent.and_then(|i| i.checked_sub(nodes));
        config.self_source = source;
    }
    if config.self_witness.is_some() && !config.dns.listen_written {
        // A witness is no nameserver: it binds a DNS port only where the file says so.
        config.dns.serve = false;
        config.dns.listen.clear();
    }
    if config.cluster.is_some() && config.self_id().is_none() {
        let why = match &config.self_source {
            SelfSource::Ambiguous(ids) => format!(
                "several agents' addresses are on this machine ({})",
                ids.join(", ")
            ),
            _ => "no node's (nor witness's) address is on this machine".to_string(),
        };
        return Err(ConfigError {
            file: config.path.display().to_string(),
            location: None,
            key: "self".into(),
            message: format!(
                "agents of a cluster must know which node they are, and {why}: set `self: <node id>` (or `self: <witness id>`)"
            ),
            snippet: None,
        });
    }
    Ok(config)
}

/// The agent whose address is local, when exactly one is: a node's index, or the number of
/// nodes plus a witness's index.
fn pick_self(
    nodes: &[Node],
    witnesses: &[Witness],
    is_local: impl Fn(&IpAddr) -> bool,
) -> (Option<usize>, SelfSource) {
    let ids: Vec<&str> = nodes
        .iter()
        .map(|n| n.id.as_str())
        .chain(witnesses.iter().map(|w| w.id.as_str()))
        .collect();
    let local: Vec<usize> = nodes
        .iter()
        .map(|n| n.addresses.iter().any(&is_local))
        .chain(witnesses.iter().map(|w| is_local(&w.address)))
        .enumerate()
        .filter(|&(_, local)| local)
        .map(|(i, _)| i)
        .collect();
    match local.as_slice() {
        [] => (None, SelfSource::NotFound),
        [one] => (Some(*one), SelfSource::LocalAddress),
        many => (
            None,
            SelfSource::Ambiguous(many.iter().map(|&i| ids[i].to_string()).collect()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;

    const NODES: &str = "zone: ha.example.com\nnodes:\n  - { id: n1, address: 192.0.2.1 }\n  - { id: n2, addresses: [192.0.2.2, '2001:db8::2'] }\n  - { id: n3, address: 192.0.2.3 }\nchecks: [{ id: web, type: tcp, port: 80 }]\nhostnames: [{ name: app, checks: [web] }]\n";

    #[test]
    fn the_one_node_with_a_local_address_is_this_one() {
        let config = parse(Path::new("t.yaml"), NODES).unwrap();
        assert_eq!(
            config.self_source,
            SelfSource::NotLooked,
            "parse binds nothing"
        );
        let local = |list: &'static [&'static str]| {
            move |ip: &IpAddr| list.iter().any(|l| l.parse::<IpAddr>().unwrap() == *ip)
        };
        let table: [(&[&str], Option<usize>, SelfSource); 4] = [
            (&[], None, SelfSource::NotFound),
            (&["192.0.2.1"], Some(0), SelfSource::LocalAddress),
            (&["2001:db8::2"], Some(1), SelfSource::LocalAddress),
            (
                &["192.0.2.1", "192.0.2.3"],
                None,
                SelfSource::Ambiguous(vec!["n1".into(), "n3".into()]),
            ),
        ];
        for (addresses, node, source) in table {
            assert_eq!(
                pick_self(&config.nodes, &[], local(addresses)),
                (node, source),
                "{addresses:?}"
            );
        }
    }

    #[test]
    fn a_cluster_agent_that_cannot_tell_its_node_is_refused() {
        let text = format!("{NODES}cluster: {{}}\n");
        let config = parse(Path::new("t.yaml"), &text).unwrap();
        let e = find_self_among(config.clone(), |_| false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.yaml: self: agents of a cluster must know which node they are, and no node's (nor witness's) address is on this machine: set `self: <node id>` (or `self: <witness id>`)"
        );
        let e = find_self_among(config, |_| true).unwrap_err();
        assert!(
            e.message
                .contains("several agents' addresses are on this machine (n1, n2, n3)"),
            "{e}"
        );
        let named = parse(Path::new("t.yaml"), &format!("{text}self: n2\n")).unwrap();
        let found = find_self(named).unwrap();
        assert_eq!(
            (found.self_node, found.self_source),
            (Some(1), SelfSource::Configured)
        );
    }

    #[test]
    fn a_witness_is_found_by_its_address_and_binds_dns_only_where_written() {
        let text = format!("{NODES}cluster:\n  witnesses: [{{ id: w1, address: 192.0.2.9 }}]\n");
        let config = parse(Path::new("t.yaml"), &text).unwrap();
        let is = |want: &'static str| move |ip: &IpAddr| *ip == want.parse::<IpAddr>().unwrap();
        let found = find_self_among(config.clone(), is("192.0.2.9")).unwrap();
        assert_eq!(
            (found.self_node, found.self_witness, found.self_id()),
            (None, Some(0), Some("w1"))
        );
        assert_eq!(found.self_source, SelfSource::LocalAddress);
        assert!(
            !found.dns.serve && found.dns.listen.is_empty(),
            "no dns.listen written: a witness binds no DNS port"
        );
        let node = find_self_among(config.clone(), is("192.0.2.3")).unwrap();
        assert_eq!((node.self_node, node.self_witness), (Some(2), None));
        assert!(node.dns.serve, "a node serves DNS on the default listen");
        let both =
            find_self_among(config, |ip| is("192.0.2.9")(ip) || is("192.0.2.1")(ip)).unwrap_err();
        assert!(
            both.message
                .contains("several agents' addresses are on this machine (n1, w1)"),
            "{both}"
        );
        let written = format!("{text}self: w1\ndns: {{ listen: ['127.0.0.1:5353'] }}\n");
        let witness = find_self(parse(Path::new("t.yaml"), &written).unwrap()).unwrap();
        assert_eq!(witness.self_witness, Some(0));
        assert!(
            witness.dns.serve,
            "dns.listen written: the witness answers there"
        );
        assert_eq!(witness.dns.listen, ["127.0.0.1:5353".parse().unwrap()]);
    }
}
