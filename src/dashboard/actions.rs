//! Operators' actions: manual overrides POSTed from the dashboard's buttons or by `failoverd
//! maintenance` / `failoverd force`, checked against the CSRF token and handed to the health
//! task (the one writer), which applies, stores and propagates them.
//!
//! | request                                                         | answer |
//! |-----------------------------------------------------------------|--------|
//! | `GET /api/v1/csrf`                                              | 200 `{"token": …}` |
//! | `POST /api/v1/overrides`, JSON, header `x-failoverd-csrf: token` | 200 the override as JSON; 400 why not; 403 bad token; 500 not stored (and not applied) |
//! | `POST /overrides`, a form with field `csrf`                     | 303 back to `/`; 400 why not; 403 bad token; 500 not stored (and not applied) |

use std::collections::HashMap;
use std::time::Duration;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use super::DashboardState;
use crate::command::Command;
use crate::config::HumanDuration;
use crate::overrides::{Kind, Override, Refused, Request};

/// The header API clients put the token in.
pub const CSRF_HEADER: &str = "x-failoverd-csrf";
/// How long an action waits for the writer.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn csrf_token(State(state): State<DashboardState>) -> Response {
    let body = serde_json::json!({ "token": &*state.csrf }).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub async fn api_override(
    State(state): State<DashboardState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let token = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if token != &*state.csrf {
        return text(
            StatusCode::FORBIDDEN,
            "missing or wrong x-failoverd-csrf token (GET /api/v1/csrf)".into(),
        );
    }
    let mut request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("not an override request: {e}"),
            );
        }
    };
    if request.by.trim().is_empty() {
        request.by = "local API".into();
    }
    match apply(&state, request).await {
        Ok(o) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&o).unwrap_or_default(),
        )
            .into_response(),
        Err((code, why)) => text(code, why),
    }
}

pub async fn form_override(
    State(state): State<DashboardState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| {
        form.get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    if field("csrf") != *state.csrf {
        return text(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: reload the page and try again".into(),
        );
    }
    let kind = match field("kind").as_str() {
        "maintenance" => Kind::Maintenance,
        "force" => Kind::Force,
        other => return text(StatusCode::BAD_REQUEST, format!("unknown kind `{other}`")),
    };
    let for_seconds = match field("for").as_str() {
        "" => None,
        text_value => match HumanDuration::parse(text_value) {
            Ok(d) => Some(d.0.as_secs().max(1)),
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        },
    };
    let node = Some(field("node")).filter(|n| !n.is_empty());
    let request = Request {
        kind,
        target: field("target"),
        node,
        on: field("on") != "off",
        reason: field("reason"),
        for_seconds,
        by: "dashboard".into(),
    };
    match apply(&state, request).await {
        Ok(_) => (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response(),
        Err((code, why)) => text(code, why),
    }
}

async fn apply(
    state: &DashboardState,
    mut request: Request,
) -> Result<Override, (StatusCode, String)> {
    let snapshot = state.published.snapshot.load();
    let status = &snapshot.status;
    let here = status
        .config
        .self_id()
        .map_or_else(|| "this agent".into(), String::from);
    request.by = format!("{} on {here}", request.by);
    let (reply, outcome) = oneshot::channel();
    let gone = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is stopping".to_string(),
        )
    };
    state
        .published
        .commands
        .send(Command::Override { request, reply })
        .await
        .map_err(|_| gone())?;
    match tokio::time::timeout(APPLY_TIMEOUT, outcome).await {
        Ok(Ok(Ok(o))) => Ok(o),
        Ok(Ok(Err(Refused::Invalid(why)))) => Err((StatusCode::BAD_REQUEST, why)),
        Ok(Ok(Err(Refused::NotStored(why)))) => Err((StatusCode::INTERNAL_SERVER_ERROR, why)),
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent did not apply it in time".into(),
        )),
    }
}

fn text(code: StatusCode, message: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}
