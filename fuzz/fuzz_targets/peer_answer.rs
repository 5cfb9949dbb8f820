//! A peer's answer body as the puller reads it after the signature checks: JSON into
//! `PeerAnswer`, then its overrides merged as every honest agent merges them. A member with the
//! secret controls these bytes; nothing in them may panic, and what merges stays bounded.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use failoverd::cluster::PeerAnswer;
use failoverd::config::Config;
use failoverd::overrides::Overrides;
use failoverd::serial::{Fingerprint, Keeper, Stored, after};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = "zone: ha.test
self: n1
nodes:
  - { id: n1, address: 127.0.0.11, priority: 10 }
  - { id: n2, address: 127.0.0.12, priority: 5 }
checks:
  - { id: web, type: tcp, port: 80 }
hostnames:
  - { name: app, checks: [web] }
";

fn config() -> &'static Config {
    static CONFIG_ONCE: OnceLock<Config> = OnceLock::new();
    CONFIG_ONCE.get_or_init(|| {
        failoverd::config::parse(Path::new("fuzz.yaml"), CONFIG).expect("the fuzz config parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let config = config();
    let Ok(answer) = serde_json::from_slice::<PeerAnswer>(data) else {
        return;
    };
    let now = 1_800_000_000;
    let mut overrides = Overrides::default();
    let merged = overrides.merge(&answer.overrides, config, now);
    // At most one entry per known target survives, whatever the peer sent.
    assert!(overrides.list().len() <= config.nodes.len() + config.hostnames.len());
    assert!(merged.changed.len() <= answer.overrides.len());
    // Merging the same answer again changes nothing (versions only move forward).
    let again = overrides.merge(&answer.overrides, config, now);
    assert!(again.changed.is_empty());
    let _ = overrides.active(config, now);

    // The serial a peer claims: adopted only upward, and never far past our own clock.
    if let Some(claim) = answer.serial {
        let ours = Fingerprint([7; 16]);
        let mut keeper = Keeper::new(Stored {
            serial: 1_800_000_000,
            content: Some(ours),
        });
        keeper.publish(ours, now, |_| Ok(()));
        let before = keeper.serial();
        let content = if data.len() % 2 == 0 {
            ours
        } else {
            claim.content
        };
        let claim = failoverd::serial::Claim {
            content,
            serial: claim.serial,
        };
        keeper.adopt([claim], now, |_| Ok(()));
        let after_adopt = keeper.serial();
        assert!(
            after_adopt == before || after(after_adopt, before),
            "the serial went back"
        );
        assert!(
            !after(
                after_adopt,
                (now as u32).wrapping_add(failoverd::serial::MAX_AHEAD)
            ),
            "adopted a serial beyond the bound"
        );
    }
});
