//! The command line as a user meets it: `check-config` on the example, and `demo` end to end.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{binary, dig, wait_until};

#[test]
fn check_config_summarises_the_example() {
    let out = Command::new(binary())
        .args([
            "check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "config.example.yaml: valid",
        "this node node1 (from `self`)",
        "node1        priority 10    192.0.2.10, 2001:db8::10",
        "node3        priority 5     192.0.2.12 (probed at 198.51.100.12)",
        "ias.ha.example.com           mode failover, when all down: all, checks [web]",
        "nameservers: ns-node1.ha.example.com, ns-node2.ha.example.com, ns-node3.ha.example.com",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn unknown_commands_and_flags_exit_2() {
    let out = Command::new(binary()).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(binary())
        .args(["run", "--confgi", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The demo from the quick start: read the DNS address it prints, take node1 down, see the
/// answer move, bring it back, quit.
#[test]
fn the_demo_fails_over_and_back_on_command() {
    let mut child = Command::new(binary())
        .arg("demo")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut dns: Option<SocketAddr> = None;
    let mut printed = String::new();
    while dns.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("demo printed:\n{printed}"));
        printed.push_str(&line);
        printed.push('\n');
        if let Some(rest) = line.strip_prefix("DNS answers on ") {
            dns = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
    }
    let dns = dns.unwrap();
    let app = |dns| dig(dns, "app.ha.example.com", "A", &[]).answers;
    wait_until(
        Duration::from_secs(10),
        "the demo to answer with node1",
        || app(dns) == ["127.0.0.11"],
    );

    let stdin = child.stdin.as_mut().unwrap();
    writeln!(stdin, "down node1").unwrap();
    wait_until(
        Duration::from_secs(10),
        "the demo to fail over to node2",
        || app(dns) == ["127.0.0.12"],
    );
    writeln!(stdin, "up node1").unwrap();
    wait_until(
        Duration::from_secs(10),
        "the demo to fail back to node1",
        || app(dns) == ["127.0.0.11"],
    );
    writeln!(stdin, "quit").unwrap();
    wait_until(Duration::from_secs(10), "the demo to exit", || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Runs `failoverd ARGS` with stdout (and, with `stderr_too`, stderr) a pipe nobody reads
/// (`| head -0`): the commands that print must say so and exit 1, never panic (exit 101).
fn with_closed_stdout(args: &[&str], stderr_too: bool) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(if stderr_too {
            Stdio::from(writer.try_clone().unwrap())
        } else {
            Stdio::piped()
        })
        .stdout(writer);
    let mut child = command.spawn().unwrap();
    // Our copies of the write end are closed with `command`.
    drop(command);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("failoverd {args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn commands_that_print_exit_1_with_a_message_when_stdout_is_closed() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml");
    let invalid = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/configs/invalid/refresh-zero.yaml"
    );
    for args in [
        &["check-config", "--config", example][..],
        &["delegation", "--config", example],
        &["demo"],
    ] {
        let out = with_closed_stdout(args, false);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("error: cannot write to standard output"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // With stderr gone too there is nowhere to say it; the exit code still tells.
    assert_eq!(
        with_closed_stdout(&["check-config", "--config", example], true)
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        with_closed_stdout(&["check-config", "--config", invalid], true)
            .status
            .code(),
        Some(2)
    );
}
