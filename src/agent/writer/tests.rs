//! The writer's one promise to readers, on the real writer loop: whoever receives an event and
//! then loads the snapshot sees the state the event describes (no waiting, no polling).
//! Addresses from 127.0.150.0/24; nothing listens on them, the probes' results are fed in.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::rr::LowerName;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::Writer;
use crate::check::schedule::PairResult;
use crate::dns::{Answers, Zone};
use crate::events::EventKind;
use crate::health::{ProbeResult, State};
use crate::overrides::Overrides;
use crate::published::Published;
use crate::serial::{Keeper, Stored};
use crate::snapshot::Snapshot;
use crate::state_dir::StateDir;
use crate::status::Status;

#[tokio::test]
async fn an_event_received_is_in_the_snapshot_loaded_next() {
    let config = Arc::new(
        crate::config::parse(
            Path::new("t.yaml"),
            "zone: ha.example.com\ndns: { listen: [\"127.0.150.1:0\"] }\n\
             defaults: { rise: 1, fall: 1 }\n\
             nodes:\n  - { id: node1, address: 127.0.150.11, priority: 20 }\n\
             \x20 - { id: node2, address: 127.0.150.12, priority: 10 }\n\
             checks:\n  - { id: web, type: tcp, port: 8080 }\n\
             hostnames:\n  - { name: app, checks: [web] }\n",
        )
        .expect("the test configuration is valid"),
    );
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let serial = Keeper::new(Stored {
        serial: 1,
        content: None,
    });
    let (commands, command_rx) = mpsc::channel(1);
    let published = Published {
        snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::new(
            Arc::new(Answers::new(Zone::not_ready(&config, 1, &[]))),
            Status::new(config.clone(), 1),
        ))),
        events: broadcast::channel(16).0,
        dns_queries: Arc::default(),
        notifications: Arc::default(),
        publishing: Arc::default(),
        secondaries: Arc::default(),
        commands,
        pull_now: Arc::default(),
        push_now: Arc::default(),
        pushes: Arc::default(),
        history: Arc::default(),
    };
    let snapshot = published.snapshot.clone();
    let to_writer = published.commands.clone();
    let mut events = published.events.subscribe();
    let overrides = Overrides::load(dir.path()).unwrap();
    let writer = Writer::new(config.clone(), published, state, serial, overrides);
    let (results, results_rx) = mpsc::channel(16);
    let (_reloads, reloads_rx) = mpsc::channel(1);
    let (_peers, peers_rx) = mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(writer.run(
        results_rx,
        reloads_rx,
        peers_rx,
        command_rx,
        shutdown.clone(),
    ));
    let send = |pair: usize, passed: bool| {
        let result = if passed {
            ProbeResult::pass(Duration::from_millis(1))
        } else {
            ProbeResult::fail(Duration::from_millis(1), "connection refused")
        };
        results
            .try_send(PairResult {
                pair,
                result,
                extra: false,
            })
            .unwrap();
    };
    let app = LowerName::from(hickory_proto::rr::Name::from_ascii("app.ha.example.com.").unwrap());
    let ips = |s: &Snapshot| -> Vec<String> {
        let records = &s.zone().names[&app].a;
        records
            .iter()
            .filter_map(|r| r.data.ip_addr().map(|ip| ip.to_string()))
            .collect()
    };

    // The first round: both up, node1 answers. Nothing is news yet.
    send(0, true);
    send(1, true);
    tokio::time::timeout(Duration::from_secs(5), async {
        while !snapshot.load().zone().ready {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first round is published");
    assert_eq!(ips(&snapshot.load()), ["127.0.150.11"]);

    // node1 fails: each event, the moment it arrives, is in the snapshot with its state.
    send(0, false);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("the writer runs");
        let now = snapshot.load();
        assert!(
            now.status.events.iter().any(|e| Arc::ptr_eq(e, &event)),
            "the snapshot holds the event it follows: {event:?}"
        );
        match &event.kind {
            EventKind::CheckDown { node, error, .. } => {
                assert_eq!(
                    (node.as_str(), error.as_str()),
                    ("node1", "connection refused")
                );
                assert_eq!(now.status.effective[0].state, State::Down);
            }
            EventKind::AnswerChanged { to, .. } => {
                assert_eq!(to, &["127.0.150.12".parse::<std::net::IpAddr>().unwrap()]);
                assert_eq!(
                    ips(&now),
                    ["127.0.150.12"],
                    "DNS serves what the event says"
                );
                assert_eq!(now.status.decisions[0].nodes, [1]);
            }
            other => panic!("unexpected event {other:?}"),
        }
        seen.push(crate::events::kind_name(&event.kind));
    }
    assert_eq!(seen, ["check_down", "answer_changed"]);

    // An event that changes no state (a failed notification) is not held back until the next
    // periodic publication either.
    to_writer
        .send(crate::command::Command::NotificationFailed {
            summary: "mail to ops: 550".into(),
        })
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
        .expect("the writer runs");
    assert!(matches!(event.kind, EventKind::NotificationFailed { .. }));
    let now = snapshot.load();
    assert!(now.status.events.iter().any(|e| Arc::ptr_eq(e, &event)));
    shutdown.cancel();
    task.await.unwrap();
}
