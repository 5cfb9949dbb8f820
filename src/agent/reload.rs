//! What a reload may change in the running agent. Every section of the configuration is
//! destructured here, so that a new setting cannot be forgotten: it must be sorted as applied
//! at reload or as bound at start.
//!
//! | setting                                                | on reload                          |
//! |--------------------------------------------------------|------------------------------------|
//! | `dns.listen`, `dashboard.listen`                       | warned; the sockets bound at start stay |
//! | `notify` (any of it)                                   | warned; the channels built at start stay |
//! | `cluster:` added or removed                            | warned; the agent keeps the cluster it started with (or none) |
//! | `cluster.listen`, `cluster.secret_env`                 | warned; the values in force stay (the peer API is bound, the secret read) |
//! | `cluster.witnesses` added, removed or changed          | warned; the witnesses started with stay (pulled from, counted) until a restart |
//! | `secondaries:` (targets, `allow_from`, key, SOA timers)  | applied: the key is read again, every target is told the serial once |
//! | `dns.serve`                                            | warned; the DNS server runs (or not) as at start |
//! | `publish:` added or removed, `publish.tsig`            | warned; the publisher and key read at start stay |
//! | `publish.servers`, `zone`, `ttl`, `verify_interval`, `timeout` | applied: the next round publishes to the new servers |
//! | everything else (nodes, checks, hostnames, TTLs, quorum, period, …) | applied            |

use crate::config::{
    CaFile, ClusterConfig, Config, DashboardConfig, DnsConfig, EmailConfig, NotifyConfig,
    PublishConfig, SecretSource, SmtpConfig, WebhookConfig,
};

/// The settings of `new` that only a restart can apply, by key. In `new`, the cluster settings
/// bound at start are put back to the values in force, so that the agent goes on as one whole
/// (its peer API, its secret and the addresses it pulls from agree) until it restarts.
pub(super) fn keep_restart_only(current: &Config, new: &mut Config) -> Vec<&'static str> {
    let Config {
        path: _,
        zone: _,
        self_node: _,
        self_witness: _,
        self_source: _,
        dns:
            DnsConfig {
                serve,
                listen: dns_listen,
                listen_written: _,
                ttl: _,
                ns_ttl: _,
                hostmaster: _,
            },
        dashboard:
            DashboardConfig {
                listen: dashboard_listen,
                refresh: _,
            },
        nodes: _,
        checks: _,
        hostnames: _,
        notify,
        cluster,
        // Applied: the agent stores the new `dns::Secondaries` (see agent/secondaries.rs).
        secondaries: _,
        publish,
    } = new;
    let mut keys = Vec::new();
    if *serve != current.dns.serve {
        keys.push("dns.serve");
    }
    match (&current.publish, publish.as_mut()) {
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            keys.push("publish");
            *publish = current.publish.clone();
        }
        (Some(now), Some(new)) => {
            let PublishConfig {
                servers: _,
                zone: _,
                tsig,
                ttl: _,
                verify_interval: _,
                timeout: _,
            } = new;
            // Where the key is, not where the file says so (a moved line is no change).
            let key = |k: &Option<crate::config::TsigKeyConfig>| {
                k.as_ref()
                    .map(|k| (k.name.clone(), k.algorithm, k.secret_env.clone()))
            };
            if key(tsig) != key(&now.tsig) {
                keys.push("publish.tsig");
                tsig.clone_from(&now.tsig);
            }
        }
    }
    if *dns_listen != current.dns.listen {
        keys.push("dns.listen");
    }
    if *dashboard_listen != current.dashboard.listen {
        keys.push("dashboard.listen");
    }
    if !same_notify(&current.notify, notify) {
        keys.push("notify");
    }
    match (&current.cluster, cluster.as_mut()) {
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            keys.push("cluster");
            *cluster = current.cluster.clone();
        }
        (Some(now), Some(new)) => {
            let ClusterConfig {
                listen,
                secret_env,
                quorum: _,
                period: _,
                witnesses,
            } = new;
            // The agents pulled from, served to and counted are the ones started with.
            if *witnesses != now.witnesses {
                keys.push("cluster.witnesses");
                witnesses.clone_from(&now.witnesses);
            }
            if *listen != now.listen {
                keys.push("cluster.listen");
                *listen = now.listen;
            }
            if *secret_env != now.secret_env {
                keys.push("cluster.secret_env");
                secret_env.clone_from(&now.secret_env);
            }
        }
    }
    keys
}

/// Whether two `notify` sections set up the same channels. Compared field by field, not
/// through Debug text (which would print a webhook URL that may hold a token into a diff).
fn same_notify(a: &NotifyConfig, b: &NotifyConfig) -> bool {
    let NotifyConfig { email, webhook } = b;
    same_option(&a.email, email, same_email) && same_option(&a.webhook, webhook, same_webhook)
}

fn same_option<T>(a: &Option<T>, b: &Option<T>, same: fn(&T, &T) -> bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same(a, b),
        _ => false,
    }
}

fn same_email(a: &EmailConfig, b: &EmailConfig) -> bool {
    let EmailConfig {
        smtp,
        from,
        to,
        events,
        digest_window,
        retry_for,
    } = b;
    same_smtp(&a.smtp, smtp)
        && a.from == *from
        && a.to == *to
        && a.events == *events
        && a.digest_window == *digest_window
        && a.retry_for == *retry_for
}

fn same_smtp(a: &SmtpConfig, b: &SmtpConfig) -> bool {
    let SmtpConfig {
        host,
        port,
        tls,
        username,
        password,
        timeout,
        ca,
    } = b;
    a.host == *host
        && a.port == *port
        && a.tls == *tls
        && a.username == *username
        && same_option(&a.password, password, same_secret_source)
        && a.timeout == *timeout
        && same_option(&a.ca, ca, same_ca)
}

/// Where the secret is; where the file says so (line, column) is for messages only.
fn same_secret_source(a: &SecretSource, b: &SecretSource) -> bool {
    let SecretSource {
        kind,
        file: _,
        location: _,
        key,
    } = b;
    a.kind == *kind && a.key == *key
}

/// The same file; its certificates were read at start.
fn same_ca(a: &CaFile, b: &CaFile) -> bool {
    let CaFile {
        path,
        certificate: _,
        written_at: _,
    } = b;
    a.path == *path
}

fn same_webhook(a: &WebhookConfig, b: &WebhookConfig) -> bool {
    let WebhookConfig {
        url,
        headers,
        events,
        retry_for,
        timeout,
    } = b;
    a.url == *url
        && a.headers == *headers
        && a.events == *events
        && a.retry_for == *retry_for
        && a.timeout == *timeout
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = "zone: ha.example.com\nself: n1\ndns: { listen: [\"127.0.0.1:5300\"] }\n\
        dashboard: { listen: \"127.0.0.1:8081\" }\n\
        nodes:\n  - { id: n1, address: 127.0.10.1 }\n  - { id: n2, address: 127.0.10.2 }\n\
        checks:\n  - { id: web, type: http, url: \"http://{address}/\" }\n\
        hostnames:\n  - { name: app, checks: [web] }\n";
    const CLUSTER: &str =
        "cluster: { listen: \"127.0.0.1:8053\", secret_env: FAILOVERD_SECRET, quorum: majority }\n";
    const WEBHOOK: &str =
        "notify:\n  webhook:\n    url: \"https://chat.example.com/hooks/t0ken\"\n";

    fn config(yaml: &str) -> Config {
        crate::config::parse(Path::new("t.yaml"), yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    /// The keys warned about when `before` is reloaded as `after`, and the cluster applied.
    fn reload(before: &str, after: &str) -> (Vec<&'static str>, Option<ClusterConfig>) {
        let current = config(before);
        let mut new = config(after);
        let keys = keep_restart_only(&current, &mut new);
        (keys, new.cluster)
    }

    #[test]
    fn settings_bound_at_start_are_named_and_the_rest_applies() {
        let base = format!("{BASE}{CLUSTER}{WEBHOOK}");
        let none: &[&str] = &[];
        let cases: &[(&str, String, &[&str])] = &[
            ("nothing changed", base.clone(), none),
            (
                "a TTL and a node's address apply",
                base.replace("5300\"] }", "5300\"], ttl: 7s }")
                    .replace("127.0.10.2", "127.0.10.3"),
                none,
            ),
            (
                "dns.listen",
                base.replace("127.0.0.1:5300", "127.0.0.1:5301"),
                &["dns.listen"],
            ),
            (
                "dashboard.listen",
                base.replace("127.0.0.1:8081", "127.0.0.1:8082"),
                &["dashboard.listen"],
            ),
            (
                "the webhook URL",
                base.replace("t0ken", "other"),
                &["notify"],
            ),
            ("notify removed", format!("{BASE}{CLUSTER}"), &["notify"]),
            (
                "cluster.listen",
                base.replace("127.0.0.1:8053", "127.0.0.1:8054"),
                &["cluster.listen"],
            ),
            (
                "cluster.secret_env",
                base.replace("FAILOVERD_SECRET", "OTHER_SECRET"),
                &["cluster.secret_env"],
            ),
            (
                "cluster quorum applies",
                base.replace("majority", "all"),
                none,
            ),
            ("cluster removed", format!("{BASE}{WEBHOOK}"), &["cluster"]),
            (
                "a witness added",
                base.replace(
                    "quorum: majority }",
                    "quorum: majority, witnesses: [{ id: w1, address: 127.0.10.9 }] }",
                ),
                &["cluster.witnesses"],
            ),
        ];
        for (what, after, want) in cases {
            let (keys, _) = reload(&base, after);
            assert_eq!(keys, *want, "{what}");
        }
        let (keys, _) = reload(&format!("{BASE}{WEBHOOK}"), &base);
        assert_eq!(keys, ["cluster"], "cluster added");
        let with_witness = base.replace(
            "quorum: majority }",
            "quorum: majority, witnesses: [{ id: w1, address: 127.0.10.9 }] }",
        );
        let (keys, cluster) = reload(&with_witness, &base);
        assert_eq!(keys, ["cluster.witnesses"], "a witness removed");
        assert_eq!(
            cluster.unwrap().witnesses,
            config(&with_witness).cluster.unwrap().witnesses,
            "the witnesses started with stay until a restart"
        );
    }

    #[test]
    fn the_cluster_in_force_stays_until_a_restart() {
        let base = format!("{BASE}{CLUSTER}");
        let (_, cluster) = reload(&base, BASE);
        assert_eq!(cluster, config(&base).cluster, "removed: kept");
        let (_, cluster) = reload(BASE, &base);
        assert_eq!(cluster, None, "added: still none");
        let after = base
            .replace("127.0.0.1:8053", "127.0.0.1:8054")
            .replace("FAILOVERD_SECRET", "OTHER")
            .replace("majority", "all");
        let cluster = reload(&base, &after).1.unwrap();
        assert_eq!(cluster.listen, "127.0.0.1:8053".parse().unwrap());
        assert_eq!(cluster.secret_env, "FAILOVERD_SECRET");
        assert_eq!(
            cluster.quorum,
            crate::config::Quorum::All,
            "the quorum applies"
        );
    }

    #[test]
    fn publish_servers_apply_and_its_key_and_presence_wait_for_a_restart() {
        const PUBLISH: &str = "publish:\n  servers: [\"127.0.20.1\"]\n  tsig: { name: k, secret_env: FAILOVERD_TSIG }\n";
        let base = format!("{BASE}{PUBLISH}");
        let check = |after: String| {
            let current = config(&base);
            let mut new = config(&after);
            let keys = keep_restart_only(&current, &mut new);
            (keys, new.publish)
        };
        let (keys, publish) = check(
            base.replace("127.0.20.1", "127.0.20.2")
                .replace("k,", "k, algorithm: hmac-sha256,"),
        );
        assert!(keys.is_empty(), "{keys:?}");
        assert_eq!(publish.unwrap().servers, ["127.0.20.2:53".parse().unwrap()]);
        let (keys, publish) = check(base.replace("FAILOVERD_TSIG", "OTHER_TSIG"));
        assert_eq!(keys, ["publish.tsig"]);
        assert_eq!(
            publish.unwrap().tsig.unwrap().secret_env,
            "FAILOVERD_TSIG",
            "the key in force stays"
        );
        let (keys, publish) = check(BASE.to_string());
        assert_eq!(keys, ["publish"]);
        assert!(publish.is_some(), "the publisher started with stays");
        let (keys, _) = check(base.replace("dns: {", "dns: { serve: false,"));
        assert!(keys.contains(&"dns.serve"), "{keys:?}");
    }
}
