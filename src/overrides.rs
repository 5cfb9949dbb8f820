//! Manual overrides: a node in maintenance (drained from every hostname) or a hostname forced to
//! a node, with a reason, who set it, and an optional expiry. Kept beside the measured health,
//! never in place of it (gdnsd's admin state).
//!
//! Every change carries a version (one more than the highest this agent has seen) and the id of
//! the agent that made it. Agents exchange their whole set; for each target the entry with the
//! highest (version, origin) wins, so concurrent changes resolve the same way on every agent.
//! Clearing an override is a change too (an inactive entry), so it propagates like the rest.
//!
//! What another agent sends is checked as an operator's request is: a member of the cluster may
//! do what an operator on that node may do, no more. An entry is taken in only if it names a node
//! or hostname of the configuration, comes from a known agent, and has a version below
//! [`version_limit`], so there is always room above it for an operator's clear. With one entry per
//! target, the set never holds more than one entry per node and hostname (cleared ones included:
//! they are what stops an agent that was away from bringing an old override back).

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
        // Reasons and names are checked on the way in; escaped here too, as this line is logged.
        let reason = if self.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", printable(&self.reason, MAX_REASON))
        };
        let until = match self.expires_at {
            Some(e) if self.active => format!(" (for {}s)", e.saturating_sub(self.set_at)),
            _ => String::new(),
        };
        format!(
            "{}{until}{reason} — by {}",
            printable(&what, 2 * MAX_BY),
            printable(&self.by, MAX_BY)
        )
    }
}

/// Longest reason accepted, in bytes.
pub const MAX_REASON: usize = 500;
/// Longest `by` kept, in characters.
pub const MAX_BY: usize = 200;

/// Highest version accepted at `now` (unix seconds): a thousand changes per second since 1970.
///
/// Versions count changes (each one more than the highest seen), so no honest agent comes near
/// this; a version above it was invented. The limit keeps room for an operator's clear above any
/// version accepted (no wrap-around), and grows with time, so a clear made just above a
/// hostile entry at the limit is accepted everywhere a second later at most.
pub fn version_limit(now: u64) -> u64 {
    now.saturating_mul(1000)
}

/// The least limit on the versions of stored entries, whatever the clock says (2^48).
const MAX_STORED_VERSION: u64 = 1 << 48;

/// `text` made safe for a log line: control characters (CR, LF, ESC…) escaped as `\n`,
/// `\u{1b}`, and cut to `max_chars` characters (marked with `…`). For anything that comes from
/// outside: reasons, names and error texts sent by other agents.
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars + 8));
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Why an operator's request was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The request itself is wrong (unknown node, reason too long…): the operator's to fix.
    Invalid(String),
    /// It could not be stored in the state directory, so it would not survive a restart: not
    /// applied at all.
    NotStored(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Invalid(why) | Refused::NotStored(why) => f.write_str(why),
        }
    }
}

/// The outcome of taking in another agent's set.
#[derive(Debug, Default)]
pub struct Merged {
    /// Entries that changed here (newer than what this agent had), in target order.
    pub changed: Vec<Override>,
    /// Entries refused (unknown target or agent, bad version…).
    pub refused: usize,
    /// Why the first refused entry was, safe to log.
    pub first_refusal: Option<String>,
}

/// The node ids and hostnames of a configuration, looked up once per merge.
struct Known<'a> {
    nodes: HashMap<&'a str, usize>,
    /// Fully qualified, without the trailing dot → hostname index.
    hostnames: HashMap<String, usize>,
    config: &'a Config,
}

impl<'a> Known<'a> {
    fn new(config: &'a Config) -> Self {
        Self {
            nodes: config
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.id.as_str(), i))
                .collect(),
            hostnames: config
                .hostnames
                .iter()
                .enumerate()
                .map(|(i, h)| (h.fqdn.to_ascii().trim_end_matches('.').to_string(), i))
                .collect(),
            config,
        }
    }

    /// Whether `o` is something an operator of this cluster could have made, with a version of
    /// at most `max_version`.
    fn check(&self, o: &Override, max_version: u64) -> Result<(), String> {
        let name = |s: &str| printable(s, 64);
        match (o.kind, o.active, &o.node) {
            (Kind::Maintenance, _, None) => {
                if !self.nodes.contains_key(o.target.as_str()) {
                    return Err(format!("maintenance of unknown node `{}`", name(&o.target)));
                }
            }
            (Kind::Maintenance, _, Some(_)) => {
                return Err("a maintenance entry names a node to force to".into());
            }
            (Kind::Force, active, node) => {
                let Some(&h) = self.hostnames.get(o.target.as_str()) else {
                    return Err(format!("force of unknown hostname `{}`", name(&o.target)));
                };
                match (active, node) {
                    (true, Some(id)) => {
                        let serves = self
                            .nodes
                            .get(id.as_str())
                            .is_some_and(|n| self.config.hostnames[h].nodes.contains(n));
                        if !serves {
                            return Err(format!(
                                "force of {} to `{}`, which does not serve it",
                                name(&o.target),
                                name(id)
                            ));
                        }
                    }
                    (false, None) => {}
                    _ => return Err("a force entry without its node".into()),
                }
            }
        }
        // Made on any agent: a node's or a witness's dashboard.
        let witness = self.config.witnesses().iter().any(|w| w.id == o.origin);
        if !self.nodes.contains_key(o.origin.as_str()) && !witness && o.origin != LOCAL_ORIGIN {
            return Err(format!("made by unknown agent `{}`", name(&o.origin)));
        }
        if o.version == 0 || o.version > max_version {
            return Err(format!(
                "version {} is 0 or beyond a thousand changes a second since 1970",
                o.version
            ));
        }
        if o.reason.len() > MAX_REASON || o.reason.chars().any(char::is_control) {
            return Err("a reason too long or with control characters".into());
        }
        if o.by.chars().count() > MAX_BY || o.by.chars().any(char::is_control) {
            return Err("a `by` too long or with control characters".into());
        }
        Ok(())
    }
}

/// The origin of changes made by an agent without a cluster (no node id of its own).
pub const LOCAL_ORIGIN: &str = "local";

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
                // Checked against the configuration afterwards (`retain_valid`).
                let mut set = Self::default();
                for o in list {
                    let key = (o.kind, o.target.clone());
                    if set.entries.get(&key).is_none_or(|c| o.wins_over(c)) {
                        set.entries.insert(key, o);
                    }
                }
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

    /// Drops every entry `config` does not allow (a node or hostname removed, an agent no longer
    /// in the cluster, a version out of bounds, a state file written by an older release that
    /// took anything); returns how many, and why the first was dropped.
    pub fn retain_valid(&mut self, config: &Config, now: u64) -> (usize, Option<String>) {
        let known = Known::new(config);
        let mut dropped = 0;
        let mut first = None;
        // This agent's own store is not thrown away for a clock that is wrong at boot: the
        // limit is at least a fixed one, far above any real count and far below wrapping.
        let max_version = version_limit(now).max(MAX_STORED_VERSION);
        self.entries
            .retain(|_, o| match known.check(o, max_version) {
                Ok(()) => true,
                Err(why) => {
                    dropped += 1;
                    first.get_or_insert(why);
                    false
                }
            });
        (dropped, first)
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
        if reason.len() > MAX_REASON {
            return Err(format!("the reason is longer than {MAX_REASON} characters"));
        }
        if reason.chars().any(char::is_control) {
            return Err(
                "the reason has control characters (line breaks, tabs…); write it on one line"
                    .into(),
            );
        }
        // Above any version seen, even one another agent invented: never wraps (the versions
        // taken in are bounded), so an operator's clear always wins.
        let version = self
            .max_version()
            .checked_add(1)
            .ok_or("the override versions are exhausted; remove overrides.json from the state directory on every agent")?;
        let by: String = by
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_BY)
            .collect();
        let entry = Override {
            kind,
            target: target.clone(),
            node,
            active: on,
            reason,
            by: if by.trim().is_empty() {
                "unknown".into()
            } else {
                by
            },
            set_at: now,
            expires_at: if on {
                for_seconds.map(|s| now.saturating_add(s))
            } else {
                None
            },
            version,
            origin: origin.to_string(),
        };
        self.entries.insert((kind, target), entry.clone());
        Ok(entry)
    }

    /// Takes in another agent's set, checking every entry against `config` at `now` (unix
    /// seconds). Linear in the size of `incoming`; what was refused is counted, not kept.
    pub fn merge(&mut self, incoming: &[Override], config: &Config, now: u64) -> Merged {
        let known = Known::new(config);
        let mut merged = Merged::default();
        let mut changed = BTreeSet::new();
        for o in incoming {
            if let Err(why) = known.check(o, version_limit(now)) {
                merged.refused += 1;
                merged.first_refusal.get_or_insert(why);
                continue;
            }
            let key = (o.kind, o.target.clone());
            let newer = self
                .entries
                .get(&key)
                .is_none_or(|current| o.wins_over(current));
            if newer && self.entries.get(&key) != Some(o) {
                self.entries.insert(key.clone(), o.clone());
                changed.insert(key);
            }
        }
        merged.changed = changed
            .into_iter()
            .filter_map(|key| self.entries.get(&key).cloned())
            .collect();
        merged
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
        assert!(!on_n1.merge(&on_n2.list(), &cfg, 11).changed.is_empty());
        assert!(
            on_n2.merge(&on_n1.list(), &cfg, 11).changed.is_empty(),
            "n2's entry already wins the tie (origin n2 > n1)"
        );
        assert_eq!(on_n1, on_n2);
        assert!(!on_n1.active(&cfg, 11).maintenance[0]);
        // A later change, made knowing both, wins everywhere.
        let c = on_n1
            .apply(request(Kind::Maintenance, "n1", None, true), &cfg, "n1", 12)
            .unwrap();
        assert_eq!(c.version, 2);
        assert!(!on_n2.merge(&on_n1.list(), &cfg, 13).changed.is_empty());
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

    /// What a compromised member serves: anything, with the cluster secret.
    fn rogue(kind: Kind, target: &str, node: Option<&str>, version: u64, origin: &str) -> Override {
        Override {
            kind,
            target: target.into(),
            node: node.map(Into::into),
            active: true,
            reason: "pinned".into(),
            by: "rogue".into(),
            set_at: 0,
            expires_at: None,
            version,
            origin: origin.into(),
        }
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn an_invented_version_is_refused_and_an_operator_can_always_clear() {
        let cfg = config();
        let mut set = Overrides::default();
        // 2^64 - 1: the operator's clear used to wrap to 0 and lose to it forever.
        let pin = rogue(Kind::Maintenance, "n1", None, u64::MAX, "n2");
        let merged = set.merge(std::slice::from_ref(&pin), &cfg, NOW);
        assert_eq!((merged.changed.len(), merged.refused), (0, 1));
        assert!(merged.first_refusal.unwrap().contains("version"));
        assert!(!set.active(&cfg, NOW).maintenance[0]);

        // The highest version taken in still leaves room above it: the clear wins here…
        let pin = rogue(Kind::Maintenance, "n1", None, version_limit(NOW), "n2");
        assert_eq!(
            set.merge(std::slice::from_ref(&pin), &cfg, NOW)
                .changed
                .len(),
            1
        );
        assert!(set.active(&cfg, NOW).maintenance[0]);
        let clear = set
            .apply(
                request(Kind::Maintenance, "n1", None, false),
                &cfg,
                "n1",
                NOW,
            )
            .unwrap();
        assert_eq!(clear.version, version_limit(NOW) + 1);
        assert!(!set.active(&cfg, NOW).maintenance[0]);
        // …the rogue serving its entry again changes nothing…
        assert!(
            set.merge(std::slice::from_ref(&pin), &cfg, NOW)
                .changed
                .is_empty()
        );
        assert!(!set.active(&cfg, NOW).maintenance[0]);
        // …and every other agent takes the clear in within a second, and keeps it.
        let mut other = Overrides::default();
        other.merge(std::slice::from_ref(&pin), &cfg, NOW);
        assert_eq!(other.merge(&set.list(), &cfg, NOW + 1).changed.len(), 1);
        assert!(other.merge(&[pin], &cfg, NOW + 1).changed.is_empty());
        assert!(!other.active(&cfg, NOW + 1).maintenance[0]);
    }

    #[test]
    fn an_override_made_on_a_witness_is_taken_in_but_no_witness_is_a_target() {
        let text = "zone: ha.example.com\nnodes:\n  - { id: n1, address: 192.0.2.1 }\n  - { id: n2, address: 192.0.2.2 }\n\
             checks:\n  - { id: web, type: http, url: \"http://{address}/\" }\nhostnames:\n  - { name: app, checks: [web] }\n\
             cluster: { witnesses: [{ id: w1, address: 192.0.2.9 }] }\n";
        let cfg = crate::config::parse(Path::new("t.yaml"), text).unwrap();
        let mut set = Overrides::default();
        let from_witness = rogue(Kind::Maintenance, "n1", None, 5, "w1");
        let merged = set.merge(&[from_witness], &cfg, NOW);
        assert_eq!((merged.changed.len(), merged.refused), (1, 0));
        assert!(set.active(&cfg, NOW).maintenance[0]);
        let on_witness = rogue(Kind::Maintenance, "w1", None, 6, "w1");
        let merged = set.merge(&[on_witness], &cfg, NOW);
        assert_eq!(
            merged.refused, 1,
            "a witness is no node to put in maintenance"
        );
        // Without the witness in the file, the same entry comes from an unknown agent.
        let merged = Overrides::default().merge(
            &[rogue(Kind::Maintenance, "n1", None, 5, "w1")],
            &config(),
            NOW,
        );
        assert!(merged.first_refusal.unwrap().contains("unknown agent"));
    }

    #[test]
    fn only_what_an_operator_could_set_is_taken_in() {
        let cfg = config();
        let mut set = Overrides::default();
        let mut with_newline = rogue(Kind::Maintenance, "n2", None, 5, "n2");
        with_newline.reason = "ok\nERROR forged log line".into();
        let mut long_by = rogue(Kind::Maintenance, "n2", None, 5, "n2");
        long_by.by = "x".repeat(MAX_BY + 1);
        let mut cleared_with_node = rogue(Kind::Force, "app.ha.example.com", Some("n1"), 5, "n2");
        cleared_with_node.active = false;
        let refused = [
            rogue(Kind::Maintenance, "n9", None, 5, "n2"),
            rogue(Kind::Maintenance, "n1", Some("n2"), 5, "n2"),
            rogue(Kind::Force, "invented.ha.example.com", Some("n1"), 5, "n2"),
            rogue(Kind::Force, "app.ha.example.com", Some("n9"), 5, "n2"),
            rogue(Kind::Force, "app.ha.example.com", None, 5, "n2"),
            rogue(Kind::Maintenance, "n1", None, 5, "n9"),
            rogue(Kind::Maintenance, "n1", None, 0, "n2"),
            with_newline,
            long_by,
            cleared_with_node,
        ];
        let merged = set.merge(&refused, &cfg, NOW);
        assert_eq!((merged.changed.len(), merged.refused), (0, refused.len()));
        assert_eq!(set, Overrides::default());
        let ok = [
            rogue(Kind::Maintenance, "n2", None, 5, "n2"),
            rogue(Kind::Force, "app.ha.example.com", Some("n1"), 5, "n1"),
        ];
        let merged = set.merge(&ok, &cfg, NOW);
        assert_eq!((merged.changed.len(), merged.refused), (2, 0));
    }

    #[test]
    fn a_flood_of_invented_targets_is_refused_in_linear_time_and_nothing_is_kept() {
        let cfg = config();
        let mut set = Overrides::default();
        // 200,000 entries: a quadratic step anywhere would take hours.
        let flood: Vec<Override> = (0..200_000)
            .map(|i| {
                rogue(
                    Kind::Force,
                    &format!("h{i}.ha.example.com"),
                    Some("n1"),
                    7,
                    "n2",
                )
            })
            .chain((0..1000).map(|v| rogue(Kind::Maintenance, "n2", None, v + 1, "n2")))
            .collect();
        let started = std::time::Instant::now();
        let merged = set.merge(&flood, &cfg, NOW);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(merged.refused, 200_000);
        assert_eq!(merged.changed.len(), 1, "one entry per target, the newest");
        assert_eq!(set.list().len(), 1);
        assert_eq!(set.list()[0].version, 1000);
    }

    #[test]
    fn entries_of_removed_nodes_and_agents_and_old_bad_state_are_dropped() {
        let cfg = config();
        let dir = tempfile::tempdir().unwrap();
        // A state file written by a release that took anything: a wrapped-around pin, an
        // invented target, and a good entry.
        let stored = [
            rogue(Kind::Maintenance, "n1", None, u64::MAX, "n2"),
            rogue(Kind::Force, "invented.ha.example.com", Some("n1"), 3, "n2"),
            rogue(Kind::Maintenance, "n2", None, 3, "n1"),
        ];
        std::fs::write(
            dir.path().join("overrides.json"),
            serde_json::to_vec(&stored).unwrap(),
        )
        .unwrap();
        let mut set = Overrides::load(dir.path()).unwrap();
        let (dropped, why) = set.retain_valid(&cfg, NOW);
        assert_eq!(dropped, 2, "{why:?}");
        assert_eq!(set.list(), [stored[2].clone()]);
        // n1 leaves the cluster: what it made, and what concerns it, goes with it.
        let without_n1 = crate::config::parse(
            Path::new("t.yaml"),
            "zone: ha.example.com\nnodes:\n  - { id: n2, address: 192.0.2.2 }\n\
             checks:\n  - { id: web, type: http, url: \"http://{address}/\" }\nhostnames:\n  - { name: app, checks: [web] }\n",
        )
        .unwrap();
        assert_eq!(set.retain_valid(&without_n1, NOW).0, 1);
        assert!(set.list().is_empty());
        // A clock still at 1970 at boot does not throw away what was stored.
        let mut set = Overrides::default();
        set.apply(
            request(Kind::Maintenance, "n2", None, true),
            &cfg,
            "n1",
            NOW,
        )
        .unwrap();
        assert_eq!(set.retain_valid(&cfg, 0).0, 0);
    }

    #[test]
    fn reasons_with_control_characters_are_refused_and_summaries_are_one_line() {
        let cfg = config();
        let mut set = Overrides::default();
        let mut r = request(Kind::Maintenance, "n1", None, true);
        r.reason = "patching\r\n2026-12-01T00:00:00Z ERROR forged".into();
        assert!(
            set.apply(r, &cfg, "n1", NOW)
                .unwrap_err()
                .contains("control characters")
        );
        let mut r = request(Kind::Maintenance, "n1", None, true);
        r.by = "alice\nERROR forged".into();
        let o = set.apply(r, &cfg, "n1", NOW).unwrap();
        assert_eq!(o.by, "aliceERROR forged");
        // An entry that got in some other way still logs as one line.
        let mut o = rogue(Kind::Maintenance, "n1", None, 1, "n1");
        o.reason = "a\nb\u{1b}[31m".into();
        assert!(!o.summary().contains(['\n', '\u{1b}']), "{}", o.summary());
        assert!(o.summary().contains("a\\nb\\u{1b}[31m"), "{}", o.summary());
        assert_eq!(printable("abcdef", 3), "abc…");
    }
}
