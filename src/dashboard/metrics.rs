//! `/metrics`: the agent's state in the Prometheus/OpenMetrics text format, via the official
//! `prometheus-client` crate.
//!
//! Nothing is kept twice: gauges are read from one load of the published snapshot at scrape time (a
//! [`Collector`]), DNS response counts from the DNS handler's atomics, and the few counters that
//! the status cannot give (answer changes, check transitions) are counted from the event stream.
//!
//! | metric                                          | type    | labels                         |
//! |-------------------------------------------------|---------|--------------------------------|
//! | `failoverd_build_info`                          | gauge   | version, zone, node            |
//! | `failoverd_ready`                               | gauge   |                                |
//! | `failoverd_soa_serial`                          | gauge   |                                |
//! | `failoverd_start_time_seconds`                  | gauge   |                                |
//! | `failoverd_check_up`                            | gauge   | node, check (1 OK, 0 KO/PENDING)|
//! | `failoverd_check_pending`                       | gauge   | node, check (1 before 1st result)|
//! | `failoverd_check_latency_seconds`               | gauge   | node, check (last probe)       |
//! | `failoverd_check_consecutive_passes`            | gauge   | node, check                    |
//! | `failoverd_check_consecutive_failures`          | gauge   | node, check                    |
//! | `failoverd_check_transitions_total`             | counter | node, check, to (OK, KO)       |
//! | `failoverd_check_probes_total`                  | counter | node, check, result (pass, fail) |
//! | `failoverd_hostname_answer`                     | gauge   | hostname, nodes, addresses, reason (always 1) |
//! | `failoverd_hostname_answer_addresses`           | gauge   | hostname                       |
//! | `failoverd_hostname_answer_changes_total`       | counter | hostname                       |
//! | `failoverd_dns_responses_total`                 | counter | rcode                          |
//! | `failoverd_notifications_sent_total`            | counter |                                |
//! | `failoverd_notifications_failed_total`          | counter |                                |
//! | `failoverd_publish_updates_total`               | counter | (RFC 2136 UPDATEs answered NOERROR) |
//! | `failoverd_publish_update_failures_total`       | counter | (each retry counts)            |
//! | `failoverd_publish_queries_total`               | counter | (read-back queries)            |
//! | `failoverd_publish_drift_total`                 | counter | (names someone else changed)   |
//! | `failoverd_secondary_transfers_total`           | counter | (zone transfers sent whole)    |
//! | `failoverd_secondary_transfers_refused_total`   | counter | (no key, wrong key, address, UDP) |
//! | `failoverd_secondary_notifies_sent_total`       | counter | (each retry counts)            |
//! | `failoverd_secondary_notifies_acknowledged_total` | counter | (NOERROR from a secondary)   |

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::events::{Event, EventKind};
use crate::health::State;
use crate::published::Published;

use super::view::StatusView;

/// Counters only the event stream can give, keyed by name so they survive reloads that
/// reorder or change the configuration. Written on events only, never on the DNS path.
#[derive(Debug, Default)]
struct EventCounts {
    /// Per hostname (fully qualified, no trailing dot).
    answer_changes: Mutex<HashMap<String, u64>>,
    /// Per (node id, check id): [to KO, to OK].
    transitions: Mutex<HashMap<(String, String), [u64; 2]>>,
}

/// The registry and what its collector reads.
pub struct Metrics {
    registry: Registry,
    source: Arc<Source>,
}

struct Source {
    published: Published,
    counts: EventCounts,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(published: Published) -> Self {
        let counts = EventCounts::default();
        let source = Arc::new(Source { published, counts });
        let mut registry = Registry::with_prefix("failoverd");
        registry.register_collector(Box::new(source.clone()));
        Self { registry, source }
    }

    /// The whole exposition, `# EOF` included.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Counts answer changes and check transitions until `shutdown`. The receiver was
    /// subscribed when the agent was built, so the first events are not missed.
    pub async fn count_events(
        self: Arc<Self>,
        mut events: broadcast::Receiver<Arc<Event>>,
        shutdown: CancellationToken,
    ) {
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                () = shutdown.cancelled() => return,
            };
            match event {
                Ok(event) => self.source.count(&event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(
                        missed,
                        "metrics fell behind the event stream; some changes are not counted"
                    )
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

impl Source {
    fn count(&self, event: &Event) {
        match &event.kind {
            EventKind::CheckDown { node, check, .. } | EventKind::CheckUp { node, check, .. } => {
                let to = usize::from(matches!(event.kind, EventKind::CheckUp { .. }));
                let mut map = self
                    .counts
                    .transitions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                map.entry((node.clone(), check.clone())).or_default()[to] += 1;
            }
            EventKind::AnswerChanged { hostname, .. } => {
                let mut map = self
                    .counts
                    .answer_changes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                *map.entry(hostname.clone()).or_default() += 1;
            }
            _ => {}
        }
    }
}

/// Encodes one metric family: `samples` are (labels, value).
fn family<L, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result
where
    L: prometheus_client::encoding::EncodeLabelSet,
    M: EncodeMetric,
{
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Encodes one metric without labels (not `name{} v`, which some parsers reject).
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    metric: impl EncodeMetric,
) -> fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, None, kind)?)
}

type Labels = Vec<(&'static str, String)>;

impl Collector for Source {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // The same reading the page and the API use, so the three never disagree.
        let snapshot = self.published.snapshot.load();
        let view = StatusView::from_snapshot(&snapshot, SystemTime::now());
        let status = &snapshot.status;
        let config = &status.config;
        let gauge = |v: f64| ConstGauge::new(v);

        family(
            &mut encoder,
            "build_info",
            "Always 1; the labels say which build serves which zone on which node.",
            MetricType::Gauge,
            [(
                vec![
                    ("version", view.version.clone()),
                    ("zone", view.zone.clone()),
                    ("node", view.node.clone().unwrap_or_default()),
                ],
                ConstGauge::new(1i64),
            )],
        )?;
        single(
            &mut encoder,
            "ready",
            "1 once the first round of checks is done and DNS answers; 0 while it answers SERVFAIL.",
            MetricType::Gauge,
            ConstGauge::new(i64::from(view.ready)),
        )?;
        single(
            &mut encoder,
            "soa_serial",
            "SOA serial of the zone being served; grows on every change of answers.",
            MetricType::Gauge,
            ConstGauge::new(i64::from(view.serial)),
        )?;
        let started = status
            .started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        single(
            &mut encoder,
            "start_time_seconds",
            "When the agent started, in seconds since the Unix epoch.",
            MetricType::Gauge,
            gauge(started),
        )?;

        // Per (node, check), in config order.
        let pair_labels = |p: usize| -> Labels {
            let (n, c) = config.pair(p);
            vec![
                ("node", config.nodes[n].id.clone()),
                ("check", config.checks[c].id.clone()),
            ]
        };
        let pairs = || status.pairs.iter().enumerate();
        family(
            &mut encoder,
            "check_up",
            "1 while the check is OK on the node (after rise/fall), 0 while KO or pending.",
            MetricType::Gauge,
            pairs().map(|(p, h)| (pair_labels(p), ConstGauge::new(i64::from(h.is_up())))),
        )?;
        family(
            &mut encoder,
            "check_pending",
            "1 until the first result of the check on the node.",
            MetricType::Gauge,
            pairs().map(|(p, h)| {
                (
                    pair_labels(p),
                    ConstGauge::new(i64::from(h.state == State::Unknown)),
                )
            }),
        )?;
        family(
            &mut encoder,
            "check_latency_seconds",
            "Duration of the last probe of the check on the node.",
            MetricType::Gauge,
            pairs().filter_map(|(p, h)| {
                let r = h.last_result.as_ref()?;
                Some((pair_labels(p), gauge(r.latency.as_secs_f64())))
            }),
        )?;
        family(
            &mut encoder,
            "check_consecutive_passes",
            "Passes in a row, counting the last probe (rise of them bring a KO check back).",
            MetricType::Gauge,
            pairs().map(|(p, h)| (pair_labels(p), ConstGauge::new(i64::from(h.passes)))),
        )?;
        family(
            &mut encoder,
            "check_consecutive_failures",
            "Failures in a row, counting the last probe (fall of them take an OK check down).",
            MetricType::Gauge,
            pairs().map(|(p, h)| (pair_labels(p), ConstGauge::new(i64::from(h.failures)))),
        )?;
        family(
            &mut encoder,
            "check_probes",
            "Probes of the check on the node since the agent started, by result.",
            MetricType::Counter,
            pairs().flat_map(|(p, h)| {
                let mut pass = pair_labels(p);
                pass.push(("result", "pass".into()));
                let mut fail = pair_labels(p);
                fail.push(("result", "fail".into()));
                [
                    (pass, ConstCounter::new(h.passes_total)),
                    (fail, ConstCounter::new(h.failures_total)),
                ]
            }),
        )?;
        family(
            &mut encoder,
            "check_extra_probes",
            "Probes of the check on the node run early because another agent suspected the pair or saw it recover (bounded: see check/schedule.rs).",
            MetricType::Counter,
            pairs().map(|(p, h)| (pair_labels(p), ConstCounter::new(h.extra_probes_total))),
        )?;
        family(
            &mut encoder,
            "check_transitions",
            "Confirmed state changes of the check on the node, by new state.",
            MetricType::Counter,
            {
                let counts = self
                    .counts
                    .transitions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                (0..config.pair_count()).flat_map(move |p| {
                    let (n, c) = config.pair(p);
                    let key = (config.nodes[n].id.clone(), config.checks[c].id.clone());
                    let [down, up] = counts.get(&key).copied().unwrap_or_default();
                    let mut ko = pair_labels(p);
                    ko.push(("to", "KO".into()));
                    let mut ok = pair_labels(p);
                    ok.push(("to", "OK".into()));
                    [(ko, ConstCounter::new(down)), (ok, ConstCounter::new(up))]
                })
            },
        )?;

        // Per hostname.
        family(
            &mut encoder,
            "hostname_answer",
            "Always 1; the labels are the current answer: node ids and addresses in answer order (space-separated), and why.",
            MetricType::Gauge,
            view.hostnames.iter().map(|h| {
                let addresses: Vec<&str> =
                    h.a.iter()
                        .chain(h.aaaa.iter())
                        .map(String::as_str)
                        .collect();
                (
                    vec![
                        ("hostname", h.name.clone()),
                        // Space-separated: commas trip naive exposition parsers.
                        ("nodes", h.nodes.join(" ")),
                        ("addresses", addresses.join(" ")),
                        ("reason", h.reason.clone()),
                    ],
                    ConstGauge::new(1i64),
                )
            }),
        )?;
        family(
            &mut encoder,
            "hostname_answer_addresses",
            "How many addresses (A and AAAA) the hostname answers with now.",
            MetricType::Gauge,
            view.hostnames.iter().map(|h| {
                (
                    vec![("hostname", h.name.clone())],
                    ConstGauge::new((h.a.len() + h.aaaa.len()) as i64),
                )
            }),
        )?;
        family(
            &mut encoder,
            "hostname_answer_changes",
            "Changes of the hostname's answer since the agent started (the first answer is not a change).",
            MetricType::Counter,
            {
                let counts = self
                    .counts
                    .answer_changes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                view.hostnames.iter().map(move |v| {
                    let count = counts.get(&v.name).copied().unwrap_or_default();
                    (vec![("hostname", v.name.clone())], ConstCounter::new(count))
                })
            },
        )?;

        family(
            &mut encoder,
            "dns_responses",
            "DNS responses sent, by response code.",
            MetricType::Counter,
            self.published
                .dns_queries
                .snapshot()
                .into_iter()
                .map(|(rcode, n)| (vec![("rcode", rcode)], ConstCounter::new(n))),
        )?;

        let pushes = &self.published.pushes;
        single(
            &mut encoder,
            "peer_pushes_sent",
            "Pushes of this agent's changed view taken by a peer (one per peer per change).",
            MetricType::Counter,
            ConstCounter::new(pushes.sent.load(Ordering::Relaxed)),
        )?;
        single(
            &mut encoder,
            "peer_pushes_failed",
            "Pushes a peer did not take (its next pull brings the change instead).",
            MetricType::Counter,
            ConstCounter::new(pushes.failed.load(Ordering::Relaxed)),
        )?;

        let notify = &self.published.notifications;
        single(
            &mut encoder,
            "notifications_sent",
            "Notifications delivered.",
            MetricType::Counter,
            ConstCounter::new(notify.sent.load(Ordering::Relaxed)),
        )?;
        single(
            &mut encoder,
            "notifications_failed",
            "Notification attempts that failed (each retry counts).",
            MetricType::Counter,
            ConstCounter::new(notify.failed.load(Ordering::Relaxed)),
        )?;

        // Counters of the publisher and of the secondaries' transfers and NOTIFYs.
        let (publish, secondaries) = (&self.published.publishing, &self.published.secondaries);
        for (name, help, value) in [
            (
                "publish_updates",
                "RFC 2136 updates answered NOERROR.",
                &publish.updates,
            ),
            (
                "publish_update_failures",
                "RFC 2136 updates that failed (each retry counts).",
                &publish.update_failures,
            ),
            (
                "publish_queries",
                "Read-back queries sent to the update targets.",
                &publish.queries,
            ),
            (
                "publish_drift",
                "Names found changed on a server by someone else after the agent's update.",
                &publish.drift,
            ),
            (
                "secondary_transfers",
                "Zone transfers sent whole to a secondary (AXFR, or IXFR answered with the zone).",
                &secondaries.transfers,
            ),
            (
                "secondary_transfers_refused",
                "Transfer requests refused (no key, another key, an address not allowed, over UDP).",
                &secondaries.transfers_refused,
            ),
            (
                "secondary_notifies_sent",
                "NOTIFY messages sent to the secondaries (each retry counts).",
                &secondaries.notifies_sent,
            ),
            (
                "secondary_notifies_acknowledged",
                "NOTIFY messages a secondary acknowledged.",
                &secondaries.notifies_acknowledged,
            ),
        ] {
            single(
                &mut encoder,
                name,
                help,
                MetricType::Counter,
                ConstCounter::new(value.load(Ordering::Relaxed)),
            )?;
        }
        Ok(())
    }
}
