//! The localhost dashboard: the HTML page at `/`, the JSON API at `/api/v1/status`, Prometheus
//! metrics at `/metrics`, and the client side of `failoverd status`.
//!
//! Everything here only reads what the writer publishes ([`Published`]): the page shows the
//! same zone snapshot DNS serves, so what an operator sees is what resolvers get.
//!
//! ```text
//! request ─► security headers ─► timeout ─► guard (loopback peer, loopback Host) ─► route
//! ```
//!
//! | request                                   | answer                                   |
//! |-------------------------------------------|------------------------------------------|
//! | peer address not loopback                 | 403                                      |
//! | `Host` missing or not a loopback name     | 403 (DNS rebinding from a local browser) |
//! | GET/HEAD `/`                              | 200 HTML, or 500 if rendering fails      |
//! | GET/HEAD `/api/v1/status`                 | 200 JSON                                 |
//! | GET/HEAD `/api/v1/history[?since=T]`      | 200 JSON; 400 if `since` is not RFC 3339 |
//! | GET/HEAD `/history`                       | 200 HTML: the timeline alone             |
//! | GET/HEAD `/metrics`                       | 200 OpenMetrics text                     |
//! | GET/HEAD `/static/dashboard.css`          | 200 CSS                                  |
//! | a known path with another method          | 405 with `Allow`                         |
//! | any other path                            | 404                                      |
//! | handler slower than `REQUEST_TIMEOUT`     | 408                                      |

pub mod actions;
pub mod client;
pub mod history;
mod metrics;
mod page;
mod security;
pub mod view;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::{error, info, warn};

use crate::config::DashboardConfig;
use crate::connections::Limiter;
use crate::connections::http::{CappedListener, DASHBOARD_TIMEOUTS, Peer};
use crate::events::Event;
use crate::published::Published;

use metrics::Metrics;

/// The longest a handler may take. Handlers only read snapshots, so this is generous.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The one stylesheet, compiled into the binary: the networks these nodes sit on are often
/// closed, so nothing is fetched from a CDN.
const CSS: &str = include_str!("dashboard.css");

/// Content-Security-Policy: no script at all, styles only from our own stylesheet, no framing,
/// forms only to ourselves (the override buttons), no base-URI tricks. `meta refresh` is not a
/// script, so the page still refreshes.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// What every handler reads. Cheap to clone.
#[derive(Clone)]
pub struct DashboardState {
    pub(crate) published: Published,
    metrics: Arc<Metrics>,
    /// A random token per agent run that every state-changing POST must carry: a page on
    /// another site cannot read it (loopback and Host checks, same-origin policy).
    csrf: Arc<str>,
}

impl DashboardState {
    pub fn new(published: Published) -> Self {
        let metrics = Arc::new(Metrics::new(published.clone()));
        let csrf: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            published,
            metrics,
            csrf: csrf.into(),
        }
    }
}

/// The dashboard listener, bound before the agent serves anything (so a bad or taken address
/// fails `Agent::build`), and the event subscription that feeds the metrics' counters.
pub struct Dashboard {
    listener: std::net::TcpListener,
    state: DashboardState,
    /// Subscribed at bind time so that no event published after `build` is missed.
    events: broadcast::Receiver<Arc<Event>>,
}

impl Dashboard {
    /// Binds `config.listen`. A non-loopback address is allowed (SPEC: it still answers only
    /// loopback clients) but warned about, since it exposes a socket for nothing.
    pub fn bind(config: &DashboardConfig, published: Published) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        if !config.listen.ip().is_loopback() {
            warn!(
                listen = %config.listen,
                "dashboard.listen is not a loopback address; it still answers loopback clients only (403 to others)"
            );
        }
        let events = published.events.subscribe();
        Ok(Self {
            listener,
            state: DashboardState::new(published),
            events,
        })
    }

    /// The address really bound (the port filled in when 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown` is cancelled, with at most what `limit` admits; open connections
    /// are asked to finish and the caller bounds the wait. Err if the listener itself fails (it
    /// could never accept again).
    pub async fn serve(self, shutdown: CancellationToken, limit: Arc<Limiter>) -> io::Result<()> {
        let Dashboard {
            listener,
            state,
            events,
        } = self;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        info!(url = %format!("http://{}/", url_authority(addr)), "dashboard listening");
        let counting = tokio::spawn(state.metrics.clone().count_events(events, shutdown.clone()));
        let app = router(state).into_make_service_with_connect_info::<Peer>();
        let listener = CappedListener::new(listener, limit, DASHBOARD_TIMEOUTS);
        let failure = listener.failure();
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(failure.until(shutdown))
            .await;
        counting.abort();
        result.and(failure.result())
    }
}

/// `host:port` as it goes in a URL (IPv6 in brackets); an unspecified address becomes the
/// loopback address of its family, which is where a local client must connect.
pub fn url_authority(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port()).to_string()
}

/// All routes, behind the security layers. Tests call it with `oneshot`, without a socket;
/// they must provide the peer address (`MockConnectInfo(Peer(..))`), or every request is 403.
pub fn router(state: DashboardState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/v1/status", get(api_status))
        .route("/api/v1/history", get(history::api::api_history))
        .route("/history", get(history::api::history_page))
        .route("/metrics", get(metrics_text))
        .route("/static/dashboard.css", get(stylesheet))
        .route("/api/v1/csrf", get(actions::csrf_token))
        .route(
            "/api/v1/overrides",
            axum::routing::post(actions::api_override),
        )
        .route("/overrides", axum::routing::post(actions::form_override))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(security::guard))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(header_layer(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::REFERRER_POLICY, "no-referrer"))
        // The state changes every few hundred milliseconds: nothing is worth caching.
        .layer(header_layer(header::CACHE_CONTROL, "no-store"))
}

fn header_layer(
    name: header::HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}

async fn index(State(state): State<DashboardState>) -> Response {
    let view = view::StatusView::build(&state.published, SystemTime::now());
    let history = history::api::timeline(&state.published);
    match page::render(&view, &state.csrf, history) {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            error!(error = %e, "cannot render the dashboard page");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the dashboard page could not be rendered; see the agent's log\n",
            )
        }
    }
}

async fn api_status(State(state): State<DashboardState>) -> Response {
    let view = view::StatusView::build(&state.published, SystemTime::now());
    match serde_json::to_string_pretty(&view) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            error!(error = %e, "cannot serialize the status");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot serialize the status\n",
            )
        }
    }
}

async fn metrics_text(State(state): State<DashboardState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            error!(error = %e, "cannot encode the metrics");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
        }
    }
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn not_found() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "not found: the dashboard serves /, /api/v1/status, /api/v1/history and /metrics\n",
    )
}

/// A short plain-text answer, for errors.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests;
