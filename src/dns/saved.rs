//! The last published answers, kept in the state directory so that a restarted agent answers
//! its hostnames at once instead of SERVFAIL until its first round of checks ends.
//!
//! The file names, per hostname, the nodes answered (by id, so a node whose address changed in
//! the configuration is answered at its new address), and when these answers were last known
//! to be current: written at each change and again at a clean stop. A restarted agent serves
//! them only while they are at most `MAX_AGE` old (see README, "Before the first round").

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::decide::{Decision, Reason};
use crate::state_dir::StateDir;

/// The file in the state directory.
pub const FILE: &str = "answers.json";

/// How old saved answers may be and still be served before the first round. A restart by
/// systemd, an upgrade, even a VM reboot stops the agent for seconds to a minute: the answers
/// it had are then what resolvers still hold in their caches anyway. After two minutes the
/// agent was really down, a node may have failed meanwhile, and a SERVFAIL (the resolver asks
/// another agent) is the safer answer.
pub const MAX_AGE: Duration = Duration::from_secs(120);

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    /// The zone they belong to (a file from another zone is ignored).
    zone: String,
    /// When the answers were last known current, in seconds since the Unix epoch.
    current_at: u64,
    /// Hostname (FQDN) → ids of the nodes answered, in answer order.
    hostnames: BTreeMap<String, Vec<String>>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Saves `decisions` (one per hostname, in config order) as current at `now`.
pub fn store(
    state: &StateDir,
    config: &Config,
    decisions: &[Decision],
    now: SystemTime,
) -> Result<(), String> {
    let saved = Saved {
        zone: config.zone.to_ascii(),
        current_at: unix(now),
        hostnames: config
            .hostnames
            .iter()
            .zip(decisions)
            .map(|(h, d)| {
                let ids = d.nodes.iter().map(|&n| config.nodes[n].id.clone());
                (h.fqdn.to_ascii(), ids.collect())
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&saved).map_err(|e| e.to_string())?;
    state
        .write(FILE, &bytes)
        .map_err(|e| format!("{}: {e}", state.path().join(FILE).display()))
}

/// What a fresh start may serve for each hostname (in config order): the saved answer when
/// the file is at most `MAX_AGE` old at `now`, else nothing. `Err` says why nothing is used
/// (for the log); a missing file is `Ok` with nothing.
pub fn load(
    state: &StateDir,
    config: &Config,
    now: SystemTime,
) -> Result<Vec<Option<Decision>>, String> {
    let none = vec![None; config.hostnames.len()];
    let path = state.path().join(FILE);
    let bytes = match state.read(FILE) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(none),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let saved: Saved = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: unreadable ({e})", path.display()))?;
    if saved.zone != config.zone.to_ascii() {
        return Err(format!("{}: saved for zone {}", path.display(), saved.zone));
    }
    let age = unix(now).checked_sub(saved.current_at);
    match age {
        Some(age) if age <= MAX_AGE.as_secs() => {}
        Some(age) => {
            return Err(format!(
                "{}: {age} s old, more than {} s",
                path.display(),
                MAX_AGE.as_secs()
            ));
        }
        None => return Err(format!("{}: dated in the future", path.display())),
    }
    Ok(config
        .hostnames
        .iter()
        .map(|h| {
            let ids = saved.hostnames.get(&h.fqdn.to_ascii())?;
            let nodes = ids
                .iter()
                .filter_map(|id| config.nodes.iter().position(|n| &n.id == id))
                .collect();
            Some(Decision {
                nodes,
                reason: Reason::Healthy,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(nodes: &str) -> Config {
        crate::config::parse(
            Path::new("t.yaml"),
            &format!(
                "zone: ha.example.com\nnodes:\n{nodes}\
                 checks:\n  - {{ id: web, type: http, url: \"http://{{address}}/\" }}\n\
                 hostnames:\n  - {{ name: app, checks: [web] }}\n  - {{ name: www, checks: [web] }}\n"
            ),
        )
        .unwrap()
    }

    #[test]
    fn recent_answers_come_back_by_node_id_and_old_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let two = config("  - { id: a, address: 192.0.2.1 }\n  - { id: b, address: 192.0.2.2 }\n");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(load(&state, &two, t0), Ok(vec![None, None]), "no file yet");
        let decided = |nodes| Decision {
            nodes,
            reason: Reason::Healthy,
        };
        store(&state, &two, &[decided(vec![1]), decided(vec![])], t0).unwrap();
        assert_eq!(
            load(&state, &two, t0 + MAX_AGE),
            Ok(vec![Some(decided(vec![1])), Some(decided(vec![]))])
        );
        // Node `b` is now first in the configuration: found by id, not by position.
        let swapped =
            config("  - { id: b, address: 192.0.2.2 }\n  - { id: a, address: 192.0.2.1 }\n");
        assert_eq!(
            load(&state, &swapped, t0),
            Ok(vec![Some(decided(vec![0])), Some(decided(vec![]))])
        );
        let old = load(&state, &two, t0 + MAX_AGE + Duration::from_secs(1)).unwrap_err();
        assert!(old.contains("121 s old"), "{old}");
        assert!(load(&state, &two, t0 - Duration::from_secs(5)).is_err());
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert!(load(&state, &two, t0).unwrap_err().contains("unreadable"));
    }
}
