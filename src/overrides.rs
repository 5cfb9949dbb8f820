//! Manual overrides: a node in maintenance (drained from every hostname) or a hostname forced to
//! a node, with a reason, who set it, and an optional expiry. Kept beside the measured health,
//! never in place of it (gdnsd's admin state).
//!
//! Every change carries a version (one more than the highest this agent has seen) and the id of
//! the agent that made it. Agents exchange their whole set; for each target the entry with the
//! highest (version, origin) wins, so concurrent changes resolve the same way on every agent.
//! Clearing an override is a change too (an inactive entry), so it propagates like the rest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The file in the state directory.
const FILE: &str = "overrides.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `target` is a node id: it serves no hostname while this is in force.
    Maintenance,
    /// `target` is a hostname (fully qualified, no trailing dot): it answers with `node` only.
    Force,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub kind: Kind,
    pub target: String,
    /// For `force`: the node the hostname answers with.
    #[serde(default)]
    pub node: Option<String>,
    /// False once cleared.
    pub active: bool,
    pub reason: String,
    /// Who and where: `failoverd maintenance (user alice) on node1`, `dashboard on node2`.
    pub by: String,
    /// Unix seconds.
    pub set_at: u64,
    /// Unix seconds; none: until cleared.
    #[serde(default)]
    pub expires_at: Option<u64>,
    pub version: u64,
    /// Node id of the agent that made this change (breaks version ties).
    pub origin: String,
}

impl Override {
    /// In force at `now` (unix seconds): active and not expired.
    pub fn in_force(&self, now: u64) -> bool {
        self.active && self.expires_at.is_none_or(|e| now < e)
    }

    fn wins_over(&self, other: &Override) -> bool {
        (self.version, &self.origin) > (other.version, &other.origin)
    }

    /// One line for logs, events and mail.
    pub fn summary(&self) -> String {
        let what = match (self.kind, self.active) {
            (Kind::Maintenance, true) => format!("{} in maintenance", self.target),
            (Kind::Maintenance, false) => format!("{} out of maintenance", self.target),
            (Kind::Force, true) => format!(
                "{} forced to {}",
                self.target,
                self.node.as_deref().unwrap_or("?")
            ),
            (Kind::Force, false) => format!("{} no longer forced", self.target),
        };
        let reason = if self.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", self.reason)
        };
        let until = match self.expires_at {
            Some(e) if self.active => format!(" (for {}s)", e.saturating_sub(self.set_at)),
            _ => String::new(),
        };
        format!("{what}{until}{reason} — by {}", self.by)
    }
}

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub kind: Kind,
    pub target: String,
    #[serde(default)]
    pub node: Option<String>,
    /// Set (true) or clear (false).
    pub on: bool,
    #[serde(default)]
    pub reason: String,
    /// How long it lasts, in seconds; none: until cleared.
    #[serde(default)]
    pub for_seconds: Option<u64>,
    /// Who asks, as the client describes itself.
    #[serde(default)]
    pub by: String,
}

/// Which overrides are in force, indexed like the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Active {
    /// Per node: in maintenance.
    pub maintenance: Vec<bool>,
    /// Per hostname: the node it is forced to.
    pub forced: Vec<Option<usize>>,
}

impl Active {
    pub fn none(config: &Config) -> Self {
        Self {
            maintenance: vec![false; config.nodes.len()],
            forced: vec![None; config.hostnames.len()],
        }
    }
}

/// All overrides this agent knows, one per target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    entries: BTreeMap<(Kind, String), Override>,
}

impl Overrides {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// Reads the stored set (none stored: empty). A damaged file is an error, not a silent reset.
    pub fn load(state_dir: &Path) -> Result<Self, String> {
        let path = Self::path(state_dir);
        match crate::state_dir::read_regular(state_dir, FILE) {
            Ok(Some(bytes)) => {
                let list: Vec<Override> = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}; fix or remove the file", path.display()))?;
                let mut set = Self::default();
                set.merge(&list);
                Ok(set)
            }
            Ok(None) => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Stores the set atomically (see `state_dir::write_atomic`).
    pub fn store(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.list()).map_err(std::io::Error::other)?;
        crate::state_dir::write_atomic(state_dir, FILE, &bytes)
    }

    pub fn list(&self) -> Vec<Override> {
        self.entries.values().cloned().collect()
    }

    fn max_version(&self) -> u64 {
        self.entries.values().map(|o| o.version).max().unwrap_or(0)
    }

    /// Applies an operator's request made on agent `origin`; checks it against `config`.
    pub fn apply(
        &mut self,
        request: Request,
        config: &Config,
        origin: &str,
        now: u64,
    ) -> Result<Override, String> {
        let Request {
            kind,
            target,
            node,
            on,
            reason,
            for_seconds,
            by,
        } = request;
        let target = target.trim().trim_end_matches('.').to_ascii_lowercase();
        let zone = config.zone.to_ascii().trim_end_matches('.').to_string();
        let (target, node) = match kind {
            Kind::Maintenance => {
                if !config.nodes.iter().any(|n| n.id == target) {
                    let ids: Vec<&str> = config.nodes.iter().map(|n| n.id.as_str()).collect();
                    return Err(format!("no node `{target}` (nodes: {})", ids.join(", ")));
                }
                (target, None)
            }
            Kind::Force => {
                let fqdn = if target.ends_with(&zone) {
                    target.clone()
                } else {
                    format!("{target}.{zone}")
                };
                let Some(h) = config
                    .hostnames
                    .iter()
                    .find(|h| h.fqdn.to_ascii().trim_end_matches('.') == fqdn)
                else {
                    let names: Vec<&str> =
                        config.hostnames.iter().map(|h| h.name.as_str()).collect();
                    return Err(format!(
                        "no hostname `{target}` (hostnames: {})",
                        names.join(", ")
                    ));
                };
                let node = if on {
                    let Some(id) = node else {
                        return Err("say which node to force it to".into());
                    };
                    if !h.nodes.iter().any(|&n| config.nodes[n].id == id) {
                        return Err(format!("node `{id}` does not serve {fqdn}"));
                    }
                    Some(id)
                } else {
                    None
                };
                (fqdn, node)
            }
        };
        if reason.len() > 500 {
            return Err("the reason is longer than 500 characters".into());
        }
        let entry = Override {
            kind,
            target: target.clone(),
            node,
            active: on,
            reason,
            by: if by.trim().is_empty() {
                "unknown".into()
            } else {
                by.chars().take(200).collect()
            },
            set_at: now,
            expires_at: if on {
                for_seconds.map(|s| now.saturating_add(s))
            } else {
                None
            },
            version: self.max_version() + 1,
            origin: origin.to_string(),
        };
        self.entries.insert((kind, target), entry.clone());
        Ok(entry)
    }

    /// Takes in another agent's set; true if anything here changed.
    pub fn merge(&mut self, incoming: &[Override]) -> bool {
        let mut changed = false;
        for o in incoming {
            let key = (o.kind, o.target.clone());
            let newer = self
                .entries
                .get(&key)
                .is_none_or(|current| o.wins_over(current));
            if newer && self.entries.get(&key) != Some(o) {
                self.entries.insert(key, o.clone());
                changed = true;
            }
        }
        changed
    }

    /// What is in force at `now` (unix seconds), for `config`.
    pub fn active(&self, config: &Config, now: u64) -> Active {
        let mut active = Active::none(config);
        for o in self.entries.values().filter(|o| o.in_force(now)) {
            match o.kind {
                Kind::Maintenance => {
                    if let Some(n) = config.nodes.iter().position(|n| n.id == o.target) {
                        active.maintenance[n] = true;
                    }
                }
                Kind::Force => {
                    let h = config
                        .hostnames
                        .iter()
                        .position(|h| h.fqdn.to_ascii().trim_end_matches('.') == o.target);
                    let n = o
                        .node
                        .as_ref()
                        .and_then(|id| config.nodes.iter().position(|n| &n.id == id));
                    if let (Some(h), Some(n)) = (h, n) {
                        active.forced[h] = Some(n);
                    }
                }
            }
        }
        active
    }
}

/// Seconds since the epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            Path::new("t.yaml"),
            "zone: ha.example.com\nnodes:\n  - { id: n1, address: 192.0.2.1 }\n  - { id: n2, address: 192.0.2.2 }\n\
             checks:\n  - { id: web, type: http, url: \"http://{address}/\" }\nhostnames:\n  - { name: app, checks: [web] }\n",
        )
        .unwrap()
    }

    fn request(kind: Kind, target: &str, node: Option<&str>, on: bool) -> Request {
        Request {
            kind,
            target: target.into(),
            node: node.map(Into::into),
            on,
            reason: "patching".into(),
            for_seconds: None,
            by: "test".into(),
        }
    }

    #[test]
    fn requests_are_checked_against_the_configuration() {
        let cfg = config();
        let mut set = Overrides::default();
        assert!(
            set.apply(request(Kind::Maintenance, "n9", None, true), &cfg, "n1", 0)
                .unwrap_err()
                .contains("no node `n9`")
        );
        assert!(
            set.apply(request(Kind::Force, "web", Some("n1"), true), &cfg, "n1", 0)
                .unwrap_err()
                .contains("no hostname")
        );
        assert!(
            set.apply(request(Kind::Force, "app", None, true), &cfg, "n1", 0)
                .unwrap_err()
                .contains("which node")
        );
        let ok = set
            .apply(request(Kind::Force, "app", Some("n2"), true), &cfg, "n1", 0)
            .unwrap();
        assert_eq!(ok.target, "app.ha.example.com");
        assert_eq!(set.active(&cfg, 1).forced, [Some(1)]);
    }

    #[test]
    fn concurrent_changes_resolve_the_same_everywhere() {
        let cfg = config();
        // n1 and n2 both act at version 1 without having heard of each other.
        let mut on_n1 = Overrides::default();
        let mut on_n2 = Overrides::default();
        let a = on_n1
            .apply(request(Kind::Maintenance, "n1", None, true), &cfg, "n1", 10)
            .unwrap();
        let b = on_n2
            .apply(
                request(Kind::Maintenance, "n1", None, false),
                &cfg,
                "n2",
                10,
            )
            .unwrap();
        assert_eq!((a.version, b.version), (1, 1));
        assert!(on_n1.merge(&on_n2.list()));
        assert!(
            !on_n2.merge(&on_n1.list()),
            "n2's entry already wins the tie (origin n2 > n1)"
        );
        assert_eq!(on_n1, on_n2);
        assert!(!on_n1.active(&cfg, 11).maintenance[0]);
        // A later change, made knowing both, wins everywhere.
        let c = on_n1
            .apply(request(Kind::Maintenance, "n1", None, true), &cfg, "n1", 12)
            .unwrap();
        assert_eq!(c.version, 2);
        assert!(on_n2.merge(&on_n1.list()));
        assert!(on_n2.active(&cfg, 13).maintenance[0]);
    }

    #[test]
    fn expiry_ends_an_override_and_it_survives_a_store_and_load() {
        let cfg = config();
        let mut set = Overrides::default();
        let mut r = request(Kind::Maintenance, "n2", None, true);
        r.for_seconds = Some(60);
        set.apply(r, &cfg, "n1", 1000).unwrap();
        assert!(set.active(&cfg, 1059).maintenance[1]);
        assert!(!set.active(&cfg, 1060).maintenance[1]);
        let dir = tempfile::tempdir().unwrap();
        set.store(dir.path()).unwrap();
        assert_eq!(Overrides::load(dir.path()).unwrap(), set);
        std::fs::write(dir.path().join("overrides.json"), "{").unwrap();
        assert!(
            Overrides::load(dir.path())
                .unwrap_err()
                .contains("fix or remove")
        );
    }
}
