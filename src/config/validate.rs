//! The validator: cross-checks the parsed file (`file.rs`) section by section and builds the
//! `Config`. Each section's checks are in its own file (`dns.rs`, `nodes.rs`, `checks.rs`, …) as
//! an `impl Validator` block; this file holds the order they run in and the helpers they share.
//!
//! Every check returns the first problem it finds: an operator fixes one line at a time, and a
//! later message could be caused by the earlier mistake.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::dashboard::REFRESH_RANGE;
use super::dns::{MAX_TTL, ttl_text};
use super::error::{Place, snippet};
use super::file::ConfigFile;
use super::names::Named;
use super::{Config, ConfigError, HumanDuration, SelfSource, format_duration};

/// Cross-checks the parsed file and builds the `Config`.
pub(super) struct Validator<'a> {
    /// The file's name, for messages.
    pub(super) file: String,
    /// Its text, for the snippet under a message.
    pub(super) text: &'a str,
}

impl Validator<'_> {
    /// An error at the place `span` was read from.
    pub(super) fn error<T>(
        &self,
        span: &Spanned<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.place(span, key).error(message)
    }

    /// The place `span` was read from, for an error found later.
    pub(super) fn place<T>(&self, span: &Spanned<T>, key: impl Into<String>) -> Place {
        let (line, column) = (span.referenced.line(), span.referenced.column());
        let location = (line > 0).then_some((line, column));
        Place {
            file: self.file.clone(),
            location,
            key: key.into(),
            snippet: location.and_then(|(l, c)| snippet(self.text, l, c)),
        }
    }

    /// An error about a key that has no place in the file (a missing or empty section).
    pub(super) fn plain_error(
        &self,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            location: None,
            key: key.into(),
            message: message.into(),
            snippet: None,
        }
    }

    pub(super) fn validate(self, path: &Path, raw: ConfigFile) -> Result<Config, ConfigError> {
        let ConfigFile {
            zone,
            self_id,
            dns,
            dashboard,
            defaults,
            nodes,
            checks,
            hostnames,
            notify,
            cluster,
            secondaries,
            publish,
        } = raw;

        let zone_name = self.zone(&zone)?;
        let serve_span = dns.serve.clone();
        for (value, key) in [(&dns.ttl, "dns.ttl"), (&dns.ns_ttl, "dns.ns_ttl")] {
            self.bounded(value.as_ref(), key, (Duration::ZERO, MAX_TTL), ttl_text)?;
        }
        let refresh = dashboard.refresh.as_ref();
        self.bounded(refresh, "dashboard.refresh", REFRESH_RANGE, format_duration)?;
        let dns = self.dns(dns, &zone_name)?;
        let dashboard = self.dashboard(dashboard)?;
        let defaults = self.timing_defaults(&defaults)?;
        let (nodes, node_ids) = self.nodes(nodes)?;
        let (checks, check_ids) = self.checks(checks, &defaults)?;
        // Before the hostnames: a hostname that names a witness is told it is one.
        let cluster = match cluster {
            None => None,
            Some(section) => Some(self.cluster(section, &nodes)?),
        };
        let witnesses = cluster.as_ref().map_or(&[][..], |c| &c.witnesses[..]);
        let hostnames = self.hostnames(
            hostnames, &zone_name, &nodes, &node_ids, &check_ids, witnesses,
        )?;
        let (self_node, self_witness, self_source) = match &self_id {
            Some(id) => match node_ids.get(id.value.as_str()) {
                Some(&i) => (Some(i), None, SelfSource::Configured),
                None => match witnesses.iter().position(|w| w.id == id.value) {
                    Some(w) => (None, Some(w), SelfSource::Configured),
                    None => {
                        let known: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
                        let ws: Vec<&str> = witnesses.iter().map(|w| w.id.as_str()).collect();
                        let message = if ws.is_empty() {
                            format!(
                                "`{}` is not a node id (nodes: {})",
                                id.value,
                                known.join(", ")
                            )
                        } else {
                            format!(
                                "`{}` is neither a node nor a witness id (nodes: {}; witnesses: {})",
                                id.value,
                                known.join(", "),
                                ws.join(", ")
                            )
                        };
                        return Err(self.error(id, "self", message));
                    }
                },
            },
            // Which of the nodes this machine is, when the file does not say, is found by
            // `config::find_self` (it binds sockets): parsing reads nothing but the text.
            None => (None, None, SelfSource::NotLooked),
        };

        let config_dir = path.parent().unwrap_or(Path::new("."));
        let notify = self.notify(notify, config_dir)?;
        let secondaries = match secondaries {
            None => None,
            Some(section) => Some(self.secondaries(section)?),
        };

        let publish = match publish {
            None => None,
            Some(section) => Some(self.publish(section, &zone_name, dns.ttl)?),
        };
        if let Some(serve) = serve_span.as_ref().filter(|s| !s.value)
            && secondaries.is_some()
        {
            return Err(self.error(
                serve,
                "dns.serve",
                "with `serve: false` no DNS server answers the secondaries' transfers: remove `secondaries:` (the secondaries can be fed by `publish:` instead) or `serve: false`",
            ));
        }
        if let Some(serve) = serve_span.filter(|s| !s.value)
            && publish.is_none()
        {
            return Err(self.error(
                &serve,
                "dns.serve",
                "with `serve: false` nothing would answer for the hostnames: add a `publish:` section (the servers that get the records by dynamic update), or remove `serve: false`",
            ));
        }

        Ok(Config {
            path: path.to_path_buf(),
            zone: zone_name,
            self_node,
            self_witness,
            self_source,
            dns,
            dashboard,
            nodes,
            checks,
            hostnames,
            notify,
            cluster,
            secondaries,
            publish,
        })
    }

    pub(super) fn socket_addr(
        &self,
        item: &Spanned<String>,
        key: &str,
    ) -> Result<SocketAddr, ConfigError> {
        item.value.trim().parse::<SocketAddr>().map_err(|_| {
            self.error(
                item,
                key,
                format!(
                    "`{}` is not an address:port (examples: 0.0.0.0:53, [::]:53, 127.0.0.1:5353)",
                    item.value
                ),
            )
        })
    }

    /// The value a one-word key names (`quorum: all`), `default` when the key is absent.
    pub(super) fn word<T: Named>(
        &self,
        written: Option<&Spanned<String>>,
        key: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        self.word_or(written, key, default, |w| {
            format!("`{w}` is not one of {}", T::NAMES.join(", "))
        })
    }

    /// [`word`](Self::word), with the message for a word that names no value.
    pub(super) fn word_or<T: Named>(
        &self,
        written: Option<&Spanned<String>>,
        key: &str,
        default: T,
        refused: impl FnOnce(&str) -> String,
    ) -> Result<T, ConfigError> {
        let Some(span) = written else {
            return Ok(default);
        };
        T::from_name(&span.value).ok_or_else(|| self.error(span, key, refused(&span.value)))
    }

    /// Refuses a written duration outside `min..=max`, naming the key to change.
    pub(super) fn bounded(
        &self,
        value: Option<&Spanned<HumanDuration>>,
        key: &str,
        (min, max): (Duration, Duration),
        show: fn(Duration) -> String,
    ) -> Result<(), ConfigError> {
        let Some(span) = value else { return Ok(()) };
        let v = span.value.0;
        if v < min {
            let message = format!("{} is too short; use at least {}", show(v), show(min));
            return Err(self.error(span, key, message));
        }
        if v > max {
            let message = format!("{} is too long; use at most {}", show(v), show(max));
            return Err(self.error(span, key, message));
        }
        Ok(())
    }

    /// A written duration within `min..=max`, or `default` when not written.
    pub(super) fn bounded_duration(
        &self,
        value: Option<&Spanned<HumanDuration>>,
        key: &str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = value else {
            return Ok(default);
        };
        if v.value.0 < min || v.value.0 > max {
            return Err(self.error(
                v,
                key,
                format!(
                    "{} is out of range; use {} to {}",
                    format_duration(v.value.0),
                    format_duration(min),
                    format_duration(max)
                ),
            ));
        }
        Ok(v.value.0)
    }

    /// The entries of a list with ids (`nodes:`, `checks:`) in the order written, each built by
    /// `build`, and the ids' indexes. An id must pass `usable`, be unique, and not differ from
    /// another only in case.
    pub(super) fn id_list<E, T>(
        &self,
        entries: Vec<E>,
        section: &str,
        what: &str,
        id: fn(&E) -> &Spanned<String>,
        usable: fn(&str) -> Option<String>,
        mut build: impl FnMut(usize, E) -> Result<T, ConfigError>,
    ) -> Result<(Vec<T>, HashMap<String, usize>), ConfigError> {
        if entries.is_empty() {
            return Err(self.plain_error(section, format!("at least one {what} is needed")));
        }
        let mut ids = HashMap::new();
        let mut folded_ids = HashMap::new();
        let mut built = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let (id, key) = (id(&entry), format!("{section}[{i}].id"));
            self.unique_ignoring_case(id, &key, what, &mut folded_ids)?;
            if let Some(message) = usable(&id.value) {
                return Err(self.error(id, key, message));
            }
            if ids.insert(id.value.clone(), i).is_some() {
                let message = format!(
                    "{what} id `{}` is used twice; {what} ids must be unique",
                    id.value
                );
                return Err(self.error(id, key, message));
            }
            built.push(build(i, entry)?);
        }
        Ok((built, ids))
    }

    /// Refuses an id that differs from an earlier one only in letter case: ids become DNS names
    /// (`ns-<node id>`), labels and metric values, where `n1` and `N1` read as one. An exact
    /// repeat is left to the caller's own "used twice" message.
    pub(super) fn unique_ignoring_case(
        &self,
        id: &Spanned<String>,
        key: &str,
        what: &str,
        seen: &mut HashMap<String, String>,
    ) -> Result<(), ConfigError> {
        match seen.get(&id.value.to_ascii_lowercase()) {
            Some(earlier) if *earlier != id.value => Err(self.error(
                id,
                key,
                format!(
                    "{what} id `{}` differs from `{earlier}` only in case; ids are compared ignoring case (DNS names are), so rename one",
                    id.value
                ),
            )),
            Some(_) => Ok(()),
            None => {
                seen.insert(id.value.to_ascii_lowercase(), id.value.clone());
                Ok(())
            }
        }
    }
}

/// A DNS label usable for node ids and hostnames: letters, digits, '-', not at the ends.
pub(super) fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
