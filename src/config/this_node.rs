//! Which node this machine is: written as `self:`, or found among the machine's own addresses.
//!
//! Finding it binds sockets, so it is a step of its own after parsing: [`parse`](super::parse)
//! binds nothing and reads no address of this machine, [`load`](super::load) (what the agent, reload and
//! `check-config` use) parses and then calls [`find_self`].

use std::net::IpAddr;

use super::{Config, ConfigError, Node};

/// How `Config::self_node` was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfSource {
    /// From `self:` in the file.
    Configured,
    /// Exactly one node's address is assigned to this machine.
    LocalAddress,
    /// Several nodes' addresses are local (typical on a single test host using 127.0.0.x).
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
        let (node, source) = pick_self(&config.nodes, is_local);
        config.self_node = node;
        config.self_source = source;
    }
    if config.cluster.is_some() && config.self_node.is_none() {
        let why = match &config.self_source {
            SelfSource::Ambiguous(ids) => format!(
                "several nodes' addresses are on this machine ({})",
                ids.join(", ")
            ),
            _ => "no node's address is on this machine".to_string(),
        };
        return Err(ConfigError {
            file: config.path.display().to_string(),
            location: None,
            key: "self".into(),
            message: format!(
                "agents of a cluster must know which node they are, and {why}: set `self: <node id>`"
            ),
            snippet: None,
        });
    }
    Ok(config)
}

/// The node whose address is local, when exactly one is.
fn pick_self(nodes: &[Node], is_local: impl Fn(&IpAddr) -> bool) -> (Option<usize>, SelfSource) {
    let local: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.addresses.iter().any(&is_local))
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
                pick_self(&config.nodes, local(addresses)),
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
            "t.yaml: self: agents of a cluster must know which node they are, and no node's address is on this machine: set `self: <node id>`"
        );
        let e = find_self_among(config, |_| true).unwrap_err();
        assert!(
            e.message
                .contains("several nodes' addresses are on this machine (n1, n2, n3)"),
            "{e}"
        );
        let named = parse(Path::new("t.yaml"), &format!("{text}self: n2\n")).unwrap();
        let found = find_self(named).unwrap();
        assert_eq!(
            (found.self_node, found.self_source),
            (Some(1), SelfSource::Configured)
        );
    }
}
