//! `nodes:`: the machines, their published and probe addresses, and their priority.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_saphyr::Spanned;

use super::ConfigError;
use super::Validator;
use super::file::NodeEntry;
use super::validate::is_label;

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

impl Validator<'_> {
    /// The nodes in the order written, and their ids' indexes.
    pub(super) fn nodes(
        &self,
        nodes: Vec<NodeEntry>,
    ) -> Result<(Vec<Node>, HashMap<String, usize>), ConfigError> {
        let usable = |id: &str| {
            (!is_label(id)).then(|| format!("`{id}` is not usable as a node id: use letters, digits and '-' (it becomes ns-<id>.<zone>)"))
        };
        self.id_list(
            nodes,
            "nodes",
            "node",
            |e| &e.id,
            usable,
            |i, e| self.node(i, e),
        )
    }

    fn node(&self, i: usize, entry: NodeEntry) -> Result<Node, ConfigError> {
        let NodeEntry {
            id,
            address,
            addresses,
            probe_address,
            priority,
        } = entry;
        let key = format!("nodes[{i}]");
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

    pub(super) fn ip(&self, item: &Spanned<String>, key: &str) -> Result<IpAddr, ConfigError> {
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
}
