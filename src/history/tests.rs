//! The bounded store: bounds, availability and transitions, the file round trip.

use super::*;

fn t(secs: u64) -> SystemTime {
    // A fixed day in 2026, so the window arithmetic never reaches the epoch.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000 + secs)
}

fn pair_key() -> Key {
    Key::Pair {
        node: "node1".into(),
        check: "web".into(),
    }
}

fn nodes(ids: &[&str]) -> Value {
    Value::Nodes(ids.iter().map(|s| s.to_string()).collect())
}

/// A series from `(seconds, value)` changes.
fn series(changes: &[(u64, Value)]) -> Series {
    Series {
        changes: changes
            .iter()
            .map(|(s, v)| Change {
                at: t(*s),
                value: v.clone(),
            })
            .collect(),
        capped_before: None,
    }
}

#[test]
fn availability_and_transitions_table() {
    use Value::*;
    // (what, changes, window start, window end, availability, transitions)
    type Case = (&'static str, Vec<(u64, Value)>, u64, u64, Option<f64>, u32);
    let cases: Vec<Case> = vec![
        ("nothing recorded", vec![], 0, 100, None, 0),
        ("up all along", vec![(0, Ok)], 0, 100, Some(100.0), 0),
        (
            "down a quarter",
            vec![(0, Ok), (50, Ko), (75, Ok)],
            0,
            100,
            Some(75.0),
            2,
        ),
        (
            "state before the window counts from its start",
            vec![(0, Ko), (150, Ok)],
            100,
            200,
            Some(50.0),
            1,
        ),
        (
            "unknown time (agent stopped) is left out, and a restart is no transition",
            vec![(0, Ok), (50, Unknown), (90, Pending), (100, Ok)],
            0,
            200,
            Some(100.0),
            0,
        ),
        (
            "a change before the first known value is no transition",
            vec![(10, Pending), (20, Ko), (60, Ok)],
            0,
            100,
            Some(40.0 / 80.0 * 100.0),
            1,
        ),
        (
            "pending only is not known",
            vec![(0, Pending)],
            0,
            100,
            None,
            0,
        ),
        (
            "hostname: no address is unavailable, a node change is a transition",
            vec![
                (0, nodes(&["node1"])),
                (40, nodes(&["node2"])),
                (80, nodes(&[])),
            ],
            0,
            100,
            Some(80.0),
            2,
        ),
        (
            "a change exactly at the window start is the state at the start",
            vec![(0, Ok), (100, Ko)],
            100,
            200,
            Some(0.0),
            0,
        ),
    ];
    for (what, changes, start, end, availability, transitions) in cases {
        let s = series(&changes);
        let (a, n) = s.summary(t(start), t(end));
        match (a, availability) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{what}: {a} != {b}"),
            (a, b) => assert_eq!(a, b, "{what}"),
        }
        assert_eq!(n, transitions, "{what}");
    }
}

#[test]
fn segments_cover_the_window_and_start_unknown() {
    let s = series(&[(50, Value::Ok), (80, Value::Ko)]);
    let segments = s.segments(t(0), t(100));
    assert_eq!(
        segments,
        vec![
            (t(0), t(50), Value::Unknown),
            (t(50), t(80), Value::Ok),
            (t(80), t(100), Value::Ko)
        ]
    );
}

#[test]
fn record_skips_repeats_and_keeps_order_through_a_clock_step_back() {
    let mut h = History::default();
    assert!(h.record(pair_key(), t(10), Value::Ok));
    assert!(!h.record(pair_key(), t(20), Value::Ok));
    assert!(h.record(pair_key(), t(5), Value::Ko));
    let changes = &h.series[&pair_key()].changes;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].at, t(10), "moved up to the last change");
}

#[test]
fn the_window_keeps_one_change_before_its_start() {
    let mut h = History::default();
    let day = WINDOW.as_secs();
    for (i, s) in [0, 100, 200, day + 150].into_iter().enumerate() {
        let value = if i % 2 == 0 { Value::Ok } else { Value::Ko };
        h.record(pair_key(), t(s), value);
    }
    let s = &h.series[&pair_key()];
    // Window start is t(150): the change at 100 is the state then; 0 is gone, 200 stays.
    let kept: Vec<SystemTime> = s.changes.iter().map(|c| c.at).collect();
    assert_eq!(kept, [t(100), t(200), t(day + 150)]);
    assert_eq!(s.value_at(t(150)), Value::Ko);
}

#[test]
fn a_flapping_pair_is_capped_per_series_and_says_so() {
    let mut h = History::default();
    for i in 0..(MAX_PER_SERIES as u64 + 500) {
        let value = if i % 2 == 0 { Value::Ok } else { Value::Ko };
        h.record(pair_key(), t(i), value);
    }
    let s = &h.series[&pair_key()];
    assert_eq!(s.changes.len(), MAX_PER_SERIES);
    assert_eq!(s.changes.back().unwrap().at, t(MAX_PER_SERIES as u64 + 499));
    assert_eq!(s.capped_before, Some(s.changes[0].at));
}

#[test]
fn many_series_share_the_total_cap() {
    let mut h = History::default();
    let series = 500;
    for k in 0..series {
        for i in 0..400u64 {
            let value = if i % 2 == 0 { Value::Ok } else { Value::Ko };
            let key = Key::Pair {
                node: format!("node{k}"),
                check: "web".into(),
            };
            h.record(key, t(i), value);
        }
    }
    assert_eq!(h.per_series_cap(), MAX_TOTAL / series);
    h.prune(t(400));
    assert!(h.total() <= MAX_TOTAL, "{} changes kept", h.total());
}

#[test]
fn the_file_round_trips_and_a_restart_marks_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let state = crate::state_dir::StateDir::open(dir.path()).unwrap();
    let mut h = History::default();
    h.record(pair_key(), t(10), Value::Ko);
    h.record(pair_key(), t(20), Value::Ok);
    let host = Key::Hostname("app.example.com".into());
    h.record(host.clone(), t(12), nodes(&["node2"]));
    h.record(host.clone(), t(21), nodes(&["node1", "node3"]));
    let bytes = h.to_bytes(t(30));
    assert!(!h.dirty);
    let (read, saved_at) = History::from_bytes(&bytes).unwrap();
    assert_eq!(saved_at, t(30));
    assert_eq!(read.series, h.series);

    state.write(FILE, &bytes).unwrap();
    let (loaded, damaged) = History::load(&state, t(100));
    assert_eq!(damaged, None);
    let s = &loaded.series[&pair_key()];
    assert_eq!(s.changes.len(), 3);
    assert_eq!(
        s.changes[2],
        Change {
            at: t(30),
            value: Value::Unknown
        },
        "unknown from the time it was saved"
    );
    assert_eq!(
        loaded.series[&host].value_at(t(25)),
        nodes(&["node1", "node3"])
    );
}

#[test]
fn a_damaged_or_foreign_file_is_an_empty_history_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let state = crate::state_dir::StateDir::open(dir.path()).unwrap();
    state.write(FILE, b"{not json").unwrap();
    let (h, why) = History::load(&state, t(0));
    assert!(h.series.is_empty());
    assert!(why.is_some());
    state
        .write(FILE, br#"{"version":99,"saved_at_ms":0,"series":[]}"#)
        .unwrap();
    let (_, why) = History::load(&state, t(0));
    assert!(why.unwrap().contains("version 99"));
}

#[test]
fn times_print_with_milliseconds_and_parse_back_exactly() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_000_000_987);
    let text = rfc3339_ms(at);
    assert_eq!(text, "2026-11-30T00:53:20.987Z");
    assert_eq!(crate::dashboard::history::view::parse_since(&text), Ok(at));
}
