//! `GET /api/v1/history[?since=RFC3339]` on the dashboard, the page's timeline, and the client
//! side of `failoverd status --history`.

use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::error;

use crate::dashboard::DashboardState;
use crate::dashboard::history::timeline::Timeline;
use crate::dashboard::history::view::{HistoryView, parse_since};
use crate::published::Published;

#[derive(Deserialize)]
pub struct HistoryQuery {
    since: Option<String>,
}

/// The history as JSON; `?since=` (RFC 3339) shows the changes after that time only.
pub async fn api_history(
    State(state): State<DashboardState>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    let since = match query.since.as_deref().map(parse_since).transpose() {
        Ok(since) => since,
        Err(message) => {
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{message}\n"),
            )
                .into_response();
        }
    };
    let view = build(&state.published, since, SystemTime::now());
    match serde_json::to_string_pretty(&view) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            error!(error = %e, "cannot serialize the history");
            crate::dashboard::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot serialize the history\n",
            )
        }
    }
}

/// The view of what `published` holds, for the configuration in force.
pub fn build(published: &Published, since: Option<SystemTime>, now: SystemTime) -> HistoryView {
    let config = published.snapshot.load().status.config.clone();
    let history = published.history.lock().expect("history lock");
    HistoryView::build(&history, &config, since, now)
}

/// The page's timeline of the last 24 hours.
pub fn timeline(published: &Published) -> Timeline {
    let config = published.snapshot.load().status.config.clone();
    let history = published.history.lock().expect("history lock");
    Timeline::build(&history, &config, SystemTime::now())
}

/// Fetches `/api/v1/history` from the dashboard at `base`; returns the view and the JSON sent.
pub async fn fetch(base: &str) -> Result<(HistoryView, String), String> {
    use crate::dashboard::client::{StatusError, fetch_json};
    fetch_json(base, "/api/v1/history")
        .await
        .map_err(|e| match e {
            StatusError::Parse { target, reason } => format!(
                "the agent on {target} sent a history this version cannot read: {reason} (an agent older than this command has no /api/v1/history)"
            ),
            other => other.to_string(),
        })
}

/// `GET /history`: the timeline alone, for a bookmark or a screenshot.
#[derive(askama::Template)]
#[template(path = "dashboard/history_page.html")]
struct HistoryPage {
    zone: String,
    updated: String,
    refresh_seconds: u64,
    history: Timeline,
}

pub async fn history_page(State(state): State<DashboardState>) -> Response {
    use askama::Template;
    let now = SystemTime::now();
    let config = state.published.snapshot.load().status.config.clone();
    let page = HistoryPage {
        zone: config.zone.to_ascii().trim_end_matches('.').to_string(),
        updated: crate::dashboard::view::local_from_rfc3339(
            &crate::dashboard::view::rfc3339(now),
            now,
        ),
        refresh_seconds: config.dashboard.refresh.as_secs().max(1),
        history: timeline(&state.published),
    };
    match page.render() {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            error!(error = %e, "cannot render the history page");
            crate::dashboard::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the history page could not be rendered; see the agent's log\n",
            )
        }
    }
}
