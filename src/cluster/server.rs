//! The peer API: serves this agent's own observations to the other agents, to authenticated
//! callers only.
//!
//! | request                                              | answer |
//! |------------------------------------------------------|--------|
//! | `GET /v1/observations`, valid signature, fresh time and nonce, caller is another node | 200, JSON, signed over the caller's nonce |
//! | missing headers, unknown caller, time off by more than 30 s, reused nonce, bad signature | 401 (logged) |
//! | anything else                                        | 404 / 405 |

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::auth::{
    self, HEADER_AGENT, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME, MAX_SKEW, NonceCache, Secret,
};
use super::{OBSERVATIONS_PATH, PairVote, PeerAnswer};
use crate::connections::Limiter;
use crate::connections::http::{CappedListener, PEER_API_TIMEOUTS, Peer};
use crate::health::State as Health;
use crate::snapshot;

/// What the handler needs: the published snapshot (own observations) and the secret.
pub struct PeerContext {
    pub snapshot: snapshot::Shared,
    pub secret: Secret,
    seen: Mutex<NonceCache>,
}

impl PeerContext {
    pub fn new(snapshot: snapshot::Shared, secret: Secret) -> Arc<Self> {
        Arc::new(Self {
            snapshot,
            secret,
            seen: Mutex::new(NonceCache::default()),
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
        .route(OBSERVATIONS_PATH, get(observations))
        .with_state(context)
}

async fn observations(
    State(context): State<Arc<PeerContext>>,
    ConnectInfo(Peer(from)): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let snapshot = context.snapshot.load();
    let status = &snapshot.status;
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
    let refuse = |why: &str| {
        warn!(%from, agent, reason = why, "peer API request refused");
        (StatusCode::UNAUTHORIZED, format!("refused: {why}\n")).into_response()
    };
    if agent.is_empty() || time.is_empty() || nonce.is_empty() || signature.is_empty() {
        return refuse("missing authentication headers");
    }
    if Some(agent) == me || !status.config.agents().iter().any(|a| a.id == agent) {
        return refuse("not another agent (node or witness) of this cluster");
    }
    let Ok(time) = time.parse::<u64>() else {
        return refuse("bad time");
    };
    if auth::unix_now().abs_diff(time) > MAX_SKEW.as_secs() {
        return refuse("time outside the 30 s window (are the clocks in sync?)");
    }
    if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return refuse("bad nonce");
    }
    if !context
        .secret
        .verify_request(agent, time, nonce, OBSERVATIONS_PATH, signature)
    {
        return refuse("bad signature (not the same cluster secret?)");
    }
    // After the signature: only a member can spend a nonce.
    if let Err(why) = context.first_use(agent, nonce) {
        return refuse(why);
    }

    let now = SystemTime::now();
    let config = &status.config;
    let observations = (0..config.pair_count())
        .filter_map(|p| {
            let health = &status.pairs[p];
            let checked = health.last_checked?;
            if health.state == Health::Unknown {
                return None;
            }
            let (n, c) = config.pair(p);
            let last = health.last_result.as_ref();
            Some(PairVote {
                node: config.nodes[n].id.clone(),
                check: config.checks[c].id.clone(),
                up: health.state == Health::Up,
                age_ms: now
                    .duration_since(checked)
                    .unwrap_or(Duration::ZERO)
                    .as_millis() as u64,
                latency_ms: last
                    .map(|r| r.latency.as_secs_f64() * 1000.0)
                    .unwrap_or_default(),
                error: if health.state == Health::Up {
                    None
                } else {
                    last.and_then(|r| r.error.clone())
                },
            })
        })
        .collect();
    let body = PeerAnswer {
        agent: me.unwrap_or_default().to_string(),
        zone: config.zone.to_ascii().trim_end_matches('.').to_string(),
        observations,
        overrides: status.overrides.clone(),
        serial: status.claim,
    };
    let body = match serde_json::to_vec(&body) {
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
