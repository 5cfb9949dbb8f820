//! `failoverd delegation`: the NS and glue records the parent zone needs, in the forms operators
//! paste (BIND zone file, Windows DNS PowerShell, a plain table), and how to verify them.

use std::fmt::Write;
use std::net::IpAddr;

use crate::config::Config;
use crate::dns::zone::nameserver_name;

/// The delegation of the zone to every node, as text.
pub fn render(config: &Config) -> String {
    let zone = fqdn(&config.zone.to_ascii());
    let (child, parent) = zone.split_once('.').unwrap_or((zone.as_str(), ""));
    let parent = if parent.is_empty() { "." } else { parent };
    let ns_ttl = config.dns.ns_ttl.as_secs();
    let servers: Vec<(String, &[IpAddr])> = (0..config.nodes.len())
        .map(|n| {
            (
                fqdn(&nameserver_name(config, n).to_ascii()),
                config.nodes[n].addresses.as_slice(),
            )
        })
        .collect();
    let width = servers
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0)
        .max(zone.len())
        + 1;

    let mut out = String::new();
    let _ = writeln!(out, "; Delegation of {zone} to {} node(s).", servers.len());
    let _ = writeln!(
        out,
        "; Add these records to the parent zone ({parent}) on the corporate DNS."
    );
    let _ = writeln!(out, "\n; --- BIND zone file (parent zone {parent}) ---");
    for (name, _) in &servers {
        let _ = writeln!(
            out,
            "{:<width$} {ns_ttl} IN NS   {name}.",
            format!("{zone}.")
        );
    }
    for (name, addrs) in &servers {
        for ip in addrs.iter() {
            let kind = if ip.is_ipv4() { "A   " } else { "AAAA" };
            let _ = writeln!(
                out,
                "{:<width$} {ns_ttl} IN {kind} {ip}",
                format!("{name}.")
            );
        }
    }

    let _ = writeln!(
        out,
        "\n# --- Windows DNS, PowerShell on the server holding {parent} ---"
    );
    for (name, addrs) in &servers {
        let ips: Vec<String> = addrs.iter().map(|ip| ip.to_string()).collect();
        let _ = writeln!(
            out,
            "Add-DnsServerZoneDelegation -Name \"{parent}\" -ChildZoneName \"{child}\" -NameServer \"{name}\" -IPAddress {}",
            ips.join(",")
        );
    }
    let _ = writeln!(
        out,
        "# (one line per name server: each adds its NS record and glue to the delegation)"
    );

    let _ = writeln!(out, "\n--- Table ---");
    let _ = writeln!(out, "{:<width$} {:<8} addresses", "name server", "node");
    for (n, (name, addrs)) in servers.iter().enumerate() {
        let ips: Vec<String> = addrs.iter().map(|ip| ip.to_string()).collect();
        let _ = writeln!(
            out,
            "{name:<width$} {:<8} {}",
            config.nodes[n].id,
            ips.join(", ")
        );
    }

    let port = config.dns.listen.first().map(|a| a.port()).unwrap_or(53);
    let port_arg = if port == 53 {
        String::new()
    } else {
        format!(" -p {port}")
    };
    let nslookup_port = if port == 53 {
        String::new()
    } else {
        format!(" -port={port}")
    };
    let first_host = config
        .hostnames
        .first()
        .map(|h| fqdn(&h.fqdn.to_ascii()))
        .unwrap_or_else(|| zone.clone());
    let _ = writeln!(out, "\n--- Verify ---");
    let _ = writeln!(
        out,
        "# every agent directly: each must answer with flag \"aa\" and the same addresses"
    );
    for (n, (_, addrs)) in servers.iter().enumerate() {
        if let Some(ip) = addrs.first() {
            let _ = writeln!(
                out,
                "dig @{ip}{port_arg} {first_host} +norec        # {}",
                config.nodes[n].id
            );
        }
    }
    let _ = writeln!(
        out,
        "# through the corporate resolver, once the records above are in place"
    );
    let _ = writeln!(out, "dig {zone} NS");
    let _ = writeln!(out, "dig {first_host}");
    let _ = writeln!(out, "nslookup -type=NS {zone}");
    let _ = writeln!(out, "nslookup{nslookup_port} {first_host}");
    let _ = writeln!(
        out,
        "# or all of it at once: failoverd verify --config {} --server <resolver>",
        config.path.display()
    );
    out
}

/// A domain name without its trailing dot, lower case.
fn fqdn(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn matches_the_reviewed_expected_output() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delegation");
        let config = crate::config::load(&dir.join("config.yaml")).unwrap();
        let mut config = config;
        config.path = "config.yaml".into();
        let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
        let got = super::render(&config);
        if got != expected {
            std::fs::write(dir.join("actual.txt"), &got).unwrap();
            panic!(
                "delegation output differs from tests/delegation/expected.txt; see actual.txt next to it"
            );
        }
    }
}
