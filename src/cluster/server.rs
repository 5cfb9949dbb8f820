//! The peer API: serves this agent's own observations to the other agents, and takes the
//! answers they push when their view changes, from authenticated callers only.
//!
//! | request                                              | answer |
//! |------------------------------------------------------|--------|
//! | `GET /v1/observations`, valid signature, fresh time and nonce, caller is another node | 200, JSON, signed over the caller's nonce |
//! | `POST /v1/observations` (a push: the caller's answer as body), the same checks, the signature also over the body | 204; the answer goes to the writer as a pulled one does |
//! | a push larger than `pull::max_body`, or not the caller's answer for this zone | 401 / 400 (logged) |
//! | missing headers, unknown caller, time off by more than 30 s, reused nonce, bad signature | 401 (logged) |
//! | anything else                                        | 404 / 405 |

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::auth::{
    self, HEADER_AGENT, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME, MAX_SKEW, NonceCache, Secret,
};
use super::{OBSERVATIONS_PATH, PairVote, PeerAnswer, PeerReport};
use crate::connections::Limiter;
use crate::connections::http::{CappedListener, PEER_API_TIMEOUTS, Peer};
use crate::health::State as Health;
use crate::snapshot;

/// What the handler needs: the published snapshot (own observations) and the secret.
pub struct PeerContext {
    pub snapshot: snapshot::Shared,
    pub secret: Secret,
    seen: Mutex<NonceCache>,
    /// Where pushed answers go: the writer's channel of peer reports (pulled answers too).
    reports: mpsc::Sender<PeerReport>,
}

impl PeerContext {
    pub fn new(
        snapshot: snapshot::Shared,
        secret: Secret,
        reports: mpsc::Sender<PeerReport>,
    ) -> Arc<Self> {
        Arc::new(Self {
            snapshot,
            secret,
            seen: Mutex::new(NonceCache::default()),
            reports,
        })
    }

    /// Remembers `agent`'s `nonce`; Err if it was seen within the replay window (or the agent
    /// used too many).
    fn first_use(&self, agent: &str, nonce: &str) -> Result<(), &'static str> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.first_use(agent, nonce, Instant::now().into_std())
    }
}

/// The peer API listener, bound before the agent serves anything.
pub struct PeerServer {
    listener: std::net::TcpListener,
}

impl PeerServer {
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Self { listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown`, with at most what `limit` admits; Err if the listener itself
    /// fails (it could never accept again).
    pub async fn serve(
        self,
        context: Arc<PeerContext>,
        shutdown: CancellationToken,
        limit: Arc<Limiter>,
    ) -> io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        info!(listen = %listener.local_addr()?, "peer API listening");
        let app = router(context).into_make_service_with_connect_info::<Peer>();
        let listener = CappedListener::new(listener, limit, PEER_API_TIMEOUTS);
        let failure = listener.failure();
        axum::serve(listener, app)
            .with_graceful_shutdown(failure.until(shutdown))
            .await?;
        failure.result()
    }
}

pub fn router(context: Arc<PeerContext>) -> Router {
    Router::new()
        .route(OBSERVATIONS_PATH, get(observations).post(pushed))
        .with_state(context)
}

/// Checks a request's authentication headers up to the signature: the caller is another node,
/// the time is within `MAX_SKEW`, the nonce is well formed. Ok is the caller's id, time, nonce
/// and signature; Err is the caller as it named itself and why it is refused.
fn check_headers<'h>(
    status: &crate::status::Status,
    headers: &'h HeaderMap,
) -> Result<(&'h str, u64, &'h str, &'h str), (&'h str, &'static str)> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (agent, time, nonce, signature) = (
        header(HEADER_AGENT),
        header(HEADER_TIME),
        header(HEADER_NONCE),
        header(HEADER_SIGNATURE),
    );
    let me = status.config.self_id();

    if agent.is_empty() || time.is_empty() || nonce.is_empty() || signature.is_empty() {
        return Err((agent, "missing authentication headers"));
    }
    if Some(agent) == me || !status.config.agents().iter().any(|a| a.id == agent) {
        return Err((agent, "not another agent (node or witness) of this cluster"));
    }
    let Ok(time) = time.parse::<u64>() else {
        return Err((agent, "bad time"));
    };
    if auth::unix_now().abs_diff(time) > MAX_SKEW.as_secs() {
        return Err((
            agent,
            "time outside the 30 s window (are the clocks in sync?)",
        ));
    }
    if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err((agent, "bad nonce"));
    }
    Ok((agent, time, nonce, signature))
}

fn refuse(from: SocketAddr, agent: &str, why: &str) -> Response {
    warn!(%from, agent, reason = why, "peer API request refused");
    (StatusCode::UNAUTHORIZED, format!("refused: {why}\n")).into_response()
}

async fn observations(
    State(context): State<Arc<PeerContext>>,
    ConnectInfo(Peer(from)): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let snapshot = context.snapshot.load();
    let status = &snapshot.status;
    let (agent, time, nonce, signature) = match check_headers(status, &headers) {
        Ok(h) => h,
        Err((agent, why)) => return refuse(from, agent, why),
    };
    if !context
        .secret
        .verify_request(agent, time, nonce, OBSERVATIONS_PATH, signature)
    {
        return refuse(from, agent, "bad signature (not the same cluster secret?)");
    }
    // After the signature: only a member can spend a nonce.
    if let Err(why) = context.first_use(agent, nonce) {
        return refuse(from, agent, why);
    }
    let body = match serde_json::to_vec(&own_answer(status)) {
        Ok(b) => b,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let signature = context.secret.sign_response(nonce, &body);
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&signature) {
        h.insert(HEADER_SIGNATURE, v);
    }
    response
}

/// A push: another agent's answer, sent because its view changed. Authenticated as a pull is
/// (the signature also covers the body), bounded as a pulled answer is (`pull::max_body`), then
/// handed to the writer as a pulled answer would be.
async fn pushed(
    State(context): State<Arc<PeerContext>>,
    ConnectInfo(Peer(from)): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let snapshot = context.snapshot.load_full();
    let status = &snapshot.status;
    let (agent, time, nonce, signature) = match check_headers(status, &headers) {
        Ok(h) => h,
        Err((agent, why)) => return refuse(from, agent, why),
    };
    let limit = super::pull::max_body(&status.config);
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return refuse(
            from,
            agent,
            "push larger than this configuration can need (or cut short)",
        );
    };
    if !context
        .secret
        .verify_push(agent, time, nonce, OBSERVATIONS_PATH, &body, signature)
    {
        return refuse(from, agent, "bad signature (not the same cluster secret?)");
    }
    if let Err(why) = context.first_use(agent, nonce) {
        return refuse(from, agent, why);
    }
    let zone = status
        .config
        .zone
        .to_ascii()
        .trim_end_matches('.')
        .to_string();
    let answer = match super::pull::read_answer(&body, agent, &zone) {
        Ok(a) => a,
        Err(why) => {
            warn!(%from, agent, reason = %why, "push refused");
            return (StatusCode::BAD_REQUEST, format!("refused: {why}\n")).into_response();
        }
    };
    let report = PeerReport {
        peer: agent.to_string(),
        result: Ok(answer),
        received_at: Instant::now(),
    };
    match context.reports.try_send(report) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        // The writer is behind: the next pull brings the same news.
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy; pull instead\n").into_response(),
    }
}

/// This agent's answer to the others: its own confirmed state of every pair it has a result
/// for, its overrides and its serial claim. What a pull gets and what a push sends.
pub fn own_answer(status: &crate::status::Status) -> PeerAnswer {
    let now = SystemTime::now();
    let config = &status.config;
    let me = config.self_id();
    let observations = (0..config.pair_count())
        .filter_map(|p| {
            let health = &status.pairs[p];
            let checked = health.last_checked?;
            if health.state == Health::Unknown {
                return None;
            }
            let (n, c) = config.pair(p);
            let last = health.last_result.as_ref();
            let up = health.state == Health::Up;
            Some(PairVote {
                node: config.nodes[n].id.clone(),
                check: config.checks[c].id.clone(),
                up,
                age_ms: now
                    .duration_since(checked)
                    .unwrap_or(Duration::ZERO)
                    .as_millis() as u64,
                latency_ms: last
                    .map(|r| r.latency.as_secs_f64() * 1000.0)
                    .unwrap_or_default(),
                error: if up {
                    None
                } else {
                    last.and_then(|r| r.error.clone())
                },
                changing: last.is_some_and(|r| r.passed != up),
            })
        })
        .collect();
    PeerAnswer {
        agent: me.unwrap_or_default().to_string(),
        zone: config.zone.to_ascii().trim_end_matches('.').to_string(),
        observations,
        overrides: status.overrides.clone(),
        serial: status.claim,
    }
}
