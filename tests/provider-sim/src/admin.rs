//! `/admin/*`: fault injection, request log, counters and change bursts, as JSON.
//! No authentication, so it answers only connections from a loopback address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::db::ChangeSpec;
use super::faults::FaultsUpdate;
use super::handle::counters_of;
use super::state::{Shared, lock};

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/faults", get(get_faults).post(post_faults))
        .route("/admin/requests", get(get_requests))
        .route("/admin/counters", get(get_counters))
        .route("/admin/changes", get(get_changes).post(post_changes))
        .layer(middleware::from_fn(loopback_only))
}

async fn loopback_only(req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match peer {
        Some(addr) if addr.ip().is_loopback() => next.run(req).await,
        _ => admin_error(
            StatusCode::FORBIDDEN,
            "the admin endpoint answers loopback clients only".into(),
        ),
    }
}

fn admin_error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Response {
    Json(s.faults()).into_response()
}

async fn post_faults(
    State(s): State<Arc<Shared>>,
    body: Result<Json<FaultsUpdate>, JsonRejection>,
) -> Response {
    let Json(u) = match body {
        Ok(b) => b,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let mut f = lock(&s.faults);
    match f.apply(&u) {
        Ok(()) => {
            tracing::info!(faults = ?*f, "faults changed");
            Json(f.clone()).into_response()
        }
        Err(e) => admin_error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn get_requests(State(s): State<Arc<Shared>>) -> Response {
    Json(lock(&s.log).entries()).into_response()
}

async fn get_counters(State(s): State<Arc<Shared>>) -> Response {
    Json(counters_of(&s)).into_response()
}

async fn get_changes(State(s): State<Arc<Shared>>) -> Response {
    Json(lock(&s.db).changes().to_vec()).into_response()
}

async fn post_changes(
    State(s): State<Arc<Shared>>,
    body: Result<Json<ChangeSpec>, JsonRejection>,
) -> Response {
    let Json(spec) = match body {
        Ok(b) => b,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match s.commit(&spec) {
        Ok(changes) => Json(changes).into_response(),
        Err(e) => admin_error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}
