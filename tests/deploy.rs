//! Deployment paths: `delegation` and `verify` against real agents on loopback.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{AgentProcess, Backend, binary, dig, free_port, wait_until};

const ZONE: &str = "ha.example.com";

/// The cluster config as node `self_id` runs it: DNS and the peer API on that node's own
/// address (the agents agree on their SOA serials through the peer API).
fn node_config(
    backends: &[Backend],
    (dns_port, peer_port): (u16, u16),
    self_index: usize,
    priorities: [u32; 3],
) -> String {
    let me = &backends[self_index];
    let mut yaml = format!(
        "zone: {ZONE}\nself: node{}\ndns: {{ listen: [\"{}:{dns_port}\"], ttl: 5s }}\ndashboard: {{ listen: \"{}:0\" }}\n\
         cluster: {{ listen: \"{}:{peer_port}\", period: 200ms }}\n\
         defaults: {{ interval: 300ms, retry_interval: 100ms, timeout: 80ms }}\nnodes:\n",
        self_index + 1,
        me.ip,
        me.ip,
        me.ip
    );
    for (i, b) in backends.iter().enumerate() {
        yaml.push_str(&format!(
            "  - {{ id: node{}, address: {}, priority: {} }}\n",
            i + 1,
            b.ip,
            priorities[i]
        ));
    }
    yaml.push_str(&format!(
        "checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/login\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web] }}\n  - {{ name: pool, checks: [web], mode: all }}\n",
        backends[0].http_port
    ));
    yaml
}

fn verify(config: &std::path::Path, server: Option<SocketAddr>) -> (Option<i32>, String) {
    let mut cmd = common::command("verify", config);
    if let Some(s) = server {
        cmd.args(["--server", &s.to_string()]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn verify_reports_agreement_and_names_a_disagreeing_agent() {
    let ips = ["127.0.61.1", "127.0.61.2", "127.0.61.3"];
    let backends = Backend::group(&ips);
    let ports = (free_port(&ips), free_port(&ips));
    let dns_port = ports.0;
    let same = [30, 20, 10];
    let start = |i: usize, priorities| {
        let addr: SocketAddr = format!("{}:{dns_port}", ips[i]).parse().unwrap();
        let mut launcher = Command::new(binary());
        launcher.env(
            "FAILOVERD_CLUSTER_SECRET",
            "a cluster secret of more than sixteen characters",
        );
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        AgentProcess::start_with(
            launcher,
            dir,
            state,
            &node_config(&backends, ports, i, priorities),
            addr,
        )
    };
    let mut agents: Vec<AgentProcess> = (0..3).map(|i| start(i, same)).collect();
    for a in &mut agents {
        a.wait_ready(&format!("app.{ZONE}"));
    }
    let config = agents[0].config_path.clone();

    let (code, out) = verify(&config, Some(agents[1].dns));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "OK: all 3 agents answer authoritatively and agree; the delegation works through"
        ),
        "{out}"
    );
    assert!(
        out.contains("app.ha.example.com A") && out.contains("127.0.61.1"),
        "{out}"
    );

    // node3's agent is given other priorities: it now answers app with itself.
    let third: SocketAddr = format!("{}:{dns_port}", ips[2]).parse().unwrap();
    drop(agents.pop());
    let mut odd = start(2, [10, 20, 30]);
    odd.wait_ready(&format!("app.{ZONE}"));
    wait_until(
        Duration::from_secs(5),
        "node3's agent to answer with itself",
        || dig(third, &format!("app.{ZONE}"), "A", &[]).answers == ["127.0.61.3"],
    );
    let (code, out) = verify(&config, None);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("PROBLEM: agents disagree on app.ha.example.com A"),
        "{out}"
    );
    assert!(out.contains("DISAGREE"), "{out}");
    assert!(
        !out.contains("disagree on pool"),
        "mode all lists the same set everywhere: {out}"
    );

    // An agent that is down is named.
    drop(odd);
    let (code, out) = verify(&config, None);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("PROBLEM: node3: no reply from 127.0.61.3"),
        "{out}"
    );
}

#[test]
fn delegation_prints_bind_windows_and_verify_commands() {
    let out = Command::new(binary())
        .args([
            "delegation",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/delegation/config.yaml"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ha.example.com.          3600 IN NS   ns-node1.ha.example.com."),
        "{text}"
    );
    assert!(
        text.contains("ns-node1.ha.example.com. 3600 IN AAAA 2001:db8::10"),
        "{text}"
    );
    assert!(
        text.contains("Add-DnsServerZoneDelegation -Name \"example.com\" -ChildZoneName \"ha\""),
        "{text}"
    );
    assert!(text.contains("nslookup -type=NS ha.example.com"), "{text}");
}

/// Every path under `root` (relative), sorted: to compare trees before and after.
fn tree(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

fn mode_owner(path: &std::path::Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// The failoverd user's uid and gid in the staging root's own passwd file.
fn staged_user(root: &std::path::Path) -> (u32, u32) {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("failoverd:"))
        .expect("failoverd user in the staging passwd");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

fn install(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn install_into_a_staging_root_runs_upgrades_in_place_and_uninstalls_cleanly() {
    assert!(
        nix_is_root(),
        "install.sh needs root (it creates a user and sets owners): run the tests as root, as CI does"
    );
    let staging = tempfile::tempdir().unwrap();
    let root = staging.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/unrelated.conf"), "the admin's own file\n").unwrap();
    let before = tree(root);

    let backends = Backend::group(&["127.0.62.1"]);
    let dns: SocketAddr = format!("127.0.62.100:{}", free_port(&["127.0.62.100"]))
        .parse()
        .unwrap();
    let config = format!(
        "zone: {ZONE}\ndns: {{ listen: [\"{dns}\"] }}\ndashboard: {{ listen: \"127.0.62.100:0\" }}\n\
         defaults: {{ interval: 300ms, retry_interval: 100ms, timeout: 80ms }}\n\
         nodes:\n  - {{ id: node1, address: 127.0.62.1, priority: 1 }}\n\
         checks:\n  - {{ id: sip, type: tcp, port: {} }}\nhostnames:\n  - {{ name: app, checks: [sip] }}\n",
        backends[0].tcp_port
    );
    let files = tempfile::tempdir().unwrap();
    let config_file = common::write_file(files.path(), "cluster.yaml", &config);
    let bad_file = common::write_file(
        files.path(),
        "bad.yaml",
        &config.replace("checks: [sip]", "checks: [nope]"),
    );
    let bin = binary();
    let (root_s, bin_s) = (root.to_str().unwrap(), bin.to_str().unwrap());

    // A configuration that does not validate stops the install before anything is changed.
    let (code, out) = install(&[
        "--root",
        root_s,
        "--binary",
        bin_s,
        "--config",
        bad_file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("unknown check `nope`") && out.contains("nothing was changed"),
        "{out}"
    );
    assert_eq!(
        tree(root),
        before,
        "a refused install leaves the tree alone"
    );

    // --dry-run changes nothing either.
    let (code, out) = install(&[
        "--root",
        root_s,
        "--binary",
        bin_s,
        "--config",
        config_file.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would run:"), "{out}");
    assert_eq!(tree(root), before);

    let (code, out) = install(&[
        "--root",
        root_s,
        "--binary",
        bin_s,
        "--config",
        config_file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("IN NS   ns-node1.ha.example.com."),
        "prints the delegation: {out}"
    );
    let (uid, gid) = staged_user(root);
    assert!(uid > 0 && gid > 0);
    let expect = [
        ("usr/local/bin/failoverd", 0o755, 0, 0),
        ("etc/failoverd", 0o750, 0, gid),
        ("etc/failoverd/config.yaml", 0o640, 0, gid),
        ("var/lib/failoverd", 0o750, uid, gid),
        ("etc/systemd/system/failoverd.service", 0o644, 0, 0),
    ];
    for (path, mode, owner, group) in expect {
        assert_eq!(
            mode_owner(&root.join(path)),
            (mode, owner, group),
            "{path}: mode, uid, gid"
        );
    }
    assert!(
        root.join("etc/systemd/system/multi-user.target.wants/failoverd.service")
            .is_symlink(),
        "enabled offline"
    );

    // systemd accepts the unit (binary path pointed into the staging root), without warnings.
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/failoverd.service")).unwrap();
    for directive in [
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/failoverd",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "ExecReload=/bin/sh -c \"kill -HUP ${MAINPID}\"",
    ] {
        assert!(unit.contains(directive), "unit has {directive}");
    }
    let check_dir = tempfile::tempdir().unwrap();
    let staged_unit = unit.replace(
        "/usr/local/bin/failoverd",
        root.join("usr/local/bin/failoverd").to_str().unwrap(),
    );
    let unit_path = common::write_file(check_dir.path(), "failoverd.service", &staged_unit);
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
        .expect("systemd-analyze (scripts/test.sh installs systemd)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );

    // The installed binary runs with the installed config and answers dig.
    let run = |root: &std::path::Path| {
        Command::new(root.join("usr/local/bin/failoverd"))
            .args(["run", "--config"])
            .arg(root.join("etc/failoverd/config.yaml"))
            .arg("--state-dir")
            .arg(root.join("var/lib/failoverd"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut agent = run(root);
    wait_until(
        Duration::from_secs(10),
        "the installed agent to answer",
        || dig(dns, &format!("app.{ZONE}"), "A", &[]).answers == ["127.0.62.1"],
    );
    let _ = agent.kill();
    let _ = agent.wait();
    let serial = std::fs::read_to_string(root.join("var/lib/failoverd/serial")).unwrap();

    // A second run without --config upgrades in place: config and state are kept.
    let (code, out) = install(&["--root", root_s, "--binary", bin_s]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/failoverd/config.yaml")).unwrap(),
        config
    );
    assert_eq!(
        std::fs::read_to_string(root.join("var/lib/failoverd/serial")).unwrap(),
        serial,
        "state kept"
    );
    assert_eq!(staged_user(root), (uid, gid), "the same user");

    let (code, out) = install(&["--root", root_s, "--uninstall"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        tree(root),
        before,
        "uninstall removes what install added and nothing else"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/unrelated.conf")).unwrap(),
        "the admin's own file\n"
    );
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn every_script_passes_shellcheck() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let scripts: Vec<String> = ["scripts", "bench", ".ci", "tests/systemd"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(format!("{dir}/{d}"))
                .into_iter()
                .flatten()
        })
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && std::fs::read_to_string(p).is_ok_and(|t| {
                    t.starts_with("#!/usr/bin/env bash")
                        || t.starts_with("#!/bin/sh")
                        || t.contains("# shellcheck shell=bash") // sourced, e.g. bench/lib.sh
                })
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(scripts.len() >= 3, "{scripts:?}");
    // -x from the repository's root: `source bench/lib.sh` is followed and checked too.
    let out = Command::new("shellcheck")
        .arg("-x")
        .args(&scripts)
        .current_dir(dir)
        .output()
        .expect("shellcheck (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A two-node cluster on 127.0.63.x for the reload tests.
fn reload_config(
    backends: &[Backend],
    dns: SocketAddr,
    priorities: [u32; 2],
    extra: &str,
) -> String {
    format!(
        "zone: {ZONE}\ndns: {{ listen: [\"{dns}\"], ttl: 5s }}\ndashboard: {{ listen: \"{}:0\" }}\n\
         defaults: {{ interval: 300ms, retry_interval: 100ms, timeout: 80ms }}\nnodes:\n\
         \x20 - {{ id: node1, address: {}, priority: {} }}\n  - {{ id: node2, address: {}, priority: {} }}\n\
         checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web] }}\n{extra}",
        dns.ip(),
        backends[0].ip,
        priorities[0],
        backends[1].ip,
        priorities[1],
        backends[0].http_port
    )
}

#[test]
fn sighup_reloads_keeps_state_refuses_a_broken_file_and_moves_the_serial_only_on_change() {
    let mut backends = Backend::group(&["127.0.63.1", "127.0.63.2"]);
    let dns: SocketAddr = format!("127.0.63.100:{}", free_port(&["127.0.63.100"]))
        .parse()
        .unwrap();
    let base = reload_config(&backends, dns, [20, 10], "");
    let mut agent = AgentProcess::start(&base, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    let app = || dig(dns, &format!("app.{ZONE}"), "A", &[]).answers;
    assert_eq!(app(), ["127.0.63.1"]);
    let serial = common::soa_serial(dns, ZONE);

    // A broken file is refused: the error is logged, answers and serial stay.
    agent.rewrite_config(&base.replace("checks: [web]", "checks: [web, nope]"));
    agent.signal("HUP");
    agent.wait_log("reload refused", 1);
    assert!(
        agent.log_text().contains("unknown check `nope`"),
        "{}",
        agent.log_text()
    );
    assert_eq!(app(), ["127.0.63.1"]);
    assert_eq!(common::soa_serial(dns, ZONE), serial);

    // The same configuration (a comment added): nothing changes, the serial does not move.
    agent.rewrite_config(&format!("# reviewed\n{base}"));
    agent.signal("HUP");
    agent.wait_log("configuration reloaded", 1);
    assert!(
        agent.log_text().contains("kept=2"),
        "both pairs kept: {}",
        agent.log_text()
    );
    assert_eq!(common::soa_serial(dns, ZONE), serial, "no answer changed");

    // node1 goes down; a reload that leaves its check alone keeps it KO: no flap back to node1.
    backends[0].stop();
    wait_until(Duration::from_secs(10), "app to move to node2", || {
        app() == ["127.0.63.2"]
    });
    let serial = common::soa_serial(dns, ZONE);
    let with_pool = reload_config(
        &backends,
        dns,
        [20, 10],
        "  - { name: pool, checks: [web], mode: all }\n",
    );
    agent.rewrite_config(&with_pool);
    agent.signal("HUP");
    agent.wait_log("configuration reloaded", 2);
    // The new hostname resolves without a restart, from the pairs' kept state.
    wait_until(Duration::from_secs(5), "pool to resolve", || {
        dig(dns, &format!("pool.{ZONE}"), "A", &[]).answers == ["127.0.63.2"]
    });
    assert_eq!(app(), ["127.0.63.2"], "node1 stays down across the reload");
    let moved = common::soa_serial(dns, ZONE);
    assert!(
        moved.wrapping_sub(serial) as i32 > 0,
        "a new name is a change: the serial moves up ({serial} → {moved})"
    );

    // New priorities: node2 is now preferred even when node1 is back.
    backends[0].resume();
    wait_until(Duration::from_secs(10), "failback to node1", || {
        app() == ["127.0.63.1"]
    });
    agent.rewrite_config(&reload_config(&backends, dns, [10, 20], ""));
    agent.signal("HUP");
    agent.wait_log("configuration reloaded", 3);
    wait_until(
        Duration::from_secs(5),
        "app to follow the new priorities",
        || app() == ["127.0.63.2"],
    );
    assert_eq!(
        dig(dns, &format!("pool.{ZONE}"), "A", &[]).status,
        "NXDOMAIN",
        "a removed name is gone"
    );
    assert_eq!(agent.terminate(), Some(0), "SIGTERM still stops it cleanly");
}

/// The agent's config for the sandbox tests: one node at `backend`, DNS on every `dns` address.
fn sandbox_config(backend: &Backend, dns: &[SocketAddr], check: &str) -> String {
    let listen: Vec<String> = dns.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "zone: {ZONE}\nself: node1\ndns: {{ listen: [{}], ttl: 5s }}\ndashboard: {{ listen: \"{}:0\" }}\n\
         defaults: {{ interval: 300ms, retry_interval: 100ms, timeout: 80ms }}\n\
         nodes:\n  - {{ id: node1, address: {}, priority: 10 }}\n\
         checks:\n  - {{ id: web, {check} }}\nhostnames:\n  - {{ name: app, checks: [web] }}\n",
        listen.join(", "),
        backend.ip,
        backend.ip,
    )
}

/// Makes `command`'s process run under a seccomp filter that fails `setpriority` with EPERM, as
/// systemd's `SystemCallFilter=` with `SystemCallErrorNumber=EPERM` does for a denied call.
fn deny_setpriority(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let errno = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA);
    let insn = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let program = [
        // A = the system call number (offset 0 of struct seccomp_data)
        insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        insn(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            1,
            libc::SYS_setpriority as u32,
        ),
        insn(libc::BPF_RET | libc::BPF_K, 0, 0, errno),
        insn(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: between fork and exec only two prctl calls run (async-signal-safe system calls);
    // the program was built before the fork and outlives the call. The filter is inherited by
    // the exec'd binary and every thread it starts.
    unsafe {
        command.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn a_sandbox_that_denies_setpriority_gets_one_warning_and_a_running_agent() {
    let backend = Backend::group(&["127.0.91.1"]).remove(0);
    let dns_ip = ["127.0.91.2", "127.0.91.3"];
    let port = free_port(&dns_ip);
    let dns: Vec<SocketAddr> = dns_ip
        .iter()
        .map(|ip| format!("{ip}:{port}").parse().unwrap())
        .collect();
    let check = format!(
        "type: http, url: \"http://{{address}}:{}/login\"",
        backend.http_port
    );
    let mut launcher = Command::new(binary());
    deny_setpriority(&mut launcher);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut agent = AgentProcess::start_with(
        launcher,
        dir,
        state,
        &sandbox_config(&backend, &dns, &check),
        dns[0],
    );
    agent.wait_ready(&format!("app.{ZONE}"));
    // Both DNS sockets answer: their threads ran on past the denied call.
    for addr in &dns {
        assert_eq!(
            dig(*addr, &format!("app.{ZONE}"), "A", &[]).answers,
            ["127.0.91.1"]
        );
    }
    let log = agent.log_text();
    let warning = "could not lower the DNS threads' priority";
    assert_eq!(
        log.matches(warning).count(),
        1,
        "one warning for two DNS threads:\n{log}"
    );
    assert!(log.contains("Operation not permitted"), "{log}");
    assert!(log.contains("SystemCallFilter=setpriority"), "{log}");
}

#[test]
fn without_system_ca_certificates_http_checks_run_and_an_https_check_names_what_is_missing() {
    // rustls-native-certs reads only SSL_CERT_FILE/SSL_CERT_DIR when they are set: pointed at an
    // empty file and an empty directory, this machine has no CA certificates.
    let empty = tempfile::tempdir().unwrap();
    let no_certs = common::write_file(empty.path(), "empty.pem", "");
    let no_cert_dir = empty.path().join("certs");
    std::fs::create_dir(&no_cert_dir).unwrap();
    let without_roots = || {
        let mut command = Command::new(binary());
        command
            .env("SSL_CERT_FILE", &no_certs)
            .env("SSL_CERT_DIR", &no_cert_dir);
        command
    };
    let backend = Backend::group(&["127.0.92.1"]).remove(0);
    let dns = common::dns_addr("127.0.92.2");
    let http = format!(
        "type: http, url: \"http://{{address}}:{}/login\"",
        backend.http_port
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut agent = AgentProcess::start_with(
        without_roots(),
        dir,
        state,
        &sandbox_config(&backend, &[dns], &http),
        dns,
    );
    agent.wait_ready(&format!("app.{ZONE}"));
    assert_eq!(
        dig(dns, &format!("app.{ZONE}"), "A", &[]).answers,
        ["127.0.92.1"]
    );
    drop(agent);

    // An https check that verifies certificates cannot work: the agent says why and what to do.
    let https = "type: https, url: \"https://{address}:9/\"";
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_file(
        dir.path(),
        "config.yaml",
        &sandbox_config(&backend, &[dns], https),
    );
    let out = without_roots()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for words in [
        "check web on node node1: cannot set up certificate verification",
        "no CA certificates",
        "apt-get install ca-certificates",
        "SSL_CERT_FILE",
        "tls_verify: false",
    ] {
        assert!(stderr.contains(words), "{words:?} in: {stderr}");
    }
}
